r"""Converts a Hugging Face BERT directory into Google's BERT checkpoint layout.

Input: a local HF directory (config.json, model.safetensors, vocab.txt; see
`hf_model_files`). The weight names and shapes are mapped by `hf_weights`.

Output (`output_dir`, local or gs://), what `bert.modeling` and the trainer read:

  bert_config.json         `modeling.BertConfig` fields.
  vocab.txt                copied unchanged.
  bert_model.ckpt.index    TF checkpoint holding float32 variables with
  bert_model.ckpt.data-*   the plain names `modeling.BertModel` creates.

Usage:

  python -m trainer.convert_checkpoint \
    --hf_model_dir=/path/to/all-MiniLM-L6-v2 --output_dir=/tmp/minilm_tf
"""

import json
import os
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from trainer.convert import hf_model_files
from trainer.convert import hf_weights
from trainer import schema
from trainer.convert.hf_model_files import TOKENIZER_CONFIG_FILENAME

tf1 = tf.compat.v1

# Checkpoint prefix of Google's released BERT models (bert_model.ckpt.index, ...).
CHECKPOINT_PREFIX = "bert_model.ckpt"

# The summary keys the command line prints.
PRINTED_SUMMARY_KEYS = ("checkpoint", "variables_written", "parameter_count",
                        "do_lower_case", "skipped_heads", "skipped_buffers",
                        "zero_filled")


def write_checkpoint(tf_weights: dict[str, np.ndarray],
                     checkpoint_prefix: str) -> str:
  """Saves arrays as TF variables with exactly the given names.

  Values are fed through placeholders rather than baked into the graph as
  constants, so models larger than the 2 GB GraphDef limit still convert.

  Args:
    tf_weights: TF name -> float32 np.ndarray.
    checkpoint_prefix: e.g. "gs://bucket/bert/bert_model.ckpt".

  Returns:
    The prefix the Saver wrote (`.index` and `.data-*` next to it).
  """
  with tf.Graph().as_default() as graph:
    variables = []
    for name, value in tf_weights.items():
      variables.append(tf1.get_variable(
          name, shape=value.shape, dtype=tf.float32,
          initializer=tf1.zeros_initializer(), trainable=False))
    value_feed = tf1.placeholder(tf.float32)
    saver = tf1.train.Saver(var_list=variables)
    with tf1.Session(graph=graph) as session:
      session.run(tf1.global_variables_initializer())
      for variable, value in zip(variables, tf_weights.values()):
        session.run(variable.assign(value_feed), {value_feed: value})
      # No meta graph (nothing reads it) and no "checkpoint" state file, so the
      # directory is not mistaken for a training model_dir to resume from.
      return saver.save(session, checkpoint_prefix, write_meta_graph=False,
                        write_state=False)


def check_vocab(hf_model_dir: str, vocab_size: int) -> str:
  """Returns the vocab.txt path after checking it fits the embedding table.

  Raises:
    ValueError: vocab.txt is missing or longer than `vocab_size`.
  """
  vocab_path = os.path.join(hf_model_dir, schema.VOCAB_FILENAME)
  if not os.path.isfile(vocab_path):
    raise ValueError(f"{hf_model_dir} has no {schema.VOCAB_FILENAME}; BERT's "
                     f"tokenizer needs it.")
  with open(vocab_path, encoding="utf-8") as file:
    vocab_lines = sum(1 for _ in file)
  if vocab_lines > vocab_size:
    raise ValueError(f"{vocab_path} has {vocab_lines} tokens but config.json "
                     f"vocab_size is {vocab_size}; ids past the embedding "
                     f"table would fail.")
  if vocab_lines < vocab_size:
    logging.warning("%s has %d tokens, fewer than vocab_size %d; the extra "
                    "embedding rows are never used.", vocab_path, vocab_lines,
                    vocab_size)
  return vocab_path


def _write_outputs(output_dir: str, bert_config: dict, vocab_path: str,
                   tf_weights: dict[str, np.ndarray]) -> str:
  """Writes bert_config.json, vocab.txt and the checkpoint; returns its prefix."""
  tf.io.gfile.makedirs(output_dir)
  with tf.io.gfile.GFile(
      os.path.join(output_dir, schema.BERT_CONFIG_FILENAME), "w") as file:
    file.write(json.dumps(bert_config, indent=2, sort_keys=True) + "\n")
  tf.io.gfile.copy(vocab_path, os.path.join(output_dir, schema.VOCAB_FILENAME),
                   overwrite=True)
  return write_checkpoint(tf_weights,
                          os.path.join(output_dir, CHECKPOINT_PREFIX))


