r"""Converts a Hugging Face BERT directory into Google's BERT checkpoint layout.

Input (a local directory, as written by `transformers` or sentence-transformers):

  config.json              HF `BertConfig` (hidden_size, num_hidden_layers, ...).
  model.safetensors        weights (or sharded: model.safetensors.index.json);
                           pytorch_model.bin is read only when torch is installed.
  vocab.txt                word-piece vocabulary, one token per line.
  tokenizer_config.json    optional; its `do_lower_case` is reported.

Output (`output_dir`, local or gs://), what `bert.modeling` and the trainer read:

  bert_config.json         `modeling.BertConfig` fields.
  vocab.txt                copied unchanged.
  bert_model.ckpt.index    TF checkpoint holding float32 variables with
  bert_model.ckpt.data-*   the plain names `modeling.BertModel` creates.

Weight mapping, for a HF name with or without the leading ``bert.``::

  embeddings.word_embeddings.weight  [V, H]  -> bert/embeddings/word_embeddings  [V, H]
  embeddings.LayerNorm.weight|gamma  [H]     -> bert/embeddings/LayerNorm/gamma  [H]
  encoder.layer.0.attention.self.query.weight  [H_out, H_in]
                                     -> bert/encoder/layer_0/attention/self/query/kernel
                                        [H_in, H_out]  (transposed: torch Linear
                                        stores [out, in], tf.layers.dense [in, out])
  pooler.dense.bias                  [H]     -> bert/pooler/dense/bias  [H]

Heads (``cls.*``, ``classifier.*``, ``qa_outputs.*``, ...) and buffers
(``embeddings.position_ids``) are skipped and logged; any other unknown weight,
a missing weight or a shape that disagrees with config.json is a `ValueError`
naming it.

Usage:

  python -m trainer.convert_checkpoint \
    --hf_model_dir=/path/to/all-MiniLM-L6-v2 --output_dir=/tmp/minilm_tf
"""

import collections
import json
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from trainer import schema

tf1 = tf.compat.v1

# --- Input file names (Hugging Face layout) -----------------------------------
HF_CONFIG_FILENAME = "config.json"
SAFETENSORS_FILENAME = "model.safetensors"
SAFETENSORS_INDEX_FILENAME = "model.safetensors.index.json"
PYTORCH_FILENAME = "pytorch_model.bin"
TOKENIZER_CONFIG_FILENAME = "tokenizer_config.json"

# --- Output --------------------------------------------------------------------
# Checkpoint prefix of Google's released BERT models (bert_model.ckpt.index, ...).
CHECKPOINT_PREFIX = "bert_model.ckpt"

# HF `hidden_act` -> `bert.modeling.get_activation` name. bert.modeling's only
# GELU is the tanh approximation; HF "gelu" is the exact erf form, which differs
# from it by less than 1e-3 per activation, so both map to "gelu".
HF_TO_BERT_ACTIVATION = {
    "gelu": "gelu",
    "gelu_new": "gelu",
    "gelu_fast": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "relu": "relu",
    "tanh": "tanh",
    "linear": "linear",
}
# bert.modeling computes LayerNorm with this fixed epsilon.
BERT_LAYER_NORM_EPSILON = 1e-12

# `modeling.BertConfig` fields copied from config.json (hidden_act is mapped).
BERT_CONFIG_KEYS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "max_position_embeddings",
    "type_vocab_size", "initializer_range")

# HF name prefix of the encoder in task models (BertForTokenClassification, ...);
# sentence-transformers checkpoints have none.
HF_ENCODER_PREFIX = "bert."
# Task heads that sit next to the encoder; not part of `modeling.BertModel`.
HF_HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.", "lm_head.",
                    "score.")
# Non-trainable buffers saved by some `transformers` versions.
HF_BUFFER_NAMES = ("embeddings.position_ids", "embeddings.token_type_ids")
# dtypes converted to float32 (bfloat16 arrives as ml_dtypes.bfloat16).
FLOAT_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")


class WeightSpec(collections.namedtuple(
    "WeightSpec", ["tf_name", "shape", "hf_names", "transpose"])):
  """One variable of `modeling.BertModel` and where it comes from.

  Attributes:
    tf_name: checkpoint variable name, e.g. "bert/pooler/dense/kernel".
    shape: tuple, the TF variable's shape.
    hf_names: HF names (without "bert.") accepted for it, first is preferred.
    transpose: whether the HF array is the transpose of the TF variable.
  """


