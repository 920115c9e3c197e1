"""BERT named-entity recognition: train, evaluate, predict and export.

    python run_ner.py --do_train --do_eval --do_predict --do_export

With no data or model flags it trains a tiny BERT on the embedded Chinese
sample. With a Google-format checkpoint:

    python run_ner.py --data_dir DATA --bert_config_file ckpt/bert_config.json \
        --vocab_file ckpt/vocab.txt --init_checkpoint ckpt/bert_model.ckpt \
        --output_dir out --do_train --do_eval --do_predict --do_export

This file only defines and checks flags; the work is in `trainer.train_lib`.
"""

import dataclasses
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from trainer import model as model_lib
from trainer import readers
from trainer import train_lib

FLAGS = flags.FLAGS


def define_flags():
  """Defines every flag of the runner (called once, before parsing)."""
  defaults = train_lib.NerConfig()
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

  # Other: data.
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

  # Other: training.
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
  flags.DEFINE_integer("eval_every_steps", 0,
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
  flags.DEFINE_integer("gradient_accumulation_steps", 1,
                       "Split each --train_batch_size batch into this many "
                       "micro-batches and update once with their mean "
                       "gradient (same result, less memory).")
  flags.DEFINE_integer("num_gpus", 0,
                       "Train on this many GPUs of this machine with "
                       "tf.distribute.MirroredStrategy (>= 2); "
                       "--train_batch_size stays the global batch.")
  flags.DEFINE_bool("use_tpu", False,
                    "Train, evaluate and predict on a Cloud TPU with "
                    "TPUEstimator (fixed shapes; needs --tpu_name).")
  flags.DEFINE_string("tpu_name", None, "Cloud TPU name or grpc:// address.")
  flags.DEFINE_string("tpu_zone", None, "GCE zone of the TPU (optional).")
  flags.DEFINE_string("gcp_project", None, "GCP project of the TPU (optional).")
  flags.DEFINE_integer("num_tpu_cores", 8, "TPU cores (with --use_tpu).")
  flags.DEFINE_integer("iterations_per_loop", 1000,
                       "Steps per TPU host loop (with --use_tpu).")
  flags.DEFINE_bool("use_xla", defaults.use_xla,
                    "Compile the graph with XLA (auto-clustering); best on "
                    "GPU.")
  flags.DEFINE_bool("use_amp", defaults.use_amp,
                    "Mixed precision on GPU: float16 matrix math with dynamic "
                    "loss scaling; softmax and CRF stay float32.")
  flags.DEFINE_enum("head", defaults.head, list(model_lib.HEADS),
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
  flags.DEFINE_string("export_dir", None,
                      "Base directory of exported versions; default "
                      "<output_dir>/export.")
  flags.DEFINE_integer("seed", defaults.seed, "Random seed.")


def validate_flags_or_throw():
  """All cross-flag checks; raises ValueError naming the flag and the fix."""
  if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict
          or FLAGS.do_export):
    raise ValueError("At least one of --do_train, --do_eval, --do_predict or "
                     "--do_export must be set.")
  for name in ("data_dir",):
    if FLAGS[name].value and not os.path.isdir(FLAGS[name].value):
      raise ValueError("--%s=%s is not a directory." % (name, FLAGS[name].value))
  for name in ("train_file", "eval_file", "predict_file", "labels_file",
               "bert_config_file", "vocab_file"):
    if FLAGS[name].value and not os.path.isfile(FLAGS[name].value):
      raise ValueError("--%s=%s: no such file." % (name, FLAGS[name].value))
  if FLAGS.init_checkpoint and not os.path.exists(
      FLAGS.init_checkpoint + ".index"):
    raise ValueError("--init_checkpoint=%s: no checkpoint (%s.index is "
                     "missing); pass the prefix, e.g. ckpt/bert_model.ckpt."
                     % (FLAGS.init_checkpoint, FLAGS.init_checkpoint))
  if FLAGS.init_checkpoint and not FLAGS.bert_config_file:
    raise ValueError("--init_checkpoint needs --bert_config_file (and "
                     "--vocab_file) of the same model.")
  if FLAGS.bert_config_file and not FLAGS.vocab_file:
    raise ValueError("--bert_config_file needs --vocab_file of the same model.")
  if FLAGS.max_seq_length < 3:
    raise ValueError("--max_seq_length=%d is too small: it needs room for "
                     "[CLS], one piece and [SEP] (at least 3)."
                     % FLAGS.max_seq_length)
  if FLAGS.bert_config_file:
    with open(FLAGS.bert_config_file, encoding="utf-8") as reader:
      max_positions = json.load(reader)["max_position_embeddings"]
    if FLAGS.max_seq_length > max_positions:
      raise ValueError(
          "Cannot use sequence length %d because the BERT model was only "
          "trained up to sequence length %d (--bert_config_file=%s)."
          % (FLAGS.max_seq_length, max_positions, FLAGS.bert_config_file))
  if not 1 <= FLAGS.doc_stride <= FLAGS.max_seq_length - 2:
    raise ValueError("--doc_stride=%d must be in [1, max_seq_length - 2 = %d]."
                     % (FLAGS.doc_stride, FLAGS.max_seq_length - 2))
  if (FLAGS.gradient_accumulation_steps < 1 or FLAGS.train_batch_size
      % FLAGS.gradient_accumulation_steps):
    raise ValueError(
        "--gradient_accumulation_steps=%d must be >= 1 and divide "
        "--train_batch_size=%d." % (FLAGS.gradient_accumulation_steps,
                                    FLAGS.train_batch_size))
  if FLAGS.num_gpus < 0 or (FLAGS.num_gpus > 1 and FLAGS.train_batch_size
                            % (FLAGS.num_gpus
                               * FLAGS.gradient_accumulation_steps)):
    raise ValueError(
        "--num_gpus=%d: --train_batch_size=%d must split evenly over the GPUs "
        "(and --gradient_accumulation_steps)." % (FLAGS.num_gpus,
                                                  FLAGS.train_batch_size))
  if FLAGS.num_gpus > 1 and FLAGS.gradient_accumulation_steps > 1:
    raise ValueError("--gradient_accumulation_steps cannot be combined with "
                     "--num_gpus; raise the per-GPU batch or add GPUs.")
  if FLAGS.use_tpu:
    if not FLAGS.tpu_name:
      raise ValueError("--use_tpu needs --tpu_name.")
    if FLAGS.num_gpus > 1 or FLAGS.use_amp or FLAGS.gradient_accumulation_steps > 1:
      raise ValueError("--use_tpu cannot be combined with --num_gpus, "
                       "--use_amp or --gradient_accumulation_steps.")
    for name in ("train_batch_size", "eval_batch_size", "predict_batch_size"):
      if FLAGS[name].value % FLAGS.num_tpu_cores:
        raise ValueError("--%s=%d must be a multiple of --num_tpu_cores=%d."
                         % (name, FLAGS[name].value, FLAGS.num_tpu_cores))
  if FLAGS.eval_every_steps < 0:
    raise ValueError("--eval_every_steps=%d must be >= 0."
                     % FLAGS.eval_every_steps)
  if FLAGS.crf_constrain_bio and FLAGS.head == "softmax":
    raise ValueError("--crf_constrain_bio needs --head=crf or bilstm_crf.")
  for name in ("train_batch_size", "eval_batch_size", "predict_batch_size",
               "save_checkpoints_steps", "keep_checkpoint_max", "lstm_units",
               "lstm_layers"):
    if FLAGS[name].value < 1:
      raise ValueError("--%s=%d must be at least 1." % (name, FLAGS[name].value))
  if FLAGS.num_train_steps is not None and FLAGS.num_train_steps < 1:
    raise ValueError("--num_train_steps=%d must be at least 1."
                     % FLAGS.num_train_steps)
  if FLAGS.learning_rate <= 0 or FLAGS.num_train_epochs <= 0:
    raise ValueError("--learning_rate and --num_train_epochs must be > 0.")
  if FLAGS.bucket_boundaries:
    try:
      boundaries = [int(value) for value in FLAGS.bucket_boundaries]
    except ValueError:
      raise ValueError("--bucket_boundaries=%s must be comma-separated "
                       "integers, e.g. 16,32,64."
                       % ",".join(FLAGS.bucket_boundaries)) from None
    if boundaries != sorted(set(boundaries)) or boundaries[0] < 1:
      raise ValueError("--bucket_boundaries=%s must be strictly ascending "
                       "positive integers." % ",".join(FLAGS.bucket_boundaries))
  for name in ("warmup_proportion", "head_dropout"):
    if not 0 <= FLAGS[name].value < 1:
      raise ValueError("--%s=%s must be in [0, 1)." % (name, FLAGS[name].value))


def config_from_flags():
  """NerConfig from the parsed flags (embedded-default settings applied)."""
  # Fields without a flag (e.g. distribution_devices, for tests) keep their
  # defaults.
  values = {field.name: FLAGS[field.name].value
            for field in dataclasses.fields(train_lib.NerConfig)
            if field.name in FLAGS}
  if values["bucket_boundaries"]:
    values["bucket_boundaries"] = [int(v) for v in values["bucket_boundaries"]]
  config = train_lib.NerConfig(**values)
  if train_lib.uses_embedded_default(config):
    for name, value in train_lib.EMBEDDED_DEFAULT_SETTINGS.items():
      if not FLAGS[name].present:
        setattr(config, name, value)
  return config


def main(argv):
  del argv
  validate_flags_or_throw()
  config = config_from_flags()
  summary = train_lib.run(config)
  print(train_lib.format_summary(config, summary))


def run_main():
  """Entry point: report ValueErrors as one clear line and exit 1."""
  define_flags()
  try:
    app.run(main)
  except ValueError as error:
    logging.error("%s", error)
    print("error: %s" % error, file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  run_main()
