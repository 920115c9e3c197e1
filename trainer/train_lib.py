"""Train, evaluate, predict and export: the whole job behind `run_ner.py`.

`run(config)` never reads flags, so tests build a small `NerConfig` (tiny
BERT, a few steps) and run the whole pipeline in seconds.
"""

import dataclasses
import json
import math
import os
from typing import Optional

from absl import logging
import tensorflow as tf

from trainer import export as export_lib
from trainer import features as features_lib
from trainer import gfile_io
from trainer import input_pipeline
from trainer import labels as labels_lib
from trainer import metrics as metrics_lib
from trainer import model as model_lib
from trainer import predictions as predictions_lib
from trainer import readers
from trainer import schema
from trainer import tokenization
from trainer.sample_data import sample_data_dir
from trainer.tf_compat import modeling

from tensorflow.core.protobuf import rewriter_config_pb2  # pylint: disable=g-bad-import-order

tf1 = tf.compat.v1

# The embedded default: a tiny BERT trained from scratch on the sample data.
TINY_BERT_CONFIG = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 512,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
}
# Settings that suit a tiny randomly initialised model (applied by run_ner.py
# to flags the user did not set when the embedded default is used).
EMBEDDED_DEFAULT_SETTINGS = {
    "learning_rate": 5e-4,
    "num_train_epochs": 40.0,
    "train_batch_size": 16,
    "warmup_proportion": 0.1,
}


@dataclasses.dataclass
class NerConfig:
  """Every setting of a run; `run_ner.py` fills it from flags."""
  output_dir: str = "output"
  data_dir: Optional[str] = None
  train_file: Optional[str] = None
  eval_file: Optional[str] = None
  predict_file: Optional[str] = None
  data_format: str = "auto"
  labels_file: Optional[str] = None
  bert_config_file: Optional[str] = None
  vocab_file: Optional[str] = None
  init_checkpoint: Optional[str] = None
  do_lower_case: bool = True
  max_seq_length: int = 128
  doc_stride: int = 64
  train_batch_size: int = 32
  eval_batch_size: int = 32
  predict_batch_size: int = 32
  learning_rate: float = 5e-5
  num_train_epochs: float = 3.0
  num_train_steps: Optional[int] = None
  warmup_proportion: float = 0.1
  save_checkpoints_steps: int = 1000
  keep_checkpoint_max: int = 3
  freeze_bert: bool = True
  bucketing: bool = True
  use_xla: bool = False
  gradient_accumulation_steps: int = 1
  num_gpus: int = 0
  use_tpu: bool = False
  tpu_name: Optional[str] = None
  tpu_zone: Optional[str] = None
  gcp_project: Optional[str] = None
  num_tpu_cores: int = 8
  iterations_per_loop: int = 1000
  # TPUEstimator code path without a TPU (tests); implied by use_tpu.
  tpu_estimator: bool = False
  # Explicit devices for MirroredStrategy (e.g. ["/cpu:0", "/cpu:1"] in
  # tests); default: the first num_gpus GPUs when num_gpus > 1.
  distribution_devices: Optional[list] = None
  cache: bool = True
  use_amp: bool = False
  bucket_boundaries: Optional[list] = None
  eval_every_steps: int = 0
  head: str = "softmax"
  head_dropout: float = 0.1
  lstm_units: int = 128
  lstm_layers: int = 1
  crf_constrain_bio: bool = False
  export_dir: Optional[str] = None
  seed: int = 42
  do_train: bool = False
  do_eval: bool = False
  do_predict: bool = False
  do_export: bool = False


def uses_embedded_default(config):
  """True when no data and no model were given: train on the sample."""
  return not any([config.data_dir, config.train_file, config.eval_file,
                  config.predict_file, config.bert_config_file,
                  config.init_checkpoint, config.vocab_file])


def resolve_data_files(config):
  """Returns {'train','dev','test'} -> path or None for the run.

  `--data_dir` supplies conventional names; `--train_file`, `--eval_file` and
  `--predict_file` override. With the embedded default the sample is used.
  """
  data_dir = config.data_dir
  if uses_embedded_default(config):
    data_dir = sample_data_dir()
  files = (readers.find_split_files(data_dir) if data_dir
           else {"train": None, "dev": None, "test": None})
  for split, override in (("train", config.train_file),
                          ("dev", config.eval_file),
                          ("test", config.predict_file)):
    if override:
      files[split] = override
  return files


