"""`NerConfig`: every setting of a run, documented, with all cross-field checks.

`trainer.run.train_lib.run(config)` calls `config.validate()` before any work,
so the command line (`trainer.run.cli`), `python -m trainer.task`, the
benchmarks and tests that build a config all get the same errors. Each error is
a `trainer.errors.UserError` naming the flag, the value and the fix:

    NerConfig(do_train=True, max_seq_length=600).validate()
    -> UserError: Cannot use sequence length 600 because the BERT model was
       only trained up to sequence length 512 (the built-in tiny model) ...
"""

import dataclasses
import json
import os
from typing import Any, Callable, Optional

from trainer.distill import layers as distill_layers
from trainer.distill import options as distill_options
from trainer.run import device_checks
from trainer.features import context as context_lib
from trainer.features import windows
from trainer.data import readers
from trainer import schema
from trainer.errors import UserError
from trainer.data.formats import jsonl_reader

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
# Settings that suit a tiny randomly initialised model (applied by the command
# line to flags the user did not set when the embedded default is used).
EMBEDDED_DEFAULT_SETTINGS = {
    "learning_rate": 5e-4,
    "num_train_epochs": 40.0,
    "train_batch_size": 16,
    "warmup_proportion": 0.1,
}
# The frozen-encoder recipe: applied by the command line to flags the user
# did not set when --freeze_bert restores --init_checkpoint. Chosen on the
# CoNLL-2003 dev split with all-MiniLM-L6-v2 (README "The frozen-encoder
# recipe", bench/conll2003.py): the last four layers concatenated (dev F1
# 0.7736 with softmax, against 0.6323 for the last layer and 0.7358 for a
# scalar mix of all six) under a BiLSTM-CRF with one LSTM layer (dev 0.9052;
# two layers, the BERT paper's choice, 0.8992 and 1.8x slower per epoch),
# lr 2e-3 for 10 epochs. Layer indices the model lacks are left out (a
# 2-layer model gets -2, -1).
FROZEN_DEFAULT_SETTINGS = {
    "bert_layers": [-4, -3, -2, -1],
    "layer_combination": "concat",
    "head": "bilstm_crf",
    "lstm_layers": 1,
    "learning_rate": 2e-3,
    "num_train_epochs": 10.0,
}


