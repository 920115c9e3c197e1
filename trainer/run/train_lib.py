"""Train, evaluate, predict and export: the run phases behind `run_ner.py`.

`run(config)` never reads flags, so tests build a small `NerConfig` (tiny
BERT, a few steps) and run the whole pipeline in seconds. It validates the
config, prepares the run's inputs (`run_inputs.RunInputs`), builds the
Estimator (`estimator_lib`) and runs the phases the config selects:

    train -> evaluate (+ best export) -> predict -> export

Each phase is a function of its own; `format_summary` reports where.
"""

import contextlib
import dataclasses
import json
import math
import os
from typing import Any, Iterator, Optional

from absl import logging
import tensorflow as tf

from trainer import cpu_features
from trainer.run import cached_input
from trainer.run import manifest
from trainer.run import multi_worker
from trainer.run import output_lock
from trainer.run import run_inputs
from trainer import errors
from trainer.distill import run as distill_run
from trainer.training import estimator_lib
from trainer.export import exporter as export_lib
from trainer.features import windows as features_lib
from trainer.model import fused_ops
from trainer.training import hooks
from trainer.training import roles
from trainer.features import input_pipeline
from trainer.evaluation import metrics as metrics_lib
from trainer.evaluation import predictions as predictions_lib
from trainer.report import writer as report_lib
from trainer import schema
from trainer.run.config import NerConfig
from trainer.run.config import uses_embedded_default
from trainer.errors import UserError
from trainer.training.estimator_lib import DeviceOverrides
from trainer.run.run_inputs import RunInputs
from trainer.data.sample_data import sample_data_dir

tf1 = tf.compat.v1
Summary = dict[str, Any]


def input_fn_for(config: NerConfig, path: str, is_training: bool,
                 batch_size: int, tpu_path: bool = False,
                 teacher: Optional[distill_run.TeacherTargets] = None):
  """Input function for a cached features file, with the run's padding mode.

  With bucketing (default) batches group windows of similar length (bucket
  boundaries from --bucket_boundaries or derived from the file's length
  histogram) and are padded to their longest window; with --nobucketing every
  batch is padded to max_seq_length, as in google-research/bert. The TPU path
  (`tpu_path`) needs fixed shapes and, outside training, full batches.
  A student reads `path`'s windows with the teacher's targets (`teacher`).
  """
  boundaries = None
  if config.bucketing and not tpu_path:
    boundaries = input_pipeline.bucket_boundaries_for(
        path, config.bucket_boundaries, config.bucket_length_multiple())
  return input_pipeline.input_fn_builder(
      teacher.path if teacher else path, is_training=is_training,
      batch_size=batch_size, max_seq_length=config.max_seq_length,
      fixed_length=tpu_path or not config.bucketing,
      bucket_boundaries=boundaries, seed=config.seed if is_training else None,
      cache=config.cache and is_training,
      pad_to_full_batches=(input_pipeline.read_feature_count(path)
                           if tpu_path else None),
      num_teacher_labels=teacher.num_labels if teacher else None)


def num_steps(config: NerConfig, num_train_windows: int) -> int:
  """--num_train_steps, else epochs * windows / batch (at least 1): 100
  windows, 3 epochs, batch 32 -> ceil(300 / 32) = 10."""
  if config.num_train_steps:
    return config.num_train_steps
  return max(1, int(math.ceil(num_train_windows * config.num_train_epochs
                              / config.train_batch_size)))


def _is_tpu_path(estimator: tf.estimator.Estimator) -> bool:
  return isinstance(estimator, tf1.estimator.tpu.TPUEstimator)


def ner_config_for(config: NerConfig, inputs: RunInputs) -> dict[str, Any]:
  """The settings a served model needs (assets.extra/ner_config.json)."""
  return {
      "labels": inputs.labels,
      "max_seq_length": config.max_seq_length,
      "doc_stride": config.doc_stride,
      "context_pieces": config.context_pieces,
      "do_lower_case": config.do_lower_case,
      "constant_weights": config.export_constant_weights,
      "head": estimator_lib.head_config(config,
                                        inputs.tokenizer.vocab).as_json(),
      # A --student_layers student: the source layer behind each of its
      # layers and the source's layer count.
      "student": (None if inputs.student_layers is None else
                  {"layers": list(inputs.student_layers),
                   "source_layers": inputs.source_layers}),
  }


