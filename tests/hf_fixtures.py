"""Tiny Hugging Face-layout BERT directories and a NumPy reference forward pass.

`write_hf_model_dir` writes what `transformers` would save for a BertModel
(config.json, model.safetensors, vocab.txt, tokenizer_config.json) with random
weights, so conversion and loading can be tested in seconds without torch.
`numpy_bert_forward` runs BERT on HF-named weights with HF conventions
(Linear: ``y = x @ weight.T + bias``), independently of the converter and of
TensorFlow, using the same GELU approximation as `bert.modeling`.
"""

import json
import os

import numpy as np
from safetensors import numpy as safetensors_numpy

TINY_HF_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": 30,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 24,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 32,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
}

# 30 tokens: ids 0-4 are the specials BERT vocabularies start with.
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
              "the", "a", "of", "in", "to", "and", "is", "was", "for",
              "john", "smith", "paris", "london", "acme", "corp",
              "lives", "works", "at", "city", "##s", "##ing", "new", "york",
              ",", "."]

LAYER_NORM_EPSILON = 1e-12


def tiny_hf_weights(config=None, seed=0, prefix="bert.", with_pooler=True):
  """Random float32 weights named as a HF BertModel's state dict.

  Args:
    config: HF config dict; defaults to `TINY_HF_CONFIG`.
    seed: NumPy seed.
    prefix: "bert." as in BertFor* task models, "" as in sentence-transformers.
    with_pooler: whether to include pooler.dense.{weight,bias}.

  Returns:
    dict HF name -> float32 np.ndarray, Linear weights stored [out, in],
    e.g. "bert.encoder.layer.0.attention.self.query.weight" [16, 16].
  """
  config = config or TINY_HF_CONFIG
  rng = np.random.RandomState(seed)
  hidden = config["hidden_size"]
  intermediate = config["intermediate_size"]
  weights = {}

  def normal(shape, scale):
    return (scale * rng.randn(*shape)).astype(np.float32)

  def linear(name, in_size, out_size):
    weights[prefix + name + ".weight"] = normal((out_size, in_size), 0.3)
    weights[prefix + name + ".bias"] = normal((out_size,), 0.1)

  def layer_norm(name):
    weights[prefix + name + ".LayerNorm.weight"] = 1.0 + normal((hidden,), 0.1)
    weights[prefix + name + ".LayerNorm.bias"] = normal((hidden,), 0.1)

  weights[prefix + "embeddings.word_embeddings.weight"] = normal(
      (config["vocab_size"], hidden), 1.0)
  weights[prefix + "embeddings.position_embeddings.weight"] = normal(
      (config["max_position_embeddings"], hidden), 0.5)
  weights[prefix + "embeddings.token_type_embeddings.weight"] = normal(
      (config["type_vocab_size"], hidden), 0.5)
  weights[prefix + "embeddings.position_ids"] = np.arange(
      config["max_position_embeddings"], dtype=np.int64)[None, :]
  layer_norm("embeddings")
  for index in range(config["num_hidden_layers"]):
    layer = "encoder.layer.%d." % index
    for part in ("query", "key", "value"):
      linear(layer + "attention.self." + part, hidden, hidden)
    linear(layer + "attention.output.dense", hidden, hidden)
    layer_norm(layer + "attention.output")
    linear(layer + "intermediate.dense", hidden, intermediate)
    linear(layer + "output.dense", intermediate, hidden)
    layer_norm(layer + "output")
  if with_pooler:
    linear("pooler.dense", hidden, hidden)
  return weights


def write_hf_model_dir(directory, weights, config=None, vocab=None,
                       do_lower_case=True):
  """Writes a HF model directory.

  Args:
    directory: created if missing.
    weights: dict HF name -> np.ndarray, saved to model.safetensors.
    config: dict saved to config.json; defaults to `TINY_HF_CONFIG`.
    vocab: list of tokens for vocab.txt; defaults to `TINY_VOCAB`.
    do_lower_case: written to tokenizer_config.json; None writes no file.

  Returns:
    str, `directory`.
  """
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config or TINY_HF_CONFIG, f, indent=2)
  with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("".join(token + "\n" for token in (vocab or TINY_VOCAB)))
  if do_lower_case is not None:
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
      json.dump({"do_lower_case": do_lower_case,
                 "tokenizer_class": "BertTokenizer"}, f)
  safetensors_numpy.save_file(
      {name: np.ascontiguousarray(value) for name, value in weights.items()},
      os.path.join(directory, "model.safetensors"))
  return directory