@dataclasses.dataclass
class NerConfig:
  """Every setting of a run; `trainer.run.cli` fills it from flags of the same
  name.

  A test shrinks it (tiny BERT, a few steps) and runs the whole pipeline.
  """
  # --- Phases: at least one must be set.
  do_train: bool = False      # train on the train split
  do_eval: bool = False       # dev-split entity P/R/F1 to eval_results.txt
  do_predict: bool = False    # tag the test split: predictions.conll/.jsonl
  do_export: bool = False     # SavedModel for TF Serving, <export_dir>/<n>/

  # --- Data.
  # Checkpoints, labels.txt, feature cache, results; a rerun resumes from it.
  output_dir: str = "output"
  # Folder with train/dev/test files under conventional names
  # (data_files.SPLIT_FILE_NAMES); the *_file fields below override it.
  data_dir: Optional[str] = None
  train_file: Optional[str] = None    # training data; overrides data_dir
  eval_file: Optional[str] = None     # dev data; overrides data_dir
  predict_file: Optional[str] = None  # data to tag; labels optional
  data_format: str = "auto"  # one of readers.FORMATS; "auto" detects it
  # One label per line; default: the training data's labels ('O' first).
  labels_file: Optional[str] = None
  # Nested or overlapping jsonl (CLUENER) entities: "keep_longest" keeps the
  # outer/longer span, "keep_first" the one written first, "error" stops.
  # Every dropped span is logged and listed in data_warnings.txt.
  overlapping_spans: str = jsonl_reader.DEFAULT_OVERLAPPING_SPANS
  # Remove the one ASCII digit after a CJK character in tokens ('中0' ->
  # '中'), the word-position layout of some social-media corpora.
  strip_token_suffix_digit: bool = False

  # --- Model. Without bert_config_file a tiny BERT (TINY_BERT_CONFIG) is
  # trained from scratch with a vocab built from the training data.
  bert_config_file: Optional[str] = None  # the checkpoint's bert_config.json
  vocab_file: Optional[str] = None        # its vocab.txt, one piece per line
  init_checkpoint: Optional[str] = None   # prefix, e.g. ckpt/bert_model.ckpt
  do_lower_case: bool = True  # must match the checkpoint (True: uncased, zh)
  # Word-pieces per window including [CLS] and [SEP], in
  # [3, max_position_embeddings]; longer sentences become several windows.
  max_seq_length: int = 128
  # Pieces between window starts, in [1, max_seq_length - 2].
  doc_stride: int = schema.DEFAULT_DOC_STRIDE
  # Document context (trainer.features.context): up to this many word-pieces of
  # the previous and as many of the next sentences around each sentence, inside
  # max_seq_length, never labelled; 0 feeds one sentence at a time.
  context_pieces: int = 0
  # Where context stops: "document" (CoNLL -DOCSTART-, jsonl doc_id) or
  # "file" (the whole file is one document).
  context_scope: str = context_lib.DEFAULT_CONTEXT_SCOPE
  head: str = "softmax"  # schema.HEADS: softmax, crf or bilstm_crf
  head_dropout: float = 0.1   # dropout on BERT's output, in [0, 1)
  lstm_units: int = 128       # units per direction (head=bilstm_crf)
  lstm_layers: int = 1        # stacked BiLSTM layers (head=bilstm_crf)
  crf_constrain_bio: bool = False  # forbid O -> I-X etc. in CRF decoding
  # Train only what init_checkpoint does not hold (the head); False
  # fine-tunes everything.
  freeze_bert: bool = True
  # Encoder layers feeding the head: indices into
  # BertModel.get_all_encoder_layers(), negative from the top; [-1] is the
  # last layer (get_sequence_output()).
  bert_layers: list[int] = dataclasses.field(default_factory=lambda: [-1])
  # How several layers become one vector per position (model.LAYER_
  # COMBINATIONS): concat, scalar_mix (ELMo's softmax-weighted sum times a
  # scale, trained as head variables) or mean.
  layer_combination: str = "concat"
  # With freeze_bert restoring init_checkpoint: run the frozen encoder once
  # (without dropout) over the training windows, store the selected layers
  # (float16, <output_dir>/cache) and train the head from them every epoch.
  cache_bert_features: bool = True
  # The largest feature cache read into memory, in GB (1e9 bytes); a larger
  # one is read from disk window by window.
  bert_feature_cache_gb: float = 4.0
  # Folder of the feature cache (None: <output_dir>/cache). Runs on the same
  # data, checkpoint and layers (trying heads or learning rates) may share
  # one: a cache is named by what it holds and written atomically.
  bert_feature_cache_dir: Optional[str] = None

  # --- Training schedule.
  train_batch_size: int = 32    # windows per update (global over replicas)
  eval_batch_size: int = 32     # windows per eval step
  predict_batch_size: int = 32  # windows per predict step
  learning_rate: float = 5e-5   # peak AdamW learning rate, > 0
  num_train_epochs: float = 3.0  # passes over the training windows, > 0
  num_train_steps: Optional[int] = None  # overrides num_train_epochs
  warmup_proportion: float = 0.1  # fraction of steps warming up, in [0, 1)
  # Split each batch into this many micro-batches (one update, less memory);
  # must divide train_batch_size.
  gradient_accumulation_steps: int = 1
  # Lazy AdamW on the word-piece embedding rows a batch uses, not the whole
  # table (trainer.model.sparse_rows): one device, no accumulation.
  sparse_embedding_updates: bool = False
  save_checkpoints_steps: int = 1000  # steps between checkpoints
  keep_checkpoint_max: int = 3        # checkpoints kept
  # With do_train and do_eval, also evaluate every this many steps (0: only
  # at the end); with do_export the best one is exported to export_best/.
  eval_every_steps: int = 0
  seed: int = 42  # graph-level random seed (initialisation, dropout, shuffle)

  # --- Input pipeline.
  # Batch windows of similar length, each padded to its longest window;
  # False pads every batch to max_seq_length (google-research/bert).
  bucketing: bool = True
  # Ascending window lengths between buckets; None derives them from data
  # (`windows.derive_bucket_boundaries`, see `bucket_length_multiple`).
  bucket_boundaries: Optional[list[int]] = None
  cache: bool = True  # keep parsed training windows in memory after epoch 1

  # --- Devices.
  num_gpus: int = 0  # >= 2: MirroredStrategy over this machine's GPUs
  use_xla: bool = False  # XLA auto-clustering (best on GPU)
  use_amp: bool = False  # float16 matrix math on GPU, dynamic loss scaling
  # bfloat16 matrix math on CPUs with AVX512_BF16 or AMX: explicit casts
  # before the encoder's products (trainer.model.precision); weights, layer
  # norm, softmax, loss and CRF stay float32, exports are float32.
  # Needs oneDNN (TF_ENABLE_ONEDNN_OPTS=1 where it is not on by default).
  use_bf16: bool = False
  # Build BERT's dense layers, GELU and layer norm in the forms grappler and
  # oneDNN fuse (trainer.model.fused_ops): same variables and checkpoints,
  # outputs equal to float32 rounding; False builds bert.modeling's own ops.
  fused_ops: bool = True
  use_tpu: bool = False  # TPUEstimator on a Cloud TPU (needs tpu_name)
  tpu_name: Optional[str] = None     # Cloud TPU name or grpc:// address
  tpu_zone: Optional[str] = None     # its GCE zone (optional)
  gcp_project: Optional[str] = None  # its GCP project (optional)
  num_tpu_cores: int = 8             # TPU cores; batch sizes divide by it
  iterations_per_loop: int = 1000    # steps per TPU host loop
  # Seconds each step of finding the TPU may take (name lookup, connecting,
  # listing its cores) before the run stops with an error.
  tpu_timeout_seconds: int = 15
  # Seconds a non-chief worker of a multi-worker job waits for the chief's
  # shared files (vocab, labels, training features) before it gives up.
  chief_wait_seconds: int = 600

  # --- Export.
  export_dir: Optional[str] = None  # default: <output_dir>/export
  # Weights as graph constants, no variables/ (trainer.export.
  # saved_model_writer): faster single sentences, above all in bfloat16.
  export_constant_weights: bool = False

  # --- Distillation (trainer.distill; checks in distill.options).
  teacher_dir: Optional[str] = None     # a finished run's output_dir
  student_layers: Optional[str] = None  # "3", or 0-based indices "1,3,5"
  # How a count picks the source's layers: "bottom" (its first K) or "even".
  student_layer_choice: str = "bottom"
  distill_alpha: float = distill_options.DEFAULT_ALPHA  # gold loss weight
  # Temperature T of teacher and student distributions in the KL term.
  distill_temperature: float = distill_options.DEFAULT_TEMPERATURE
  distill_unlabelled_file: Optional[str] = None  # text/JSON lines, no tags

  def bucket_length_multiple(self) -> int:
    """What derived length buckets round up to: even lengths on CPU; 8 with
    --use_amp (GPU tensor cores) or --use_xla (one program per shape).
    """
    if self.use_amp or self.use_xla:
      return windows.ACCELERATOR_LENGTH_MULTIPLE
    return windows.CPU_LENGTH_MULTIPLE

  def validate(self) -> None:
    """Checks every field and every combination; reads no data.

    Raises:
      UserError: naming the flag, the value and the fix.
    """
    _check_phases_and_paths(self)
    _check_windows(self)
    _check_model(self)
    _check_schedule(self)
    device_checks.check(self)
    _check_head_and_input(self)
    distill_options.check(self)