def build_vocab(sentences, do_lower_case, path):
  """Writes a vocab of the special tokens plus every piece of `sentences`.

  Used only for the embedded default's from-scratch model: characters (or
  words) are split and lower-cased the way BERT's basic tokenizer does, so
  each becomes one whole piece. Order: specials, then first appearance.
  """
  basic = tokenization.basic_tokenizer(do_lower_case)
  vocab = list(schema.SPECIAL_TOKENS)
  seen = set(vocab)
  for sentence in sentences:
    for token in sentence.tokens:
      for piece in basic.tokenize(token):
        if piece not in seen:
          seen.add(piece)
          vocab.append(piece)
  with tf.io.gfile.GFile(path, "w") as writer:
    writer.write("".join(piece + "\n" for piece in vocab))
  return len(vocab)


class Job:
  """State shared by the phases of one run (paths, labels, tokenizer)."""

  def __init__(self, config):
    self.config = config
    tf.io.gfile.makedirs(config.output_dir)
    self.cache_dir = os.path.join(config.output_dir, schema.CACHE_DIRNAME)
    tf.io.gfile.makedirs(self.cache_dir)
    self.files = resolve_data_files(config)
    self._sentences = {}
    self.embedded = uses_embedded_default(config)
    self._setup_model_files()
    self._setup_labels()
    tokenization.validate_case_matches_checkpoint(config.do_lower_case,
                                                  config.init_checkpoint)
    self.tokenizer = tokenization.NerTokenizer(self.vocab_file,
                                               config.do_lower_case)

  def sentences(self, split):
    """Sentences of a split, read once."""
    if split not in self._sentences:
      path = self.files[split]
      if not path:
        raise ValueError("No %s file: pass --data_dir with a %s file or --%s."
                         % (split, split, {"train": "train_file",
                                           "dev": "eval_file",
                                           "test": "predict_file"}[split]))
      logging.info("Reading %s data from %s", split, path)
      sentences = readers.read_sentences(path, self.config.data_format)
      if split != "test" and all(s.tags is None for s in sentences):
        data_format = self.config.data_format
        if data_format == "auto":
          data_format = readers.detect_format(path)
        raise ValueError(
            "%s was read as %r (unlabelled) but %s data needs tags. Expected "
            "CoNLL lines 'token ... tag', a parallel tokens/tags pair or "
            "CLUENER jsonl; pass --data_format to choose explicitly."
            % (path, data_format, split))
      self._sentences[split] = sentences
    return self._sentences[split]

  def _setup_model_files(self):
    config = self.config
    if config.bert_config_file:
      self.bert_config_file = config.bert_config_file
      self.vocab_file = config.vocab_file
      return
    # From-scratch tiny model (embedded default, or data without a checkpoint).
    self.bert_config_file = os.path.join(config.output_dir,
                                         schema.BERT_CONFIG_FILENAME)
    self.vocab_file = config.vocab_file or os.path.join(
        config.output_dir, schema.VOCAB_FILENAME)
    if not tf.io.gfile.exists(self.vocab_file):
      size = build_vocab(self.sentences("train"), config.do_lower_case,
                         self.vocab_file)
      logging.info("Built a %d-piece vocabulary from the training data: %s",
                   size, self.vocab_file)
    if not tf.io.gfile.exists(self.bert_config_file):
      with tf.io.gfile.GFile(self.vocab_file) as reader:
        vocab_size = sum(1 for line in reader if line.strip())
      with tf.io.gfile.GFile(self.bert_config_file, "w") as writer:
        json.dump(dict(TINY_BERT_CONFIG, vocab_size=vocab_size), writer,
                  indent=2)
      logging.info("Wrote a tiny from-scratch BERT config to %s",
                   self.bert_config_file)

  def _setup_labels(self):
    config = self.config
    self.labels_file = os.path.join(config.output_dir, schema.LABELS_FILENAME)
    if config.labels_file:
      labels = labels_lib.read_labels_file(config.labels_file,
                                           gfile_io.read_bytes)
    elif config.do_train:
      labels = labels_lib.build_label_list([self.sentences("train")])
    elif tf.io.gfile.exists(self.labels_file):
      labels = labels_lib.read_labels_file(self.labels_file,
                                           gfile_io.read_bytes)
    else:
      raise ValueError(
          "No label list: %s does not exist. Run with --do_train first, or "
          "pass --labels_file." % self.labels_file)
    if config.do_train:
      labels_lib.check_labels_known(self.sentences("train"), labels,
                                    "--labels_file")
    if (tf.io.gfile.exists(self.labels_file) and not config.labels_file
        and not self._model_dir_empty()):
      previous = labels_lib.read_labels_file(self.labels_file,
                                             gfile_io.read_bytes)
      if previous != labels:
        raise ValueError(
            "%s holds labels %s from an earlier run, but this data gives %s. "
            "Use a new --output_dir or pass --labels_file %s."
            % (self.labels_file, previous, labels, self.labels_file))
    labels_lib.write_labels_file(labels, self.labels_file, gfile_io.write_bytes)
    self.labels = labels
    logging.info("Labels (%d): %s", len(labels), " ".join(labels))

  def _model_dir_empty(self):
    return tf.train.latest_checkpoint(self.config.output_dir) is None

  def features_file(self, split):
    """Builds (or reuses) the feature TFRecord of a split.

    Returns:
      (path, number of windows).
    """
    config = self.config
    data_path = self.files[split]
    settings = {
        "max_seq_length": config.max_seq_length,
        "doc_stride": config.doc_stride,
        "do_lower_case": config.do_lower_case,
        "data_format": config.data_format,
        "labels": self.labels,
    }
    inputs = [data_path, self.vocab_file]
    partner = readers.parallel_partner(data_path)
    if partner and tf.io.gfile.exists(partner):
      inputs.append(partner)
    key = input_pipeline.cache_key(inputs, settings)
    path = input_pipeline.cache_path(self.cache_dir, split, key)
    count = input_pipeline.read_feature_count(path)
    if count is not None:
      input_pipeline.log_cache_use(path, count, reused=True)
      return path, count
    sentences = self.sentences(split)
    labels_lib.check_labels_known(sentences, self.labels, "--labels_file")
    label_ids = labels_lib.label_map(self.labels)

    def windows():
      for index, sentence in enumerate(sentences):
        tag_ids = (None if sentence.tags is None
                   else [label_ids[tag] for tag in sentence.tags])
        yield from features_lib.convert_sentence(
            sentence.tokens, tag_ids, index, self.tokenizer,
            config.max_seq_length, config.doc_stride)
        if (index + 1) % 5000 == 0:
          logging.info("Converted %d/%d %s sentences", index + 1,
                       len(sentences), split)

    count = input_pipeline.write_features(windows(), path)
    input_pipeline.log_cache_use(path, count, reused=False)
    return path, count


