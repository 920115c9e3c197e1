r"""Maps a Hugging Face BERT config and weights onto `bert.modeling` names.

Weight mapping, for a HF name with or without the leading ``bert.``::

  embeddings.word_embeddings.weight  [V, H]  -> bert/embeddings/word_embeddings  [V, H]
  embeddings.LayerNorm.weight|gamma  [H]     -> bert/embeddings/LayerNorm/gamma  [H]
  encoder.layer.0.attention.self.query.weight  [H_out, H_in]
                                     -> bert/encoder/layer_0/attention/self/query/kernel
                                        [H_in, H_out]  (transposed: torch Linear
                                        stores [out, in], tf.layers.dense [in, out])
  pooler.dense.bias                  [H]     -> bert/pooler/dense/bias  [H]

Heads (``cls.*``, ``classifier.*``, ``qa_outputs.*``, ...) and buffers
(``embeddings.position_ids``) are skipped and reported; any other unknown
weight, a missing weight or a shape that disagrees with config.json is a
`ValueError` naming it.

No TensorFlow here: NumPy in, NumPy out.
"""

import collections
from typing import NamedTuple

from absl import logging
import numpy as np

from trainer import schema

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


class WeightSpec(NamedTuple):
  """One variable of `modeling.BertModel` and where it comes from.

  Attributes:
    tf_name: checkpoint variable name, e.g. "bert/pooler/dense/kernel".
    shape: the TF variable's shape.
    hf_names: HF names (without "bert.") accepted for it, first is preferred.
    transpose: whether the HF array is the transpose of the TF variable.
  """
  tf_name: str
  shape: tuple[int, ...]
  hf_names: tuple[str, ...]
  transpose: bool


def _check_supported(hf_config: dict) -> None:
  """Refuses configs that are not a plain absolute-position BERT encoder."""
  model_type = hf_config.get("model_type", "bert")
  if model_type != "bert":
    raise ValueError(
        f"config.json has model_type {model_type!r}; only 'bert' checkpoints "
        f"map onto bert.modeling.BertModel.")
  position_type = hf_config.get("position_embedding_type", "absolute")
  if position_type != "absolute":
    raise ValueError(
        f"config.json has position_embedding_type {position_type!r}; "
        f"bert.modeling only has 'absolute' position embeddings.")
  missing = [key for key in BERT_CONFIG_KEYS if key not in hf_config]
  if missing:
    raise ValueError(f"config.json lacks {', '.join(missing)}, needed for "
                     f"{schema.BERT_CONFIG_FILENAME}.")
  hf_act = hf_config["hidden_act"]
  if hf_act not in HF_TO_BERT_ACTIVATION:
    raise ValueError(
        f"config.json has hidden_act {hf_act!r}, which bert.modeling does not "
        f"support; allowed: {', '.join(sorted(HF_TO_BERT_ACTIVATION))}.")
  if hf_config["hidden_size"] % hf_config["num_attention_heads"]:
    raise ValueError(
        f"config.json hidden_size {hf_config['hidden_size']} is not a "
        f"multiple of num_attention_heads "
        f"{hf_config['num_attention_heads']}.")


def bert_config_from_hf(hf_config: dict) -> dict:
  """Maps a HF BERT config.json dict to `modeling.BertConfig` fields.

  Example: {"hidden_act": "gelu_new", "hidden_size": 384, ...}
      -> {"hidden_act": "gelu", "hidden_size": 384, ...} (exactly
         `BERT_CONFIG_KEYS`).

  Raises:
    ValueError: a field is missing, or the model is not a plain BERT encoder
      (other `model_type`, relative position embeddings, an activation
      bert.modeling lacks).
  """
  _check_supported(hf_config)
  bert_config = {key: hf_config[key] for key in BERT_CONFIG_KEYS}
  hf_act = hf_config["hidden_act"]
  bert_config["hidden_act"] = HF_TO_BERT_ACTIVATION[hf_act]
  if hf_act == "gelu":
    logging.info("hidden_act 'gelu' (exact erf) becomes bert.modeling's tanh "
                 "GELU approximation; activations differ by < 1e-3.")
  epsilon = hf_config.get("layer_norm_eps", BERT_LAYER_NORM_EPSILON)
  if not np.isclose(epsilon, BERT_LAYER_NORM_EPSILON, rtol=0.0, atol=1e-13):
    logging.warning("config.json has layer_norm_eps %g but bert.modeling uses "
                    "%g; outputs will differ slightly.", epsilon,
                    BERT_LAYER_NORM_EPSILON)
  return bert_config