def bert_config_from_hf(hf_config):
  """Maps a HF BERT config.json dict to `modeling.BertConfig` fields.

  Args:
    hf_config: dict read from config.json.

  Returns:
    dict with exactly `BERT_CONFIG_KEYS`, e.g. ``{"hidden_act": "gelu",
    "hidden_size": 384, ...}`` for ``{"hidden_act": "gelu_new", ...}``.

  Raises:
    ValueError: a field is missing, or the model is not a plain BERT encoder
      (other `model_type`, relative position embeddings, an activation
      bert.modeling lacks).
  """
  model_type = hf_config.get("model_type", "bert")
  if model_type != "bert":
    raise ValueError(
        "config.json has model_type %r; only 'bert' checkpoints map onto "
        "bert.modeling.BertModel." % model_type)
  position_type = hf_config.get("position_embedding_type", "absolute")
  if position_type != "absolute":
    raise ValueError(
        "config.json has position_embedding_type %r; bert.modeling only has "
        "'absolute' position embeddings." % position_type)
  missing = [key for key in BERT_CONFIG_KEYS if key not in hf_config]
  if missing:
    raise ValueError("config.json lacks %s, needed for %s." %
                     (", ".join(missing), schema.BERT_CONFIG_FILENAME))
  bert_config = {key: hf_config[key] for key in BERT_CONFIG_KEYS}
  hf_act = hf_config["hidden_act"]
  if hf_act not in HF_TO_BERT_ACTIVATION:
    raise ValueError(
        "config.json has hidden_act %r, which bert.modeling does not support; "
        "allowed: %s." % (hf_act, ", ".join(sorted(HF_TO_BERT_ACTIVATION))))
  bert_config["hidden_act"] = HF_TO_BERT_ACTIVATION[hf_act]
  if hf_act == "gelu":
    logging.info("hidden_act 'gelu' (exact erf) becomes bert.modeling's tanh "
                 "GELU approximation; activations differ by < 1e-3.")
  eps = hf_config.get("layer_norm_eps", BERT_LAYER_NORM_EPSILON)
  if not np.isclose(eps, BERT_LAYER_NORM_EPSILON, rtol=0.0, atol=1e-13):
    logging.warning("config.json has layer_norm_eps %g but bert.modeling uses "
                    "%g; outputs will differ slightly.", eps,
                    BERT_LAYER_NORM_EPSILON)
  if bert_config["hidden_size"] % bert_config["num_attention_heads"]:
    raise ValueError(
        "config.json hidden_size %d is not a multiple of num_attention_heads "
        "%d." % (bert_config["hidden_size"],
                 bert_config["num_attention_heads"]))
  return bert_config


def expected_weights(bert_config):
  """Lists every variable `modeling.BertModel` creates for `bert_config`.

  Args:
    bert_config: dict from `bert_config_from_hf`.

  Returns:
    list of `WeightSpec`, embeddings first, then layers in order, then pooler.
  """
  hidden = bert_config["hidden_size"]
  intermediate = bert_config["intermediate_size"]
  specs = []

  def layer_norm(tf_scope, hf_scope):
    specs.append(WeightSpec(tf_scope + "/LayerNorm/gamma", (hidden,),
                            (hf_scope + ".LayerNorm.weight",
                             hf_scope + ".LayerNorm.gamma"), False))
    specs.append(WeightSpec(tf_scope + "/LayerNorm/beta", (hidden,),
                            (hf_scope + ".LayerNorm.bias",
                             hf_scope + ".LayerNorm.beta"), False))

  def dense(tf_scope, hf_scope, in_size, out_size):
    specs.append(WeightSpec(tf_scope + "/kernel", (in_size, out_size),
                            (hf_scope + ".weight",), True))
    specs.append(WeightSpec(tf_scope + "/bias", (out_size,),
                            (hf_scope + ".bias",), False))

  for table, rows in (("word_embeddings", bert_config["vocab_size"]),
                      ("token_type_embeddings", bert_config["type_vocab_size"]),
                      ("position_embeddings",
                       bert_config["max_position_embeddings"])):
    specs.append(WeightSpec("bert/embeddings/" + table, (rows, hidden),
                            ("embeddings.%s.weight" % table,), False))
  layer_norm("bert/embeddings", "embeddings")
  for index in range(bert_config["num_hidden_layers"]):
    tf_layer = "bert/encoder/layer_%d" % index
    hf_layer = "encoder.layer.%d" % index
    for part in ("query", "key", "value"):
      dense(tf_layer + "/attention/self/" + part,
            hf_layer + ".attention.self." + part, hidden, hidden)
    dense(tf_layer + "/attention/output/dense",
          hf_layer + ".attention.output.dense", hidden, hidden)
    layer_norm(tf_layer + "/attention/output", hf_layer + ".attention.output")
    dense(tf_layer + "/intermediate/dense", hf_layer + ".intermediate.dense",
          hidden, intermediate)
    dense(tf_layer + "/output/dense", hf_layer + ".output.dense",
          intermediate, hidden)
    layer_norm(tf_layer + "/output", hf_layer + ".output")
  dense("bert/pooler/dense", "pooler.dense", hidden, hidden)
  return specs