def uses_embedded_default(config: NerConfig) -> bool:
  """True when no data and no model were given: train on the sample."""
  return not any([config.data_dir, config.train_file, config.eval_file,
                  config.predict_file, config.bert_config_file,
                  config.init_checkpoint, config.vocab_file])


def uses_frozen_recipe(config: NerConfig) -> bool:
  """True when --freeze_bert trains a head on BERT from --init_checkpoint."""
  return bool(config.freeze_bert and config.init_checkpoint)


def apply_frozen_defaults(config: NerConfig,
                          is_set: Callable[[str], bool]) -> dict[str, Any]:
  """Sets `FROZEN_DEFAULT_SETTINGS` the user did not set; returns them.

  Only for `uses_frozen_recipe` configs. Default layer indices the model
  does not have (read from bert_config_file) are left out.

  Example: a 2-layer model, nothing set -> bert_layers [-2, -1], head
  "bilstm_crf", lstm_layers 1, ...; with is_set("head") the head stays.
  """
  if not uses_frozen_recipe(config):
    return {}
  applied = {}
  for name, value in FROZEN_DEFAULT_SETTINGS.items():
    if is_set(name):
      continue
    if name == "bert_layers":
      value = _layers_the_model_has(config, value)
    setattr(config, name, value)
    applied[name] = value
  return applied


