"""The command line of the trainer: flags, then `train_lib.run`.

`run_ner.py` and `python -m trainer.task` both call `run_main()`:

    define_flags()                      # every flag, grouped, with limits
    config = config_from_flags()        # NerConfig (+ embedded defaults)
    summary = train_lib.run(config)     # validates, then works

Errors a user can fix (`errors.UserError`, and the data modules'
ValueErrors, which name file:line) end the process with one
``error: ...`` line on stderr and exit status 1. Anything else is a bug and
keeps its traceback. Flags may also come from a file: ``--flagfile=run.flags``.
"""

import dataclasses
import sys
from typing import Optional, Sequence

from absl import app
from absl import flags
from absl import logging

from trainer.run import config as config_lib
from trainer.features import context as context_lib
from trainer import schema
from trainer.data import readers
from trainer.run import train_lib
from trainer.errors import UserError
from trainer.data.formats import jsonl_reader

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines every flag of the runner on absl's FLAGS (once, before parsing).

  Defaults come from `NerConfig`; every cross-flag check is
  `NerConfig.validate`, so importing this module defines nothing.
  """
  defaults = config_lib.NerConfig()
  # Required (for real runs; all have working defaults for the sample).
  flags.DEFINE_string("output_dir", defaults.output_dir,
                      "Directory for checkpoints, labels.txt, feature cache, "
                      "eval results and predictions. Rerunning resumes from "
                      "its latest checkpoint.")
  flags.DEFINE_string("data_dir", None,
                      "Directory holding train/dev/test files under "
                      "conventional names (train.txt, dev.txt, test.txt, "
                      "example.train, source.txt/target.txt, *.jsonl, ...).")
  flags.DEFINE_string("bert_config_file", None,
                      "bert_config.json of the pre-trained model. Without it "
                      "a tiny BERT is trained from scratch.")
  flags.DEFINE_string("vocab_file", None,
                      "vocab.txt of the pre-trained model (required with "
                      "--bert_config_file).")
  flags.DEFINE_string("init_checkpoint", None,
                      "Checkpoint prefix to initialise from, e.g. "
                      "ckpt/bert_model.ckpt.")
  flags.DEFINE_bool("do_train", False, "Train on the train split.")
  flags.DEFINE_bool("do_eval", False,
                    "Evaluate on the dev split: entity P/R/F1 to "
                    "eval_results.txt and TensorBoard.")
  flags.DEFINE_bool("do_predict", False,
                    "Predict the test split (or --predict_file) to "
                    "predictions.conll and predictions.jsonl.")
  flags.DEFINE_bool("do_export", False,
                    "Export a SavedModel for TF Serving to "
                    "<export_dir>/<version>/.")
  _define_data_flags(defaults)
  _define_training_flags(defaults)
  _define_device_flags(defaults)
  _define_model_flags(defaults)
  _define_distill_flags(defaults)
  flags.DEFINE_string("export_dir", None,
                      "Base directory of exported versions; default "
                      "<output_dir>/export.")
  flags.DEFINE_bool("export_constant_weights",
                    defaults.export_constant_weights,
                    "Export the weights as constants of the serving graph "
                    "(no variables/): TF Serving prepares each weight once, "
                    "and with --mixed_precision=bfloat16 keeps them in "
                    "bfloat16; faster single sentences.")
  flags.DEFINE_integer("seed", defaults.seed, "Random seed.")


def _define_data_flags(defaults: config_lib.NerConfig) -> None:
  """Input files, formats and windowing."""
  flags.DEFINE_string("train_file", None, "Training file; overrides --data_dir.")
  flags.DEFINE_string("eval_file", None, "Dev file; overrides --data_dir.")
  flags.DEFINE_string("predict_file", None,
                      "File to predict (labelled or raw text); overrides "
                      "--data_dir's test file.")
  flags.DEFINE_enum("data_format", defaults.data_format,
                    list(readers.FORMATS),
                    "Input format: conll (token ... tag per line), parallel "
                    "(tokens file + tags file), jsonl (CLUENER), text (raw "
                    "sentences), or auto-detect.")
  flags.DEFINE_enum("overlapping_spans", defaults.overlapping_spans,
                    list(jsonl_reader.OVERLAPPING_SPANS_CHOICES),
                    "Nested or overlapping entities in jsonl (CLUENER) data: "
                    "keep_longest keeps the outer/longer span, keep_first the "
                    "one written first, error stops. Every dropped span is "
                    "logged and listed in <output_dir>/data_warnings.txt.")
  flags.DEFINE_bool("strip_token_suffix_digit",
                    defaults.strip_token_suffix_digit,
                    "Remove the one ASCII digit after a CJK character in "
                    "tokens ('中0' -> '中'), the word-position layout of some "
                    "social-media corpora. Without it such a file is an "
                    "error.")
  flags.DEFINE_string("labels_file", None,
                      "One label per line; default: the labels of the "
                      "training data ('O' first, then sorted).")
  flags.DEFINE_bool("do_lower_case", defaults.do_lower_case,
                    "Lower-case input; must match the checkpoint (True for "
                    "uncased and Chinese models).")
  flags.DEFINE_integer("max_seq_length", defaults.max_seq_length,
                       "Word-pieces per window including [CLS] and [SEP]; at "
                       "most the model's max_position_embeddings (512). "
                       "Longer sentences are split into windows.")
  flags.DEFINE_integer("doc_stride", defaults.doc_stride,
                       "Pieces between window starts for long sentences "
                       "(1 .. max_seq_length - 2).")
  flags.DEFINE_integer("context_pieces", defaults.context_pieces,
                       "Document context: up to this many word-pieces of the "
                       "previous and as many of the next sentences are fed "
                       "around each sentence (>= 0), where max_seq_length "
                       "leaves room; they never carry a label or a "
                       "prediction. 0: one sentence at a time.")
  flags.DEFINE_enum("context_scope", defaults.context_scope,
                    list(context_lib.CONTEXT_SCOPES),
                    "Where --context_pieces stops: document (at CoNLL "
                    "-DOCSTART- lines and jsonl doc_id changes) or file (the "
                    "whole file is one document).")


def _define_training_flags(defaults: config_lib.NerConfig) -> None:
  """Batches, schedule, checkpoints, freezing, bucketing and caching."""
  flags.DEFINE_integer("train_batch_size", defaults.train_batch_size,
                       "Windows per training step.")
  flags.DEFINE_integer("eval_batch_size", defaults.eval_batch_size,
                       "Windows per eval step.")
  flags.DEFINE_integer("predict_batch_size", defaults.predict_batch_size,
                       "Windows per predict step.")
  flags.DEFINE_float("learning_rate", defaults.learning_rate,
                     "Peak AdamW learning rate (> 0).")
  flags.DEFINE_float("num_train_epochs", defaults.num_train_epochs,
                     "Passes over the training windows (> 0).")
  flags.DEFINE_integer("num_train_steps", None,
                       "Training steps; overrides --num_train_epochs.")
  flags.DEFINE_float("warmup_proportion", defaults.warmup_proportion,
                     "Fraction of steps with linear warmup, in [0, 1).")
  flags.DEFINE_integer("save_checkpoints_steps", defaults.save_checkpoints_steps,
                       "Steps between checkpoints.")
  flags.DEFINE_integer("eval_every_steps", defaults.eval_every_steps,
                       "With --do_train --do_eval: also evaluate every this "
                       "many steps (0: only at the end). With --do_export the "
                       "best checkpoint by dev entity F1 is exported to "
                       "<output_dir>/export_best/<version>.")
  flags.DEFINE_integer("keep_checkpoint_max", defaults.keep_checkpoint_max,
                       "Checkpoints kept.")
  flags.DEFINE_bool("freeze_bert", defaults.freeze_bert,
                    "Train only the variables not restored from "
                    "--init_checkpoint (the task head); --nofreeze_bert "
                    "fine-tunes everything.")
  flags.DEFINE_bool("bucketing", defaults.bucketing,
                    "Batch windows of similar length and pad each batch to "
                    "its longest window (fast); --nobucketing pads every "
                    "batch to --max_seq_length as google-research/bert does.")
  flags.DEFINE_list("bucket_boundaries", None,
                    "Comma-separated ascending window lengths separating the "
                    "length buckets; default: derived from the data.")
  flags.DEFINE_bool("cache", defaults.cache,
                    "Keep parsed training windows in memory after the first "
                    "epoch (about 1 KB per window); --nocache re-reads the "
                    "feature file every epoch.")
  flags.DEFINE_integer("gradient_accumulation_steps",
                       defaults.gradient_accumulation_steps,
                       "Split each --train_batch_size batch into this many "
                       "micro-batches and update once with their mean "
                       "gradient (same result, less memory).")
  flags.DEFINE_bool("sparse_embedding_updates",
                    defaults.sparse_embedding_updates,
                    "Full fine-tuning: update only the word-piece embedding "
                    "rows each batch uses (lazy AdamW; rows not in a batch "
                    "keep their weights and Adam moments) instead of the "
                    "whole table; faster steps, most of all with --use_bf16. "
                    "One device, without --gradient_accumulation_steps.")


def _define_device_flags(defaults: config_lib.NerConfig) -> None:
  """Devices (GPUs, TPU) and speed options (XLA, mixed precision, fusion)."""
  flags.DEFINE_integer("num_gpus", defaults.num_gpus,
                       "Train on this many GPUs of this machine with "
                       "tf.distribute.MirroredStrategy (>= 2); "
                       "--train_batch_size stays the global batch.")
  flags.DEFINE_bool("use_tpu", defaults.use_tpu,
                    "Train, evaluate and predict on a Cloud TPU with "
                    "TPUEstimator (fixed shapes; needs --tpu_name).")
  flags.DEFINE_string("tpu_name", None, "Cloud TPU name or grpc:// address.")
  flags.DEFINE_string("tpu_zone", None, "GCE zone of the TPU (optional).")
  flags.DEFINE_string("gcp_project", None, "GCP project of the TPU (optional).")
  flags.DEFINE_integer("num_tpu_cores", defaults.num_tpu_cores,
                       "TPU cores (with --use_tpu).")
  flags.DEFINE_integer("iterations_per_loop", defaults.iterations_per_loop,
                       "Steps per TPU host loop (with --use_tpu).")
  flags.DEFINE_integer("tpu_timeout_seconds", defaults.tpu_timeout_seconds,
                       "Seconds (>= 1) each step of finding the TPU may take "
                       "(name lookup, connecting, listing its cores) before "
                       "the run stops with an error (with --use_tpu).")
  flags.DEFINE_integer("chief_wait_seconds", defaults.chief_wait_seconds,
                       "Multi-worker jobs (TF_CONFIG): seconds (>= 1) a "
                       "non-chief worker waits for the chief's shared files "
                       "(vocab, labels, training features) before it stops "
                       "with an error.")
  flags.DEFINE_bool("use_xla", defaults.use_xla,
                    "Compile the graph with XLA (auto-clustering); best on "
                    "GPU.")
  flags.DEFINE_bool("use_amp", defaults.use_amp,
                    "Mixed precision on GPU: float16 matrix math with dynamic "
                    "loss scaling; softmax and CRF stay float32.")
  flags.DEFINE_bool("use_bf16", defaults.use_bf16,
                    "Mixed precision on CPU: the encoder's matrix products "
                    "in bfloat16 for training, evaluation and prediction; "
                    "weights, checkpoints, layer norm, softmax, loss and CRF "
                    "stay float32, and exports are float32. Only on CPUs "
                    "with AVX512_BF16 or AMX (checked at start; elsewhere "
                    "bfloat16 is emulated and slower), with oneDNN on "
                    "(TF_ENABLE_ONEDNN_OPTS=1) and --fused_ops.")
  flags.DEFINE_bool("fused_ops", defaults.fused_ops,
                    "Build BERT's dense layers, GELU and layer norm as "
                    "fusable ops (MatMul+BiasAdd+activation, fused layer "
                    "norm): same checkpoints, outputs equal to float32 "
                    "rounding. --nofused_ops builds bert.modeling's own "
                    "ops.")


def _define_model_flags(defaults: config_lib.NerConfig) -> None:
  """The task head and the frozen-encoder recipe."""
  flags.DEFINE_enum("head", defaults.head, list(schema.HEADS),
                    "Task layer: softmax (dense per word-piece), crf (dense + "
                    "linear-chain CRF over words) or bilstm_crf (BiLSTM + "
                    "dense + CRF over words).")
  flags.DEFINE_float("head_dropout", defaults.head_dropout,
                     "Dropout on BERT's output before the task head while "
                     "training, in [0, 1).")
  flags.DEFINE_integer("lstm_units", defaults.lstm_units,
                       "Units per direction of each BiLSTM layer "
                       "(--head=bilstm_crf).")
  flags.DEFINE_integer("lstm_layers", defaults.lstm_layers,
                       "Stacked BiLSTM layers (--head=bilstm_crf).")
  flags.DEFINE_bool("crf_constrain_bio", defaults.crf_constrain_bio,
                    "Forbid impossible tag transitions (O -> I-X, B-X -> I-Y, "
                    "...) in CRF decoding.")
  # Other: the frozen-encoder recipe. With --freeze_bert and
  # --init_checkpoint, unset flags take config.FROZEN_DEFAULT_SETTINGS.
  flags.DEFINE_list("bert_layers", defaults.bert_layers,
                    "Comma-separated encoder layers feeding the head: indices "
                    "into BertModel.get_all_encoder_layers(), negative from "
                    "the top (-1: the last layer). E.g. -4,-3,-2,-1.")
  flags.DEFINE_enum("layer_combination", defaults.layer_combination,
                    list(schema.LAYER_COMBINATIONS),
                    "How --bert_layers combine: concat (one vector of "
                    "layers x hidden), scalar_mix (ELMo: softmax-weighted sum "
                    "times a scale, trained with the head) or mean.")
  flags.DEFINE_bool("cache_bert_features", defaults.cache_bert_features,
                    "With --freeze_bert and --init_checkpoint: run the frozen "
                    "encoder once, without dropout, over the training data, "
                    "store the --bert_layers (float16, <output_dir>/cache) "
                    "and train the head from them every epoch; "
                    "--nocache_bert_features runs the encoder every step.")
  flags.DEFINE_float("bert_feature_cache_gb", defaults.bert_feature_cache_gb,
                     "Largest BERT feature cache held in memory, in GB "
                     "(1e9 bytes, >= 0); a larger one is read from disk.")
  flags.DEFINE_string("bert_feature_cache_dir",
                      defaults.bert_feature_cache_dir,
                      "Folder of the BERT feature cache; default "
                      "<output_dir>/cache. Runs on the same data, checkpoint "
                      "and --bert_layers (e.g. trying heads or learning "
                      "rates) can share one.")


def _define_distill_flags(defaults: config_lib.NerConfig) -> None:
  """Distillation into a shallower student (trainer.distill, docs/distill.md)."""
  flags.DEFINE_string("teacher_dir", None,
                      "A finished run's --output_dir: its latest checkpoint "
                      "tags the training windows once and the student learns "
                      "from its per-token label distributions.")
  flags.DEFINE_string("student_layers", None,
                      "A student with this many encoder layers of the "
                      "model's (see --student_layer_choice), or the 0-based "
                      "layer indices to keep, e.g. 1,3,5.")
  flags.DEFINE_enum("student_layer_choice", defaults.student_layer_choice,
                    ["bottom", "even"],
                    "How a --student_layers count picks layers: the first "
                    "K (3 of 6: 0,1,2) or K spread evenly keeping the last "
                    "(3 of 6: 1,3,5).")
  flags.DEFINE_float("distill_alpha", defaults.distill_alpha,
                     "Weight of the gold-tag loss in [0, 1]; 1 - alpha "
                     "weighs T^2 * KL(teacher || student).")
  flags.DEFINE_float("distill_temperature", defaults.distill_temperature,
                     "Temperature T of both distributions in the KL term.")
  flags.DEFINE_string("distill_unlabelled_file", None,
                      "Sentences without tags (text lines or JSON lines "
                      "with a 'text' field) that the student learns from "
                      "the teacher alone.")


def _bucket_boundaries(values: Optional[Sequence[str]]) -> Optional[list[int]]:
  """--bucket_boundaries strings -> ints ("16,32" -> [16, 32])."""
  if not values:
    return None
  try:
    return [int(value) for value in values]
  except ValueError:
    raise UserError(f"--bucket_boundaries={','.join(values)} must be "
                    "comma-separated integers, e.g. 16,32,64.") from None


def _bert_layers(values: Sequence[str]) -> list[int]:
  """--bert_layers strings -> ints ("-2,-1" -> [-2, -1])."""
  try:
    return [int(value) for value in values]
  except ValueError:
    raise UserError(f"--bert_layers={','.join(values)} must be "
                    "comma-separated integers, e.g. -4,-3,-2,-1.") from None


def config_from_flags() -> config_lib.NerConfig:
  """NerConfig from the parsed flags (embedded-default settings applied).

  Every NerConfig field has a flag of the same name. With no data and no
  model (the embedded default), flags the user did not set take
  `EMBEDDED_DEFAULT_SETTINGS`; with --freeze_bert restoring
  --init_checkpoint, `FROZEN_DEFAULT_SETTINGS` (`apply_frozen_defaults`).
  """
  values = {field.name: FLAGS[field.name].value
            for field in dataclasses.fields(config_lib.NerConfig)}
  values["bucket_boundaries"] = _bucket_boundaries(values["bucket_boundaries"])
  values["bert_layers"] = _bert_layers(values["bert_layers"])
  config = config_lib.NerConfig(**values)
  if config_lib.uses_embedded_default(config):
    for name, value in config_lib.EMBEDDED_DEFAULT_SETTINGS.items():
      if not FLAGS[name].present:
        setattr(config, name, value)
  applied = config_lib.apply_frozen_defaults(
      config, lambda name: FLAGS[name].present)
  if applied:
    logging.info("Frozen-encoder recipe defaults for flags not set: %s",
                 ", ".join(f"--{name}={value}"
                           for name, value in applied.items()))
  return config


def main(argv: Sequence[str]) -> None:
  """Runs the configured phases and prints where everything went."""
  del argv  # everything comes from flags
  config = config_from_flags()
  summary = train_lib.run(config)
  print(train_lib.format_summary(config, summary))


def run_main(argv: Optional[Sequence[str]] = None) -> None:
  """Entry point of `run_ner.py`, `python -m trainer.task` and `run-ner`.

  Args:
    argv: command line including the program name; default sys.argv.

  Exits with status 1 and one ``error: ...`` line for a UserError or a
  data ValueError; other exceptions keep their traceback.
  """
  if "do_train" not in FLAGS:
    define_flags()
  try:
    app.run(main, argv=argv)
  except ValueError as error:  # UserError, or bad data naming file:line
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