def write_key_values(results: dict[str, Any], path: str) -> None:
  """Writes `key = value` lines, sorted by key."""
  with tf.io.gfile.GFile(path, "w") as writer:
    for key in sorted(results):
      writer.write(f"{key} = {results[key]}\n")


def train(config: NerConfig, inputs: RunInputs,
          estimator: tf.estimator.Estimator, steps: int,
          summary: Summary) -> bool:
  """Trains to `steps`, evaluating every --eval_every_steps on the way.

  Returns:
    False on a worker of a multi-worker job that is not the chief (its part
    is done: the chief evaluates, predicts and exports), else True.
  """
  path, windows = inputs.features_file("train")
  logging.info("***** Training: %d windows, batch %d, %d steps *****",
               windows, config.train_batch_size, steps)
  # With accumulation each session step reads one micro-batch; the global
  # batch (--train_batch_size) is what one update sees.
  micro_batch = config.train_batch_size // config.gradient_accumulation_steps
  # A frozen encoder runs once over the data (trainer.features.encoder_cache).
  teacher = distill_run.teacher_targets(config, inputs, path, estimator)
  input_fn = (cached_input.training_input_fn(config, inputs, estimator,
                                              steps, micro_batch, summary)
              or input_fn_for(config, path, True, micro_batch,
                              _is_tpu_path(estimator), teacher))
  summary["train_steps"] = steps
  if estimator_lib.multi_worker_config():
    # Every worker runs this; RunConfig reads TF_CONFIG, only the chief
    # writes checkpoints and summaries.
    tf.estimator.train_and_evaluate(
        estimator, tf.estimator.TrainSpec(input_fn, max_steps=steps),
        tf.estimator.EvalSpec(input_fn, steps=1))
    # From TF_CONFIG: this mode's RunConfig says is_chief on every worker.
    role = roles.task_role()
    if not role.is_chief:
      multi_worker.remove_worker_scratch(config, role)
      logging.info("%s: training done; the chief evaluates, predicts and "
                   "exports.", role.describe())
    return role.is_chief
  every = config.eval_every_steps if config.do_eval else 0
  # Seconds per epoch (not on a TPU, where one session run is many steps).
  timing = [] if _is_tpu_path(estimator) else [hooks.EpochTimingHook(
      windows / config.train_batch_size, steps,
      os.path.join(config.output_dir, schema.TRAIN_TIMING_FILENAME),
      runs_per_step=config.gradient_accumulation_steps)]
  for stop in (list(range(every, steps, every)) if every else []) + [steps]:
    estimator.train(input_fn, max_steps=stop, hooks=timing)
    if stop < steps:
      # Intermediate evaluation: logs F1 over training and, with
      # --do_export, keeps the best checkpoint's export.
      evaluate_and_export_best(config, inputs, estimator, summary)
  return True


def evaluate(config: NerConfig, inputs: RunInputs,
             estimator: tf.estimator.Estimator) -> dict[str, Any]:
  """Evaluates the latest checkpoint on the dev split; writes eval_results.txt."""
  path, windows = inputs.features_file("dev")
  logging.info("***** Evaluating: %d windows from %s *****", windows,
               inputs.files["dev"])
  batches = math.ceil(windows / config.eval_batch_size)
  tpu_path = _is_tpu_path(estimator)
  results = estimator.evaluate(
      input_fn_for(config, path, False, config.eval_batch_size, tpu_path),
      # TPUs need a step count; the padded file has exactly this many.
      steps=batches if tpu_path else None,
      hooks=[hooks.BatchProgressHook("eval", batches)])
  results = {key: value.item() if hasattr(value, "item") else value
             for key, value in results.items()}
  write_key_values(results, os.path.join(config.output_dir,
                                         schema.EVAL_RESULTS_FILENAME))
  for key in sorted(results):
    logging.info("  eval %s = %s", key, results[key])
  return results