def _gfile():
  """`tf.io.gfile` (local, gs://, ...), imported only by the checks that read
  files, so `NerConfig` itself imports without TensorFlow."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def _layers_the_model_has(config: NerConfig, layers: list[int]) -> list[int]:
  """`layers` less the indices outside the model's encoder (if readable)."""
  path = config.bert_config_file
  if not path or not _gfile().exists(path):
    return list(layers)
  count = _read_bert_config(path).get("num_hidden_layers")
  if not isinstance(count, int):
    return list(layers)
  count = distill_layers.layer_count(config.student_layers, count, path)
  return [index for index in layers if -count <= index < count]


def model_files(config: NerConfig) -> tuple[str, str]:
  """(bert_config.json, vocab.txt) paths of the run's model.

  The given files; for a from-scratch model, the ones in output_dir (written
  by the first run, reused by later ones; vocab_file may still be given).
  """
  if config.bert_config_file:
    return config.bert_config_file, config.vocab_file
  return (os.path.join(config.output_dir, schema.BERT_CONFIG_FILENAME),
          config.vocab_file or os.path.join(config.output_dir,
                                            schema.VOCAB_FILENAME))


def vocab_size_of(vocab_file: str) -> int:
  """Ids a vocab file assigns: its lines up to the last non-blank one."""
  with _gfile().GFile(vocab_file) as reader:
    lines = reader.read().split("\n")
  while lines and not lines[-1].strip():
    lines.pop()
  return len(lines)


def _check_phases_and_paths(config: NerConfig) -> None:
  if not (config.do_train or config.do_eval or config.do_predict
          or config.do_export):
    raise UserError("At least one of --do_train, --do_eval, --do_predict or "
                    "--do_export must be set.")
  if config.data_dir and not _gfile().isdir(config.data_dir):
    raise UserError(f"--data_dir={config.data_dir} is not a directory.")
  for name in ("train_file", "eval_file", "predict_file", "labels_file",
               "bert_config_file", "vocab_file"):
    path = getattr(config, name)
    if path and (not _gfile().exists(path) or _gfile().isdir(path)):
      raise UserError(f"--{name}={path}: no such file.")
  checkpoint = config.init_checkpoint
  if checkpoint and not _gfile().exists(f"{checkpoint}.index"):
    raise UserError(f"--init_checkpoint={checkpoint}: no checkpoint "
                    f"({checkpoint}.index is missing); pass the prefix, e.g. "
                    "ckpt/bert_model.ckpt.")
  if checkpoint and not config.bert_config_file:
    raise UserError("--init_checkpoint needs --bert_config_file (and "
                    "--vocab_file) of the same model.")
  if config.bert_config_file and not config.vocab_file:
    raise UserError("--bert_config_file needs --vocab_file of the same model.")
  from trainer.features import tokenization  # pylint: disable=g-import-not-at-top
  try:
    tokenization.validate_case_matches_checkpoint(config.do_lower_case,
                                                  checkpoint)
  except ValueError as error:
    raise UserError(str(error).strip()) from None


def _check_windows(config: NerConfig) -> None:
  if config.max_seq_length < 3:
    raise UserError(f"--max_seq_length={config.max_seq_length} is too small: "
                    "it needs room for [CLS], one piece and [SEP] (at least "
                    "3).")
  if not 1 <= config.doc_stride <= config.max_seq_length - 2:
    raise UserError(f"--doc_stride={config.doc_stride} must be in [1, "
                    f"max_seq_length - 2 = {config.max_seq_length - 2}].")
  try:
    context_lib.check_settings(config.context_pieces, config.context_scope)
  except ValueError as error:
    raise UserError(str(error)) from None


def _read_bert_config(path: str) -> dict[str, Any]:
  try:
    with _gfile().GFile(path) as reader:
      values = json.load(reader)
  except json.JSONDecodeError as error:
    raise UserError(f"{path} is not valid JSON ({error}); pass the "
                    "bert_config.json of the checkpoint.") from None
  for key in ("max_position_embeddings", "vocab_size"):
    if not isinstance(values.get(key), int):
      raise UserError(f"{path} has no integer {key!r}; pass the "
                      "bert_config.json of the checkpoint.")
  return values