def find_hf_model_dir(path):
  """Finds the directory holding config.json.

  Args:
    path: a HF model directory, or a directory with exactly one such
      subdirectory (e.g. an installed package with its model in "model/").

  Returns:
    str, `path` or its single subdirectory that contains config.json.

  Raises:
    ValueError: `path` is not a directory, or has no or several candidates.
  """
  if not os.path.isdir(path):
    raise ValueError("--hf_model_dir %r is not a directory." % path)
  if os.path.isfile(os.path.join(path, HF_CONFIG_FILENAME)):
    return path
  candidates = sorted(
      os.path.join(path, name) for name in os.listdir(path)
      if os.path.isfile(os.path.join(path, name, HF_CONFIG_FILENAME)))
  if len(candidates) == 1:
    return candidates[0]
  if not candidates:
    raise ValueError(
        "--hf_model_dir %r has no %s, nor does any direct subdirectory; pass "
        "the directory that holds config.json, model.safetensors and "
        "vocab.txt." % (path, HF_CONFIG_FILENAME))
  raise ValueError("--hf_model_dir %r has several subdirectories with %s: %s; "
                   "pass one of them." %
                   (path, HF_CONFIG_FILENAME, ", ".join(candidates)))


def load_hf_weights(hf_model_dir):
  """Reads all tensors of a HF model directory as NumPy arrays.

  Prefers model.safetensors (or its sharded index); falls back to
  pytorch_model.bin only when torch is importable.

  Args:
    hf_model_dir: local directory.

  Returns:
    dict HF name -> np.ndarray in the stored dtype (bfloat16 as
    ml_dtypes.bfloat16).

  Raises:
    ValueError: no weight file, or only pytorch_model.bin without torch.
  """
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  safetensors_path = os.path.join(hf_model_dir, SAFETENSORS_FILENAME)
  index_path = os.path.join(hf_model_dir, SAFETENSORS_INDEX_FILENAME)
  pytorch_path = os.path.join(hf_model_dir, PYTORCH_FILENAME)
  if os.path.isfile(safetensors_path):
    return safetensors_numpy.load_file(safetensors_path)
  if os.path.isfile(index_path):
    with open(index_path) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    weights = {}
    for shard in shards:
      weights.update(
          safetensors_numpy.load_file(os.path.join(hf_model_dir, shard)))
    return weights
  if os.path.isfile(pytorch_path):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ValueError(
          "%s has %s but no %s, and torch is not installed. Install torch "
          "(pip install torch) to read it, or convert it to safetensors once "
          "with torch available (e.g. transformers' "
          "model.save_pretrained(dir, safe_serialization=True))." %
          (hf_model_dir, PYTORCH_FILENAME, SAFETENSORS_FILENAME)) from None
    state_dict = torch.load(pytorch_path, map_location="cpu",
                            weights_only=True)
    # bfloat16 tensors have no .numpy(); every float goes to float32 anyway.
    return {name: (tensor.to(torch.float32) if tensor.is_floating_point()
                   else tensor).numpy()
            for name, tensor in state_dict.items()}
  raise ValueError("%s has none of %s, %s, %s." %
                   (hf_model_dir, SAFETENSORS_FILENAME,
                    SAFETENSORS_INDEX_FILENAME, PYTORCH_FILENAME))