def write_eval_predictions(config: NerConfig, inputs: RunInputs,
                           estimator: tf.estimator.Estimator) -> str:
  """Writes the dev split's predictions (eval_predictions.conll) for the report.

  The same window merging as `evaluate`, so its entity figures equal
  eval_results.txt.
  """
  sentences, tags, scores = predict_split(config, inputs, estimator, "dev")
  path = os.path.join(config.output_dir,
                      schema.EVAL_PREDICTIONS_CONLL_FILENAME)
  with tf.io.gfile.GFile(path, "w") as conll:
    predictions_lib.write_predictions(sentences, tags, scores, conll, None)
  return path


def write_run_config(config: NerConfig, inputs: RunInputs) -> None:
  """Writes the run's settings and data files to run_config.json."""
  settings = dataclasses.asdict(config)
  settings.update({f"{split}_data": path
                   for split, path in inputs.files.items() if path})
  with tf.io.gfile.GFile(os.path.join(config.output_dir,
                                      schema.RUN_CONFIG_FILENAME), "w") as out:
    json.dump(settings, out, indent=2, sort_keys=True, default=str)


def write_report(config: NerConfig, summary: Summary) -> None:
  """Writes report.html when this run evaluated or scored predictions."""
  scored = "eval" in summary or "metrics" in summary.get("predict", {})
  if not scored or not report_lib.can_write_report(config.output_dir):
    return
  try:
    summary["report"] = report_lib.write_report(config.output_dir)
  except (ValueError, OSError) as error:  # a finished run stays finished
    logging.warning("Could not write %s: %s", schema.REPORT_FILENAME, error)


def evaluate_and_export_best(config: NerConfig, inputs: RunInputs,
                             estimator: tf.estimator.Estimator,
                             summary: Summary) -> None:
  """Evaluates; with --do_export, exports the checkpoint if its F1 is best."""
  summary["eval"] = evaluate(config, inputs, estimator)
  if not config.do_export:
    return
  best = export_lib.export_best(
      os.path.join(config.output_dir, schema.BEST_EXPORT_DIRNAME),
      summary["eval"], estimator.latest_checkpoint(), inputs.bert_config_file,
      inputs.vocab_file, inputs.labels_file, ner_config_for(config, inputs),
      manifest_file=_manifest_file(config))
  if best:
    summary["export_best"] = best