def _gelu_tanh(x):
  # bert.modeling.gelu: the tanh approximation, not HF's exact erf GELU.
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) *
                                  (x + 0.044715 * np.power(x, 3))))


_ACTIVATIONS = {
    "gelu": _gelu_tanh, "gelu_new": _gelu_tanh,
    "relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh,
    "linear": lambda x: x,
}


def _layer_norm(x, gamma, beta):
  mean = x.mean(axis=-1, keepdims=True)
  variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
  return (x - mean) / np.sqrt(variance + LAYER_NORM_EPSILON) * gamma + beta


def numpy_bert_forward(weights, config, input_ids, input_mask, segment_ids):
  """BERT encoder forward pass in float64 NumPy over HF-named weights.

  Args:
    weights: dict HF name -> np.ndarray, with or without the "bert." prefix;
      LayerNorm as ".weight/.bias" or ".gamma/.beta".
    config: HF config dict.
    input_ids: int [batch, seq_len].
    input_mask: int [batch, seq_len], 1 real, 0 padding.
    segment_ids: int [batch, seq_len].

  Returns:
    (sequence_output float64 [batch, seq_len, hidden],
     pooled_output float64 [batch, hidden] or None without pooler weights).
  """
  w = {}
  for name, value in weights.items():
    name = name[len("bert."):] if name.startswith("bert.") else name
    name = name.replace("LayerNorm.gamma", "LayerNorm.weight")
    name = name.replace("LayerNorm.beta", "LayerNorm.bias")
    w[name] = np.asarray(value, dtype=np.float64)
  activation = _ACTIVATIONS[config["hidden_act"]]
  heads = config["num_attention_heads"]
  input_ids = np.asarray(input_ids)
  batch, seq_len = input_ids.shape
  hidden = config["hidden_size"]
  head_size = hidden // heads

  def linear(x, name):
    return x @ w[name + ".weight"].T + w[name + ".bias"]

  def layer_norm(x, name):
    return _layer_norm(x, w[name + ".LayerNorm.weight"],
                       w[name + ".LayerNorm.bias"])

  x = (w["embeddings.word_embeddings.weight"][input_ids] +
       w["embeddings.token_type_embeddings.weight"][np.asarray(segment_ids)] +
       w["embeddings.position_embeddings.weight"][np.arange(seq_len)][None])
  x = layer_norm(x, "embeddings")
  # [batch, 1, 1, seq_len]: 0 where attending is allowed, -10000 on padding.
  adder = -10000.0 * (1.0 - np.asarray(input_mask, np.float64))[:, None, None]

  def split_heads(t):
    return t.reshape(batch, seq_len, heads, head_size).transpose(0, 2, 1, 3)

  for index in range(config["num_hidden_layers"]):
    prefix = "encoder.layer.%d." % index
    query = split_heads(linear(x, prefix + "attention.self.query"))
    key = split_heads(linear(x, prefix + "attention.self.key"))
    value = split_heads(linear(x, prefix + "attention.self.value"))
    scores = query @ key.transpose(0, 1, 3, 2) / np.sqrt(head_size) + adder
    scores = scores - scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    context = (probs @ value).transpose(0, 2, 1, 3).reshape(
        batch, seq_len, hidden)
    attention = layer_norm(
        linear(context, prefix + "attention.output.dense") + x,
        prefix + "attention.output")
    intermediate = activation(linear(attention, prefix + "intermediate.dense"))
    x = layer_norm(linear(intermediate, prefix + "output.dense") + attention,
                   prefix + "output")
  pooled = None
  if "pooler.dense.weight" in w:
    pooled = np.tanh(linear(x[:, 0], "pooler.dense"))
  return x, pooled