def _log_summary(summary: dict) -> None:
  """Logs what `convert` skipped, filled and wrote."""
  if summary["skipped_buffers"]:
    logging.info("Skipped buffers: %s", ", ".join(summary["skipped_buffers"]))
  if summary["skipped_heads"]:
    logging.info("Skipped %d head weights: %s", len(summary["skipped_heads"]),
                 ", ".join(summary["skipped_heads"]))
  if summary["zero_filled"]:
    logging.warning("Filled with zeros (absent from %s): %s",
                    summary["hf_model_dir"], ", ".join(summary["zero_filled"]))
  do_lower_case = summary["do_lower_case"]
  logging.info("do_lower_case from %s: %s", TOKENIZER_CONFIG_FILENAME,
               "not given" if do_lower_case is None else do_lower_case)
  bert_config = summary["bert_config"]
  logging.info("Converted %s: wrote %d variables (%d parameters, %d layers, "
               "hidden %d) to %s, plus %s and %s.", summary["hf_model_dir"],
               summary["variables_written"], summary["parameter_count"],
               bert_config["num_hidden_layers"], bert_config["hidden_size"],
               summary["checkpoint"], schema.BERT_CONFIG_FILENAME,
               schema.VOCAB_FILENAME)


def convert(hf_model_dir: str, output_dir: str,
            allow_missing_pooler: bool = False) -> dict:
  """Converts a HF BERT directory into bert_config.json, vocab.txt, checkpoint.

  Everything is read and checked before anything is written, so a bad input
  leaves `output_dir` untouched.

  Args:
    hf_model_dir: local HF model directory, or its parent (`find_hf_model_dir`).
    output_dir: where to write; local or any `tf.io.gfile` path (gs://...).
      Created if needed; existing files of the same names are overwritten.
    allow_missing_pooler: fill an absent pooler with zeros instead of failing.

  Returns:
    dict summary: "hf_model_dir" (resolved), "bert_config" (dict written),
    "checkpoint" (prefix), "variables_written" (int), "parameter_count" (int),
    "skipped_heads", "skipped_buffers" (HF names), "zero_filled" (TF names),
    "do_lower_case" (bool, or None when tokenizer_config.json does not say).

  Raises:
    ValueError: unreadable input or weights that do not match config.json.
  """
  hf_model_dir = hf_model_files.find_hf_model_dir(hf_model_dir)
  bert_config = hf_weights.bert_config_from_hf(
      hf_model_files.read_hf_config(hf_model_dir))
  vocab_path = check_vocab(hf_model_dir, bert_config["vocab_size"])
  tf_weights, report = hf_weights.map_weights(
      hf_model_files.load_hf_weights(hf_model_dir), bert_config,
      allow_missing_pooler)
  do_lower_case: Optional[bool] = hf_model_files.read_do_lower_case(
      hf_model_dir)
  checkpoint = _write_outputs(output_dir, bert_config, vocab_path, tf_weights)
  summary = dict(report)
  summary.update(
      hf_model_dir=hf_model_dir, bert_config=bert_config,
      checkpoint=checkpoint, variables_written=len(tf_weights),
      parameter_count=int(sum(value.size for value in tf_weights.values())),
      do_lower_case=do_lower_case)
  _log_summary(summary)
  return summary


def define_flags() -> None:
  """Defines this tool's flags on absl's global FLAGS (call once, from main)."""
  # Required.
  flags.DEFINE_string(
      "hf_model_dir", None,
      "Local Hugging Face BERT directory (config.json, model.safetensors, "
      "vocab.txt), or a directory with exactly one such subdirectory.")
  flags.DEFINE_string(
      "output_dir", None,
      "Directory (local or gs://) to write bert_config.json, vocab.txt and "
      "bert_model.ckpt.* to; created if missing, same-named files replaced.")
  # Other.
  flags.DEFINE_bool(
      "allow_missing_pooler", False,
      "If the HF weights have no pooler (e.g. some sentence encoders), write "
      "a zero pooler instead of failing. NER never uses the pooled output.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  summary = convert(flags.FLAGS.hf_model_dir, flags.FLAGS.output_dir,
                    allow_missing_pooler=flags.FLAGS.allow_missing_pooler)
  print(json.dumps({key: summary[key] for key in PRINTED_SUMMARY_KEYS},
                   indent=2))


def run_command() -> None:
  """`python -m trainer.convert_checkpoint`: flags, then `main`."""
  define_flags()
  flags.mark_flag_as_required("hf_model_dir")
  flags.mark_flag_as_required("output_dir")
  app.run(main)