def expected_weights(bert_config: dict) -> list[WeightSpec]:
  """Lists every variable `modeling.BertModel` creates for `bert_config`.

  Returns:
    `WeightSpec`s, embeddings first, then layers in order, then pooler; e.g.
    for 2 layers 5 + 16 * 2 + 2 = 39 of them.
  """
  hidden = bert_config["hidden_size"]
  intermediate = bert_config["intermediate_size"]
  specs = []

  def layer_norm(tf_scope, hf_scope):
    specs.append(WeightSpec(f"{tf_scope}/LayerNorm/gamma", (hidden,),
                            (f"{hf_scope}.LayerNorm.weight",
                             f"{hf_scope}.LayerNorm.gamma"), False))
    specs.append(WeightSpec(f"{tf_scope}/LayerNorm/beta", (hidden,),
                            (f"{hf_scope}.LayerNorm.bias",
                             f"{hf_scope}.LayerNorm.beta"), False))

  def dense(tf_scope, hf_scope, in_size, out_size):
    specs.append(WeightSpec(f"{tf_scope}/kernel", (in_size, out_size),
                            (f"{hf_scope}.weight",), True))
    specs.append(WeightSpec(f"{tf_scope}/bias", (out_size,),
                            (f"{hf_scope}.bias",), False))

  for table, rows in (("word_embeddings", bert_config["vocab_size"]),
                      ("token_type_embeddings", bert_config["type_vocab_size"]),
                      ("position_embeddings",
                       bert_config["max_position_embeddings"])):
    specs.append(WeightSpec(f"bert/embeddings/{table}", (rows, hidden),
                            (f"embeddings.{table}.weight",), False))
  layer_norm("bert/embeddings", "embeddings")
  for index in range(bert_config["num_hidden_layers"]):
    tf_layer, hf_layer = f"bert/encoder/layer_{index}", f"encoder.layer.{index}"
    for part in ("query", "key", "value"):
      dense(f"{tf_layer}/attention/self/{part}",
            f"{hf_layer}.attention.self.{part}", hidden, hidden)
    dense(f"{tf_layer}/attention/output/dense",
          f"{hf_layer}.attention.output.dense", hidden, hidden)
    layer_norm(f"{tf_layer}/attention/output", f"{hf_layer}.attention.output")
    dense(f"{tf_layer}/intermediate/dense", f"{hf_layer}.intermediate.dense",
          hidden, intermediate)
    dense(f"{tf_layer}/output/dense", f"{hf_layer}.output.dense",
          intermediate, hidden)
    layer_norm(f"{tf_layer}/output", f"{hf_layer}.output")
  dense("bert/pooler/dense", "pooler.dense", hidden, hidden)
  return specs


def index_encoder_names(hf_names) -> tuple[dict[str, str], list[str],
                                           list[str]]:
  """Strips the optional "bert." prefix and sets heads and buffers apart.

  Example: ["bert.pooler.dense.bias", "cls.predictions.bias",
            "bert.embeddings.position_ids"]
      -> ({"pooler.dense.bias": "bert.pooler.dense.bias"},
          ["cls.predictions.bias"], ["bert.embeddings.position_ids"])

  Returns:
    (encoder name -> HF name, skipped head names, skipped buffer names), the
    lists sorted.

  Raises:
    ValueError: if two HF names give the same encoder name.
  """
  by_name, heads, buffers = {}, [], []
  for hf_name in sorted(hf_names):
    if hf_name.startswith(HF_HEAD_PREFIXES):
      heads.append(hf_name)
      continue
    name = hf_name
    if name.startswith(HF_ENCODER_PREFIX):
      name = name[len(HF_ENCODER_PREFIX):]
    if name in HF_BUFFER_NAMES:
      buffers.append(hf_name)
      continue
    if name in by_name:
      raise ValueError(f"Weights {by_name[name]!r} and {hf_name!r} both map "
                       f"to {name!r}; keep one.")
    by_name[name] = hf_name
  return by_name, heads, buffers