def predict_split(config: NerConfig, inputs: RunInputs,
                  estimator: tf.estimator.Estimator, split: str):
  """Predicts every sentence of a split.

  Returns:
    (sentences, tags, scores): the split's `readers.Sentence`s, and per
    sentence one tag (str) and one score (float) per token.
  """
  path, count = inputs.features_file(split)
  sentences = inputs.sentences(split)
  input_fn = input_fn_for(config, path, False, config.predict_batch_size,
                          _is_tpu_path(estimator))
  outputs = []
  progress = [hooks.BatchProgressHook(
      "predict", math.ceil(count / config.predict_batch_size))]
  # Whole batches, and only the keys needed to merge windows (the string
  # tags are rebuilt from ids): less Python per window.
  keys = [schema.EXAMPLE_INDEX, schema.WORD_POSITIONS, schema.SCORE_MASK,
          schema.OUTPUT_LABEL_IDS, schema.OUTPUT_SCORES]
  for batch in estimator.predict(input_fn, predict_keys=keys, hooks=progress,
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
    raise AssertionError(f"Predicted {len(outputs)} windows but {path} holds "
                         f"{count}.")
  merged = features_lib.merge_window_outputs(
      outputs, [len(s.tokens) for s in sentences])
  tags = [[inputs.labels[i] for i in m["label_id"]] for m in merged]
  scores = [m["score"] for m in merged]
  return sentences, tags, scores


def predict(config: NerConfig, inputs: RunInputs,
            estimator: tf.estimator.Estimator) -> dict[str, Any]:
  """Tags the test split to predictions.conll/.jsonl; scores it if labelled.

  Returns:
    {"sentences", "tokens", "conll", "jsonl"} and, for labelled data,
    "metrics" (`metrics.entity_metrics`, also in predict_results.txt).
  """
  sentences, tags, scores = predict_split(config, inputs, estimator, "test")
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
    raise AssertionError(f"Wrote {num_sentences} sentences/{num_tokens} "
                         f"tokens for {len(sentences)}/{tokens_in} in.")
  logging.info("Predicted %d sentences and %d tokens (%d and %d in %s): %s, "
               "%s", num_sentences, num_tokens, len(sentences), tokens_in,
               inputs.files["test"], conll_path, jsonl_path)
  result = {"sentences": num_sentences, "tokens": num_tokens,
            "conll": conll_path, "jsonl": jsonl_path}
  results_path = os.path.join(config.output_dir,
                              schema.PREDICT_RESULTS_FILENAME)
  if tf.io.gfile.exists(results_path):
    tf.io.gfile.remove(results_path)  # never leave an earlier run's figures
  if any(s.tags is None for s in sentences):
    logging.info("%s has no labels (text to predict): no metrics and no %s.",
                 inputs.files["test"], schema.PREDICT_RESULTS_FILENAME)
  else:
    metrics = metrics_lib.entity_metrics([s.tags for s in sentences], tags)
    with tf.io.gfile.GFile(results_path, "w") as out:
      out.write(metrics_lib.format_report(metrics))
    logging.info("Predict-set entity F1 %.4f (P %.4f, R %.4f)",
                 metrics["f1"], metrics["precision"], metrics["recall"])
    result["metrics"] = metrics
  return result


def export(config: NerConfig, inputs: RunInputs,
           estimator: tf.estimator.Estimator) -> str:
  """Exports the latest checkpoint to the next <export_dir>/<version>/."""
  export_dir = config.export_dir or os.path.join(config.output_dir,
                                                 schema.EXPORT_DIRNAME)
  return export_lib.export_model(
      export_dir, estimator.latest_checkpoint(), inputs.bert_config_file,
      inputs.vocab_file, inputs.labels_file, ner_config_for(config, inputs),
      manifest_file=_manifest_file(config))


def _manifest_file(config: NerConfig) -> Optional[str]:
  """The run manifest an export carries, None for a folder without one."""
  path = manifest.manifest_path(config.output_dir)
  return path if tf.io.gfile.exists(path) else None


def apply_graph_settings(config: NerConfig) -> None:
  """Process-wide graph settings of a run, before any graph is built.

  --fused_ops patches `bert.modeling` for every later BertModel (train,
  eval, predict and export graphs; `trainer.model.fused_ops`), --nofused_ops
  restores its own ops. --use_bf16 makes the fused dense layers and the
  attention products compute in bfloat16 (`trainer.model.precision`: float32
  weights cast right before each product; variables, optimizer state,
  checkpoints, layer norm, softmax and the loss stay float32) in the train,
  eval and predict graphs; exports are built in float32.
  """
  if config.fused_ops:
    fused_ops.install(
        compute_dtype=tf.bfloat16 if config.use_bf16 else tf.float32)
  else:
    fused_ops.uninstall()


@contextlib.contextmanager
def _output_dir_held(config: NerConfig) -> Iterator[None]:
  """Creates --output_dir and holds its lock (`output_lock`) for the run.

  A multi-worker job takes it on its chief only (`roles.task_role`).
  """
  run_inputs.prepare_output_dir(config.output_dir)
  with output_lock.hold(config.output_dir, take=roles.task_role().is_chief):
    yield


def _chief_inputs(config: NerConfig, role: roles.TaskRole) -> RunInputs:
  """The run's inputs, written to output_dir by the chief (or only process).

  In a multi-worker job the other workers wait for them
  (`multi_worker.wait_for_chief`) instead of writing the same files.
  """
  if role.is_multi_worker:
    multi_worker.withdraw(config)  # an earlier job's record
  inputs = RunInputs(config).prepare()
  inputs.validate_data()  # every split the run reads, before step 1
  write_run_config(config, inputs)
  if role.is_multi_worker:
    if config.do_train:  # teacher targets once; workers reuse the file
      distill_run.teacher_targets(config, inputs,
                                  inputs.features_file("train")[0])
    multi_worker.publish(config, inputs, role)
  return inputs


def run(config: NerConfig, devices: Optional[DeviceOverrides] = None
        ) -> Summary:
  """Validates `config`, then runs the phases selected by `config.do_*`.

  Args:
    config: the run's settings.
    devices: test-only device overrides (TPUEstimator path without a TPU,
      explicit mirrored devices); production runs pass None.

  Returns:
    The summary dict `format_summary` prints: "output_dir", "labels" and,
    per phase run, "train_steps", "eval", "export_best", "predict", "export".

  Raises:
    UserError: for bad settings (before any work), a full disk or an
      unwritable output_dir.
    ValueError: for bad data, naming file:line.
  """
  # Before anything asks TensorFlow whether oneDNN is on (validate() may).
  if cpu_features.prefer_onednn():
    logging.info("oneDNN kernels on (%s=1 set for this process; set it to 0 "
                 "to keep TensorFlow's default).", cpu_features.ONEDNN_ENV)
  config.validate()
  role = roles.task_role()
  multi_worker.check_flags(config, role)
  # A TPU that cannot be found stops the run now, not after the data.
  tpu = estimator_lib.resolve_tpu(config) if config.use_tpu else None
  apply_graph_settings(config)
  logging.info(cpu_features.precision_note(
      config.use_bf16, config.use_amp or config.num_gpus or config.use_tpu))
  devices = devices or estimator_lib.NO_OVERRIDES
  if uses_embedded_default(config):
    logging.info("No data or model given: using the embedded sample dataset "
                 "in %s with a tiny from-scratch BERT.", sample_data_dir())
  with errors.environment_errors_as_user_errors(config.output_dir), \
      _output_dir_held(config):
    # Before anything starts the TensorFlow runtime (see make_strategy).
    strategy = (estimator_lib.make_strategy(config, devices)
                if config.do_train else None)
    if not (role.is_chief or config.do_train):
      logging.info("%s: nothing to do; the chief evaluates, predicts and "
                   "exports.", role.describe())
      return {"output_dir": config.output_dir, "labels": []}
    inputs = (_chief_inputs(config, role) if role.is_chief
              else multi_worker.wait_for_chief(config, role))
    summary = {"output_dir": config.output_dir, "labels": inputs.labels}
    steps = (num_steps(config, inputs.features_file("train")[1])
             if config.do_train else 1)
    estimator = estimator_lib.make_estimator(
        config, inputs.bert_config_file, inputs.labels,
        inputs.tokenizer.vocab, steps, strategy, devices, tpu)
    if not config.do_train and estimator.latest_checkpoint() is None:
      raise UserError(
          f"{config.output_dir} holds no checkpoint to evaluate, predict or "
          "export with; run with --do_train first (or point --output_dir at "
          "a trained run).")
    if config.do_train and not train(config, inputs, estimator, steps,
                                     summary):
      return summary  # a multi-worker job's non-chief worker
    if config.do_eval:
      evaluate_and_export_best(config, inputs, estimator, summary)
      write_eval_predictions(config, inputs, estimator)
    if config.do_predict:
      summary["predict"] = predict(config, inputs, estimator)
    if config.do_export:
      summary["export"] = export(config, inputs, estimator)
    write_report(config, summary)
  return summary


def format_summary(config: NerConfig, summary: Summary) -> str:
  """Human-readable report of where everything went (printed by the CLI)."""
  lines = ["", "==== BERT-NER run finished ====",
           f"output_dir:   {config.output_dir}",
           f"labels:       {' '.join(summary['labels'])}"]
  if "train_steps" in summary:
    lines.append(f"trained to:   step {summary['train_steps']} (checkpoints "
                 f"in {config.output_dir})")
  if "eval" in summary:
    results = summary["eval"]
    eval_path = os.path.join(config.output_dir, schema.EVAL_RESULTS_FILENAME)
    lines.append(f"eval:         entity F1 {results['entity_f1']:.4f}, "
                 f"precision {results['entity_precision']:.4f}, recall "
                 f"{results['entity_recall']:.4f} ({eval_path})")
  if "predict" in summary:
    predicted = summary["predict"]
    lines.append(f"predictions:  {predicted['sentences']} sentences, "
                 f"{predicted['tokens']} tokens -> {predicted['conll']}, "
                 f"{predicted['jsonl']}")
    if "metrics" in predicted:
      lines.append(f"predict F1:   {predicted['metrics']['f1']:.4f}")
  if "export" in summary:
    lines.append(f"SavedModel:   {summary['export']}")
  if "report" in summary:
    lines.append(f"report:       {summary['report']}")
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