def read_do_lower_case(hf_model_dir):
  """Returns tokenizer_config.json's `do_lower_case`, or None if absent."""
  path = os.path.join(hf_model_dir, TOKENIZER_CONFIG_FILENAME)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    value = json.load(f).get("do_lower_case")
  return None if value is None else bool(value)


def map_weights(hf_weights, bert_config, allow_missing_pooler=False):
  """Renames, transposes and checks HF arrays against `expected_weights`.

  Args:
    hf_weights: dict HF name -> np.ndarray, from `load_hf_weights`.
    bert_config: dict from `bert_config_from_hf`.
    allow_missing_pooler: fill an absent pooler with zeros instead of failing.

  Returns:
    (tf_weights, report): `tf_weights` an OrderedDict TF name -> float32
    np.ndarray in `expected_weights` order; `report` a dict with
    "skipped_heads", "skipped_buffers" (sorted HF names) and
    "zero_filled" (TF names).

  Raises:
    ValueError: an unknown, duplicated, non-float, missing or misshapen weight;
      the message names it.
  """
  # Strip the optional encoder prefix; keep heads (which have no prefix) apart.
  by_name = {}
  skipped_heads, skipped_buffers = [], []
  for hf_name in sorted(hf_weights):
    if hf_name.startswith(HF_HEAD_PREFIXES):
      skipped_heads.append(hf_name)
      continue
    name = hf_name
    if name.startswith(HF_ENCODER_PREFIX):
      name = name[len(HF_ENCODER_PREFIX):]
    if name in HF_BUFFER_NAMES:
      skipped_buffers.append(hf_name)
      continue
    if name in by_name:
      raise ValueError("Weights %r and %r both map to %r; keep one." %
                       (by_name[name], hf_name, name))
    by_name[name] = hf_name

  tf_weights = collections.OrderedDict()
  zero_filled, missing = [], []
  for spec in expected_weights(bert_config):
    present = [name for name in spec.hf_names if name in by_name]
    if len(present) > 1:
      raise ValueError("Weights %s all map to %r; keep one." %
                       (", ".join(by_name[n] for n in present), spec.tf_name))
    if not present:
      if allow_missing_pooler and spec.tf_name.startswith("bert/pooler/"):
        tf_weights[spec.tf_name] = np.zeros(spec.shape, np.float32)
        zero_filled.append(spec.tf_name)
      else:
        missing.append("%s (for %s)" % (spec.hf_names[0], spec.tf_name))
      continue
    hf_name = by_name.pop(present[0])
    array = hf_weights[hf_name]
    if array.dtype.name not in FLOAT_DTYPE_NAMES:
      raise ValueError("Weight %r has dtype %s; expected one of %s." %
                       (hf_name, array.dtype.name, ", ".join(FLOAT_DTYPE_NAMES)))
    array = np.asarray(array, dtype=np.float32)
    if spec.transpose:
      array = array.T
    if array.shape != tuple(spec.shape):
      stored_shape = array.T.shape if spec.transpose else array.shape
      expected = spec.shape[::-1] if spec.transpose else spec.shape
      raise ValueError(
          "Weight %r has shape %s but config.json implies %s (for %s %s)." %
          (hf_name, list(stored_shape), list(expected), spec.tf_name,
           list(spec.shape)))
    tf_weights[spec.tf_name] = np.ascontiguousarray(array)
  if missing:
    hint = ""
    if any("pooler" in name for name in missing):
      hint = " Pass --allow_missing_pooler to fill the pooler with zeros."
    raise ValueError("Missing BERT weights: %s.%s" % (", ".join(missing), hint))
  if by_name:
    raise ValueError(
        "Unknown weights (not part of a %d-layer bert.modeling.BertModel nor a "
        "known head %s): %s." %
        (bert_config["num_hidden_layers"], "/".join(HF_HEAD_PREFIXES),
         ", ".join(sorted(by_name.values()))))
  report = {"skipped_heads": skipped_heads, "skipped_buffers": skipped_buffers,
            "zero_filled": zero_filled}
  return tf_weights, report