def to_tf_array(hf_name: str, array: np.ndarray,
                spec: WeightSpec) -> np.ndarray:
  """Checks one HF array against `spec`; returns it float32, transposed.

  Example: "...query.weight" float16 [H_out, H_in] with spec.transpose
      -> float32 [H_in, H_out], C-contiguous.

  Raises:
    ValueError: for a non-float dtype or a shape config.json does not imply.
  """
  if array.dtype.name not in FLOAT_DTYPE_NAMES:
    raise ValueError(f"Weight {hf_name!r} has dtype {array.dtype.name}; "
                     f"expected one of {', '.join(FLOAT_DTYPE_NAMES)}.")
  array = np.asarray(array, dtype=np.float32)
  if spec.transpose:
    array = array.T
  if array.shape != tuple(spec.shape):
    stored_shape = array.T.shape if spec.transpose else array.shape
    expected = spec.shape[::-1] if spec.transpose else spec.shape
    raise ValueError(
        f"Weight {hf_name!r} has shape {list(stored_shape)} but config.json "
        f"implies {list(expected)} (for {spec.tf_name} {list(spec.shape)}).")
  return np.ascontiguousarray(array)


def _check_nothing_left(missing: list[str], unused: dict[str, str],
                        bert_config: dict) -> None:
  """Raises for BERT weights not found or HF weights not used."""
  if missing:
    hint = ""
    if any("pooler" in name for name in missing):
      hint = " Pass --allow_missing_pooler to fill the pooler with zeros."
    raise ValueError(f"Missing BERT weights: {', '.join(missing)}.{hint}")
  if unused:
    raise ValueError(
        f"Unknown weights (not part of a {bert_config['num_hidden_layers']}-"
        f"layer bert.modeling.BertModel nor a known head "
        f"{'/'.join(HF_HEAD_PREFIXES)}): "
        f"{', '.join(sorted(unused.values()))}.")


def map_weights(hf_weights: dict[str, np.ndarray], bert_config: dict,
                allow_missing_pooler: bool = False
               ) -> tuple["collections.OrderedDict[str, np.ndarray]", dict]:
  """Renames, transposes and checks HF arrays against `expected_weights`.

  Args:
    hf_weights: HF name -> np.ndarray, from `load_hf_weights`.
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
  by_name, skipped_heads, skipped_buffers = index_encoder_names(hf_weights)
  tf_weights = collections.OrderedDict()
  zero_filled, missing = [], []
  for spec in expected_weights(bert_config):
    present = [name for name in spec.hf_names if name in by_name]
    if len(present) > 1:
      raise ValueError(
          f"Weights {', '.join(by_name[name] for name in present)} all map "
          f"to {spec.tf_name!r}; keep one.")
    if present:
      hf_name = by_name.pop(present[0])
      tf_weights[spec.tf_name] = to_tf_array(hf_name, hf_weights[hf_name],
                                             spec)
    elif allow_missing_pooler and spec.tf_name.startswith("bert/pooler/"):
      tf_weights[spec.tf_name] = np.zeros(spec.shape, np.float32)
      zero_filled.append(spec.tf_name)
    else:
      missing.append(f"{spec.hf_names[0]} (for {spec.tf_name})")
  _check_nothing_left(missing, by_name, bert_config)
  report = {"skipped_heads": skipped_heads, "skipped_buffers": skipped_buffers,
            "zero_filled": zero_filled}
  return tf_weights, report