def _check_model(config: NerConfig) -> None:
  """max_seq_length and the vocab against the model's bert_config.json."""
  bert_config_file, vocab_file = model_files(config)
  if _gfile().exists(bert_config_file):
    bert_config = _read_bert_config(bert_config_file)
    model = f"--bert_config_file={bert_config_file}"
  else:  # from scratch: written by the run from TINY_BERT_CONFIG
    bert_config = TINY_BERT_CONFIG
    model = "the built-in tiny model"
  max_positions = bert_config["max_position_embeddings"]
  if config.max_seq_length > max_positions:
    raise UserError(
        f"Cannot use sequence length {config.max_seq_length} because the BERT "
        f"model was only trained up to sequence length {max_positions} "
        f"({model}); pass --max_seq_length {max_positions} or less.")
  if isinstance(bert_config.get("num_hidden_layers"), int):
    from trainer.model import heads  # pylint: disable=g-import-not-at-top
    count = distill_layers.layer_count(  # a student's, when one
        config.student_layers, bert_config["num_hidden_layers"], model)
    if count != bert_config["num_hidden_layers"]:
      model = f"a {count}-layer student of {model}"
    try:
      heads.resolve_layers(config.bert_layers, count)
    except ValueError as error:
      raise UserError(f"{error} ({model})") from None
  if "vocab_size" in bert_config and _gfile().exists(vocab_file):
    pieces = vocab_size_of(vocab_file)
    if bert_config["vocab_size"] < pieces:
      raise UserError(
          f"{model} has vocab_size {bert_config['vocab_size']} but "
          f"--vocab_file={vocab_file} holds {pieces} pieces: ids from "
          f"{bert_config['vocab_size']} on have no embedding. Pass the "
          "vocab.txt that came with the checkpoint.")


def _check_positive(config: NerConfig, names: tuple[str, ...]) -> None:
  for name in names:
    value = getattr(config, name)
    if value < 1:
      raise UserError(f"--{name}={value} must be at least 1.")


def _check_schedule(config: NerConfig) -> None:
  _check_positive(config, ("train_batch_size", "eval_batch_size",
                           "predict_batch_size", "save_checkpoints_steps",
                           "keep_checkpoint_max"))
  if config.num_train_steps is not None and config.num_train_steps < 1:
    raise UserError(f"--num_train_steps={config.num_train_steps} must be at "
                    "least 1.")
  if config.learning_rate <= 0 or config.num_train_epochs <= 0:
    raise UserError("--learning_rate and --num_train_epochs must be > 0.")
  for name in ("warmup_proportion", "head_dropout"):
    if not 0 <= getattr(config, name) < 1:
      raise UserError(f"--{name}={getattr(config, name)} must be in [0, 1).")
  if config.eval_every_steps < 0:
    raise UserError(f"--eval_every_steps={config.eval_every_steps} must be "
                    ">= 0.")
  accumulation = config.gradient_accumulation_steps
  if accumulation < 1 or config.train_batch_size % accumulation:
    raise UserError(f"--gradient_accumulation_steps={accumulation} must be "
                    ">= 1 and divide "
                    f"--train_batch_size={config.train_batch_size}.")


def _check_head_and_input(config: NerConfig) -> None:
  if config.data_format not in readers.FORMATS:
    raise UserError(f"--data_format={config.data_format!r} is not one of "
                    f"{', '.join(readers.FORMATS)}.")
  if config.overlapping_spans not in jsonl_reader.OVERLAPPING_SPANS_CHOICES:
    raise UserError(f"--overlapping_spans={config.overlapping_spans!r} is not "
                    "one of "
                    f"{', '.join(jsonl_reader.OVERLAPPING_SPANS_CHOICES)}.")
  if config.head not in schema.HEADS:
    raise UserError(f"--head={config.head!r} is not one of "
                    f"{', '.join(schema.HEADS)}.")
  if config.crf_constrain_bio and config.head == "softmax":
    raise UserError("--crf_constrain_bio needs --head=crf or bilstm_crf.")
  _check_positive(config, ("lstm_units", "lstm_layers"))
  if config.layer_combination not in schema.LAYER_COMBINATIONS:
    raise UserError(f"--layer_combination={config.layer_combination!r} is "
                    f"not one of {', '.join(schema.LAYER_COMBINATIONS)}.")
  if config.bert_feature_cache_gb < 0:
    raise UserError(f"--bert_feature_cache_gb={config.bert_feature_cache_gb} "
                    "must be >= 0 (0 reads the cache from disk).")
  boundaries = config.bucket_boundaries
  if boundaries and (
      not all(isinstance(value, int) for value in boundaries)
      or list(boundaries) != sorted(set(boundaries)) or boundaries[0] < 1):
    raise UserError(f"--bucket_boundaries={','.join(map(str, boundaries))} "
                    "must be strictly ascending positive integers, e.g. "
                    "16,32,64.")