def write_checkpoint(tf_weights, checkpoint_prefix):
  """Saves arrays as TF variables with exactly the given names.

  Values are fed through placeholders rather than baked into the graph as
  constants, so models larger than the 2 GB GraphDef limit still convert.

  Args:
    tf_weights: dict TF name -> float32 np.ndarray.
    checkpoint_prefix: e.g. "gs://bucket/bert/bert_model.ckpt".

  Returns:
    str, the prefix the Saver wrote (`.index` and `.data-*` next to it).
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


def convert(hf_model_dir, output_dir, allow_missing_pooler=False):
  """Converts a HF BERT directory into bert_config.json, vocab.txt, checkpoint.

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
  hf_model_dir = find_hf_model_dir(hf_model_dir)
  with open(os.path.join(hf_model_dir, HF_CONFIG_FILENAME)) as f:
    bert_config = bert_config_from_hf(json.load(f))
  vocab_path = os.path.join(hf_model_dir, schema.VOCAB_FILENAME)
  if not os.path.isfile(vocab_path):
    raise ValueError("%s has no %s; BERT's tokenizer needs it." %
                     (hf_model_dir, schema.VOCAB_FILENAME))
  with open(vocab_path, encoding="utf-8") as f:
    vocab_lines = sum(1 for _ in f)
  if vocab_lines > bert_config["vocab_size"]:
    raise ValueError("%s has %d tokens but config.json vocab_size is %d; ids "
                     "past the embedding table would fail." %
                     (vocab_path, vocab_lines, bert_config["vocab_size"]))
  if vocab_lines < bert_config["vocab_size"]:
    logging.warning("%s has %d tokens, fewer than vocab_size %d; the extra "
                    "embedding rows are never used.", vocab_path, vocab_lines,
                    bert_config["vocab_size"])

  tf_weights, report = map_weights(load_hf_weights(hf_model_dir), bert_config,
                                   allow_missing_pooler)
  do_lower_case = read_do_lower_case(hf_model_dir)

  tf.io.gfile.makedirs(output_dir)
  with tf.io.gfile.GFile(
      os.path.join(output_dir, schema.BERT_CONFIG_FILENAME), "w") as f:
    f.write(json.dumps(bert_config, indent=2, sort_keys=True) + "\n")
  tf.io.gfile.copy(vocab_path, os.path.join(output_dir, schema.VOCAB_FILENAME),
                   overwrite=True)
  checkpoint = write_checkpoint(
      tf_weights, os.path.join(output_dir, CHECKPOINT_PREFIX))

  parameter_count = int(sum(value.size for value in tf_weights.values()))
  summary = dict(report)
  summary.update(hf_model_dir=hf_model_dir, bert_config=bert_config,
                 checkpoint=checkpoint, variables_written=len(tf_weights),
                 parameter_count=parameter_count, do_lower_case=do_lower_case)
  if report["skipped_buffers"]:
    logging.info("Skipped buffers: %s", ", ".join(report["skipped_buffers"]))
  if report["skipped_heads"]:
    logging.info("Skipped %d head weights: %s", len(report["skipped_heads"]),
                 ", ".join(report["skipped_heads"]))
  if report["zero_filled"]:
    logging.warning("Filled with zeros (absent from %s): %s", hf_model_dir,
                    ", ".join(report["zero_filled"]))
  logging.info("do_lower_case from %s: %s", TOKENIZER_CONFIG_FILENAME,
               "not given" if do_lower_case is None else do_lower_case)
  logging.info("Converted %s: wrote %d variables (%d parameters, %d layers, "
               "hidden %d) to %s, plus %s and %s.", hf_model_dir,
               len(tf_weights), parameter_count,
               bert_config["num_hidden_layers"], bert_config["hidden_size"],
               checkpoint, schema.BERT_CONFIG_FILENAME, schema.VOCAB_FILENAME)
  return summary


def define_flags():
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Unexpected arguments: %s" % " ".join(argv[1:]))
  summary = convert(flags.FLAGS.hf_model_dir, flags.FLAGS.output_dir,
                    allow_missing_pooler=flags.FLAGS.allow_missing_pooler)
  print(json.dumps({key: summary[key] for key in (
      "checkpoint", "variables_written", "parameter_count", "do_lower_case",
      "skipped_heads", "skipped_buffers", "zero_filled")}, indent=2))


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("hf_model_dir")
  flags.mark_flag_as_required("output_dir")
  app.run(main)