def uses_tpu_estimator(config):
  return config.use_tpu or config.tpu_estimator


def input_fn_for(config, path, is_training, batch_size):
  """Input function for a cached features file, with the run's padding mode.

  With bucketing (default) batches group windows of similar length (bucket
  boundaries from --bucket_boundaries or derived from the file's length
  histogram) and are padded to their longest window; with --nobucketing every
  batch is padded to max_seq_length, as in google-research/bert.
  """
  boundaries = None
  tpu_path = uses_tpu_estimator(config)
  if config.bucketing and not tpu_path:
    boundaries = config.bucket_boundaries
    if not boundaries:
      meta = input_pipeline.read_feature_meta(path)
      boundaries = features_lib.derive_bucket_boundaries(
          meta["length_histogram"])
    logging.info("Length buckets for %s: %s", os.path.basename(path),
                 boundaries)
  return input_pipeline.input_fn_builder(
      path, is_training=is_training, batch_size=batch_size,
      max_seq_length=config.max_seq_length,
      fixed_length=tpu_path or not config.bucketing,
      bucket_boundaries=boundaries,
      seed=config.seed if is_training else None,
      cache=config.cache and is_training,
      pad_to_full_batches=(input_pipeline.read_feature_count(path)
                           if tpu_path else None))


def num_steps(config, num_train_windows):
  """--num_train_steps, else epochs * windows / batch (at least 1)."""
  if config.num_train_steps:
    return config.num_train_steps
  return max(1, int(math.ceil(num_train_windows * config.num_train_epochs
                              / config.train_batch_size)))


def head_config(config, vocab):
  """`model.HeadConfig` of a run (vocab: piece -> id of the run's vocab)."""
  return model_lib.HeadConfig(
      kind=config.head, dropout=config.head_dropout,
      lstm_units=config.lstm_units, lstm_layers=config.lstm_layers,
      crf_constrain_bio=config.crf_constrain_bio,
      continuation_ids=model_lib.continuation_ids_from_vocab(vocab))


def distribution_devices(config):
  """Devices to mirror training over, or None for a single device."""
  if config.distribution_devices:
    return list(config.distribution_devices)
  if config.num_gpus > 1:
    return ["/gpu:%d" % index for index in range(config.num_gpus)]
  return None


def _ensure_logical_cpus(devices):
  """Splits the CPU into as many logical devices as `devices` names."""
  cpus = sum(1 for device in devices if "cpu" in device.lower())
  if cpus < 2:
    return
  physical = tf.config.list_physical_devices("CPU")
  configured = tf.config.get_logical_device_configuration(physical[0])
  if configured and len(configured) >= cpus:
    return
  try:
    tf.config.set_logical_device_configuration(
        physical[0], [tf.config.LogicalDeviceConfiguration()] * cpus)
  except RuntimeError as error:
    raise ValueError(
        "Cannot mirror over %d CPU devices: TensorFlow was already "
        "initialised with one (%s). Configure the devices at process start."
        % (cpus, error)) from None


def session_config(config):
  """ConfigProto with XLA auto-clustering and/or float16 graph rewrite."""
  proto = tf1.ConfigProto(allow_soft_placement=True)
  devices = distribution_devices(config) or []
  cpus = sum(1 for device in devices if "cpu" in device.lower())
  if cpus > 1:
    # Logical CPU devices (tests); replicas wait on each other in all-reduce,
    # so the session needs more inter-op threads than replicas or it can
    # deadlock on a 2-core machine.
    proto.device_count["CPU"] = cpus
    proto.inter_op_parallelism_threads = 8
  if config.use_xla:
    proto.graph_options.optimizer_options.global_jit_level = (
        tf1.OptimizerOptions.ON_1)
  if config.use_amp:
    # Grappler's auto mixed precision: MatMul/BatchMatMul in float16 on GPU,
    # numerically sensitive ops (Softmax, Exp, Log, reductions: the softmax
    # loss and the CRF) stay float32. It does nothing on CPU.
    proto.graph_options.rewrite_options.auto_mixed_precision = (
        rewriter_config_pb2.RewriterConfig.ON)
  return proto


def multi_worker_config():
  """The parsed TF_CONFIG when it describes 2+ training workers, else None."""
  tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
  cluster = tf_config.get("cluster", {})
  workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
  return tf_config if workers > 1 else None


def make_strategy(config):
  """The distribution strategy of the run, or None for one device.

  Must run before anything starts the TensorFlow runtime: logical CPU
  devices and multi-worker collectives are configured at startup.
  """
  if multi_worker_config():
    logging.info("TF_CONFIG describes a multi-worker cluster: "
                 "MultiWorkerMirroredStrategy.")
    return tf.distribute.experimental.MultiWorkerMirroredStrategy()
  devices = distribution_devices(config)
  if not devices:
    return None
  _ensure_logical_cpus(devices)
  logging.info("Training on %d replicas (%s); global batch %d, %d per "
               "replica.", len(devices), ", ".join(devices),
               config.train_batch_size, config.train_batch_size // len(devices))
  return tf.distribute.MirroredStrategy(devices=devices)


def _tpu_estimator(config, model_fn):
  """TPUEstimator (google-research/bert's TPU setup); runs without a TPU too."""
  cluster = None
  if config.use_tpu:
    cluster = tf1.distribute.cluster_resolver.TPUClusterResolver(
        config.tpu_name, zone=config.tpu_zone, project=config.gcp_project)
  run_config = tf1.estimator.tpu.RunConfig(
      cluster=cluster, model_dir=config.output_dir,
      tf_random_seed=config.seed,
      save_checkpoints_steps=config.save_checkpoints_steps,
      keep_checkpoint_max=config.keep_checkpoint_max,
      tpu_config=tf1.estimator.tpu.TPUConfig(
          iterations_per_loop=config.iterations_per_loop,
          num_shards=config.num_tpu_cores,
          per_host_input_for_training=(
              tf1.estimator.tpu.InputPipelineConfig.PER_HOST_V2)))
  return tf1.estimator.tpu.TPUEstimator(
      use_tpu=config.use_tpu, model_fn=model_fn, config=run_config,
      train_batch_size=config.train_batch_size,
      eval_batch_size=config.eval_batch_size,
      predict_batch_size=config.predict_batch_size,
      params={"train_batch_size": config.train_batch_size},
      export_to_tpu=False)


def make_estimator(config, job, num_train_steps, strategy=None):
  """An Estimator over `model.model_fn_builder` checkpointing to output_dir."""
  bert_config = modeling.BertConfig.from_json_file(job.bert_config_file)
  model_fn = model_lib.model_fn_builder(
      bert_config=bert_config,
      label_names=job.labels,
      init_checkpoint=config.init_checkpoint,
      learning_rate=config.learning_rate,
      num_train_steps=num_train_steps,
      num_warmup_steps=int(num_train_steps * config.warmup_proportion),
      freeze_bert=config.freeze_bert,
      head=head_config(config, job.tokenizer.vocab),
      use_amp=config.use_amp,
      accumulation_steps=config.gradient_accumulation_steps,
      tpu_estimator=uses_tpu_estimator(config), use_tpu=config.use_tpu,
      num_tpu_shards=config.num_tpu_cores if config.use_tpu else 1)
  if uses_tpu_estimator(config):
    return _tpu_estimator(config, model_fn)
  run_config = tf.estimator.RunConfig(
      model_dir=config.output_dir,
      train_distribute=strategy,
      session_config=session_config(config),
      tf_random_seed=config.seed,
      save_checkpoints_steps=config.save_checkpoints_steps,
      keep_checkpoint_max=config.keep_checkpoint_max,
      log_step_count_steps=max(config.save_checkpoints_steps, 100))
  return tf.estimator.Estimator(
      model_fn=model_fn, config=run_config,
      params={"train_batch_size": config.train_batch_size})


def write_key_values(results, path):
  """Writes `key = value` lines, sorted by key."""
  with tf.io.gfile.GFile(path, "w") as writer:
    for key in sorted(results):
      writer.write("%s = %s\n" % (key, results[key]))


def predict_split(config, job, estimator, split):
  """Predicts every sentence of a split; returns (sentences, tags, scores)."""
  path, count = job.features_file(split)
  sentences = job.sentences(split)
  input_fn = input_fn_for(config, path, False, config.predict_batch_size)
  outputs = []
  hooks = [model_lib.BatchProgressHook(
      "predict", math.ceil(count / config.predict_batch_size))]
  # Whole batches, and only the keys needed to merge windows (the string
  # tags are rebuilt from ids): less Python per window.
  keys = [schema.EXAMPLE_INDEX, schema.WORD_POSITIONS, schema.SCORE_MASK,
          schema.OUTPUT_LABEL_IDS, schema.OUTPUT_SCORES]
  for batch in estimator.predict(input_fn, predict_keys=keys, hooks=hooks,
                                 yield_single_examples=False):
    for row in range(len(batch[schema.EXAMPLE_INDEX])):
      if batch[schema.EXAMPLE_INDEX][row] < 0:
        continue  # padding window (fixed-size TPU batches)
      outputs.append({
          schema.EXAMPLE_INDEX: batch[schema.EXAMPLE_INDEX][row],
          schema.WORD_POSITIONS: batch[schema.WORD_POSITIONS][row],
          schema.SCORE_MASK: batch[schema.SCORE_MASK][row],
          "label_id": batch[schema.OUTPUT_LABEL_IDS][row],
          "score": batch[schema.OUTPUT_SCORES][row],
      })
  if len(outputs) != count:
    raise ValueError("Predicted %d windows but %s holds %d."
                     % (len(outputs), path, count))
  merged = features_lib.merge_window_outputs(
      outputs, [len(s.tokens) for s in sentences])
  tags = [[job.labels[i] for i in m["label_id"]] for m in merged]
  scores = [m["score"] for m in merged]
  return sentences, tags, scores


def ner_config_for(config, job):
  """The settings a served model needs (assets.extra/ner_config.json)."""
  return {
      "labels": job.labels,
      "max_seq_length": config.max_seq_length,
      "doc_stride": config.doc_stride,
      "do_lower_case": config.do_lower_case,
      "head": head_config(config, job.tokenizer.vocab).as_json(),
  }


def evaluate(config, job, estimator):
  """Evaluates the latest checkpoint on the dev split; writes eval_results.txt."""
  eval_path, eval_windows = job.features_file("dev")
  logging.info("***** Evaluating: %d windows from %s *****", eval_windows,
               job.files["dev"])
  batches = math.ceil(eval_windows / config.eval_batch_size)
  results = estimator.evaluate(
      input_fn_for(config, eval_path, False, config.eval_batch_size),
      # TPUs need a step count; the padded file has exactly this many.
      steps=batches if uses_tpu_estimator(config) else None,
      hooks=[model_lib.BatchProgressHook("eval", batches)])
  results = {key: value.item() if hasattr(value, "item") else value
             for key, value in results.items()}
  write_key_values(results, os.path.join(config.output_dir,
                                         schema.EVAL_RESULTS_FILENAME))
  for key in sorted(results):
    logging.info("  eval %s = %s", key, results[key])
  return results


def export_best_if_better(config, job, estimator, summary):
  """With --do_export, exports the evaluated checkpoint if its F1 is best."""
  if not config.do_export:
    return
  best = export_lib.export_best(
      os.path.join(config.output_dir, schema.BEST_EXPORT_DIRNAME),
      summary["eval"], estimator.latest_checkpoint(), job.bert_config_file,
      job.vocab_file, job.labels_file, ner_config_for(config, job))
  if best:
    summary["export_best"] = best


def run(config):
  """Runs the phases selected by `config.do_*`; returns a summary dict."""
  if uses_embedded_default(config):
    logging.info("No data or model given: using the embedded sample dataset "
                 "in %s with a tiny from-scratch BERT.", sample_data_dir())
  strategy = make_strategy(config) if config.do_train else None
  job = Job(config)
  summary = {"output_dir": config.output_dir, "labels": job.labels}

  train_windows = 0
  if config.do_train:
    train_path, train_windows = job.features_file("train")
  else:
    train_path = None
  steps = num_steps(config, train_windows) if config.do_train else 1
  estimator = make_estimator(config, job, steps, strategy)
  if not config.do_train and estimator.latest_checkpoint() is None:
    raise ValueError(
        "%s holds no checkpoint to evaluate, predict or export with; run "
        "with --do_train first (or point --output_dir at a trained run)."
        % config.output_dir)

  if config.do_train:
    logging.info("***** Training: %d windows, batch %d, %d steps *****",
                 train_windows, config.train_batch_size, steps)
    # With accumulation each session step reads one micro-batch; the global
    # batch (--train_batch_size) is what one update sees.
    train_input_fn = input_fn_for(
        config, train_path, True,
        config.train_batch_size // config.gradient_accumulation_steps)
    if multi_worker_config():
      # Every worker runs this; RunConfig reads TF_CONFIG, only the chief
      # writes checkpoints and summaries.
      tf.estimator.train_and_evaluate(
          estimator, tf.estimator.TrainSpec(train_input_fn, max_steps=steps),
          tf.estimator.EvalSpec(train_input_fn, steps=1))
      if not estimator.config.is_chief:
        logging.info("Worker %d of the job is done; the chief evaluates, "
                     "predicts and exports.", estimator.config.task_id)
        summary["train_steps"] = steps
        return summary
    every = config.eval_every_steps if config.do_eval else 0
    for stop in (list(range(every, steps, every) if every else []) + [steps]
                 if not multi_worker_config() else []):
      estimator.train(train_input_fn, max_steps=stop)
      if stop < steps:
        # Intermediate evaluation: logs F1 over training and, with
        # --do_export, keeps the best checkpoint's export.
        summary["eval"] = evaluate(config, job, estimator)
        export_best_if_better(config, job, estimator, summary)
    summary["train_steps"] = steps

  if config.do_eval:
    summary["eval"] = evaluate(config, job, estimator)
    export_best_if_better(config, job, estimator, summary)

  if config.do_predict:
    sentences, tags, scores = predict_split(config, job, estimator, "test")
    conll_path = os.path.join(config.output_dir,
                              schema.PREDICTIONS_CONLL_FILENAME)
    jsonl_path = os.path.join(config.output_dir,
                              schema.PREDICTIONS_JSONL_FILENAME)
    with tf.io.gfile.GFile(conll_path, "w") as conll, \
        tf.io.gfile.GFile(jsonl_path, "w") as jsonl:
      num_sentences, num_tokens = predictions_lib.write_predictions(
          sentences, tags, scores, conll, jsonl)
    tokens_in = sum(len(s.tokens) for s in sentences)
    if (num_sentences, num_tokens) != (len(sentences), tokens_in):
      raise ValueError("Wrote %d sentences/%d tokens for %d/%d in."
                       % (num_sentences, num_tokens, len(sentences), tokens_in))
    logging.info("Predicted %d sentences and %d tokens (%d and %d in %s): %s, %s",
                 num_sentences, num_tokens, len(sentences), tokens_in,
                 job.files["test"], conll_path, jsonl_path)
    summary["predict"] = {"sentences": num_sentences, "tokens": num_tokens,
                          "conll": conll_path, "jsonl": jsonl_path}
    if all(s.tags is not None for s in sentences):
      metrics = metrics_lib.entity_metrics([s.tags for s in sentences], tags)
      with tf.io.gfile.GFile(os.path.join(config.output_dir,
                                          schema.PREDICT_RESULTS_FILENAME),
                             "w") as out:
        out.write(metrics_lib.format_report(metrics))
      logging.info("Predict-set entity F1 %.4f (P %.4f, R %.4f)",
                   metrics["f1"], metrics["precision"], metrics["recall"])
      summary["predict"]["metrics"] = metrics

  if config.do_export:
    export_dir = config.export_dir or os.path.join(config.output_dir,
                                                   schema.EXPORT_DIRNAME)
    summary["export"] = export_lib.export_model(
        export_dir, estimator.latest_checkpoint(), job.bert_config_file,
        job.vocab_file, job.labels_file, ner_config_for(config, job))
  return summary


def format_summary(config, summary):
  """Human-readable report of where everything went (printed by run_ner.py)."""
  lines = ["", "==== BERT-NER run finished ====",
           "output_dir:   %s" % config.output_dir,
           "labels:       %s" % " ".join(summary["labels"])]
  if "train_steps" in summary:
    lines.append("trained to:   step %d (checkpoints in %s)"
                 % (summary["train_steps"], config.output_dir))
  if "eval" in summary:
    results = summary["eval"]
    lines.append("eval:         entity F1 %.4f, precision %.4f, recall %.4f "
                 "(%s)" % (results["entity_f1"], results["entity_precision"],
                           results["entity_recall"],
                           os.path.join(config.output_dir,
                                        schema.EVAL_RESULTS_FILENAME)))
  if "predict" in summary:
    predicted = summary["predict"]
    lines.append("predictions:  %d sentences, %d tokens -> %s, %s"
                 % (predicted["sentences"], predicted["tokens"],
                    predicted["conll"], predicted["jsonl"]))
    if "metrics" in predicted:
      lines.append("predict F1:   %.4f" % predicted["metrics"]["f1"])
  if "export" in summary:
    lines.append("SavedModel:   %s" % summary["export"])
  if uses_embedded_default(config):
    lines += [
        "",
        "This run used the embedded sample data and a tiny from-scratch BERT.",
        "To train on your data with a pre-trained Google-format checkpoint:",
        "  python run_ner.py --data_dir DATA --output_dir out \\",
        "    --bert_config_file ckpt/bert_config.json --vocab_file "
        "ckpt/vocab.txt \\",
        "    --init_checkpoint ckpt/bert_model.ckpt \\",
        "    --do_train --do_eval --do_predict --do_export",
        "(Hugging Face BERT models: python -m trainer.convert_checkpoint "
        "--hf_model_dir DIR --output_dir ckpt)",
    ]
  return "\n".join(lines)
