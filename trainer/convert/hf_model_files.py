"""Reading a Hugging Face BERT directory: where it is, its config, its arrays.

A HF directory, as `transformers` or sentence-transformers write it:

  config.json              HF `BertConfig` (hidden_size, num_hidden_layers, ...).
  model.safetensors        weights (or sharded: model.safetensors.index.json);
                           pytorch_model.bin is read only when torch is installed.
  vocab.txt                word-piece vocabulary, one token per line.
  tokenizer_config.json    optional; its `do_lower_case` is reported.

No TensorFlow here: arrays come back as NumPy.
"""

import json
import os
from typing import Optional

import numpy as np

HF_CONFIG_FILENAME = "config.json"
SAFETENSORS_FILENAME = "model.safetensors"
SAFETENSORS_INDEX_FILENAME = "model.safetensors.index.json"
PYTORCH_FILENAME = "pytorch_model.bin"
TOKENIZER_CONFIG_FILENAME = "tokenizer_config.json"


def find_hf_model_dir(path: str) -> str:
  """Finds the directory holding config.json.

  Args:
    path: a HF model directory, or a directory with exactly one such
      subdirectory (e.g. an installed package with its model in "model/").

  Returns:
    `path` or its single subdirectory that contains config.json.

  Raises:
    ValueError: `path` is not a directory, or has no or several candidates.
  """
  if not os.path.isdir(path):
    raise ValueError(f"--hf_model_dir {path!r} is not a directory.")
  if os.path.isfile(os.path.join(path, HF_CONFIG_FILENAME)):
    return path
  candidates = sorted(
      os.path.join(path, name) for name in os.listdir(path)
      if os.path.isfile(os.path.join(path, name, HF_CONFIG_FILENAME)))
  if len(candidates) == 1:
    return candidates[0]
  if not candidates:
    raise ValueError(
        f"--hf_model_dir {path!r} has no {HF_CONFIG_FILENAME}, nor does any "
        f"direct subdirectory; pass the directory that holds config.json, "
        f"model.safetensors and vocab.txt.")
  raise ValueError(f"--hf_model_dir {path!r} has several subdirectories with "
                   f"{HF_CONFIG_FILENAME}: {', '.join(candidates)}; pass one "
                   f"of them.")


def read_hf_config(hf_model_dir: str) -> dict:
  """Returns config.json of a HF model directory as a dict."""
  with open(os.path.join(hf_model_dir, HF_CONFIG_FILENAME)) as file:
    return json.load(file)


def _load_pytorch_bin(hf_model_dir: str) -> dict[str, np.ndarray]:
  """Reads pytorch_model.bin with torch, every float as float32."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError(
        f"{hf_model_dir} has {PYTORCH_FILENAME} but no {SAFETENSORS_FILENAME}, "
        f"and torch is not installed. Install torch (pip install torch) to "
        f"read it, or convert it to safetensors once with torch available "
        f"(e.g. transformers' model.save_pretrained(dir, "
        f"safe_serialization=True)).") from None
  state_dict = torch.load(os.path.join(hf_model_dir, PYTORCH_FILENAME),
                          map_location="cpu", weights_only=True)
  # bfloat16 tensors have no .numpy(); every float goes to float32 anyway.
  return {name: (tensor.to(torch.float32) if tensor.is_floating_point()
                 else tensor).numpy()
          for name, tensor in state_dict.items()}


def load_hf_weights(hf_model_dir: str) -> dict[str, np.ndarray]:
  """Reads all tensors of a HF model directory as NumPy arrays.

  Prefers model.safetensors (or its sharded index); falls back to
  pytorch_model.bin only when torch is importable.

  Args:
    hf_model_dir: local directory.

  Returns:
    HF name -> np.ndarray in the stored dtype (bfloat16 as
    ml_dtypes.bfloat16), e.g. "bert.pooler.dense.bias" -> float32 [H].

  Raises:
    ValueError: no weight file, or only pytorch_model.bin without torch.
  """
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  safetensors_path = os.path.join(hf_model_dir, SAFETENSORS_FILENAME)
  index_path = os.path.join(hf_model_dir, SAFETENSORS_INDEX_FILENAME)
  if os.path.isfile(safetensors_path):
    return safetensors_numpy.load_file(safetensors_path)
  if os.path.isfile(index_path):
    with open(index_path) as file:
      shards = sorted(set(json.load(file)["weight_map"].values()))
    weights = {}
    for shard in shards:
      weights.update(
          safetensors_numpy.load_file(os.path.join(hf_model_dir, shard)))
    return weights
  if os.path.isfile(os.path.join(hf_model_dir, PYTORCH_FILENAME)):
    return _load_pytorch_bin(hf_model_dir)
  raise ValueError(f"{hf_model_dir} has none of {SAFETENSORS_FILENAME}, "
                   f"{SAFETENSORS_INDEX_FILENAME}, {PYTORCH_FILENAME}.")


def read_do_lower_case(hf_model_dir: str) -> Optional[bool]:
  """Returns tokenizer_config.json's `do_lower_case`, or None if absent."""
  path = os.path.join(hf_model_dir, TOKENIZER_CONFIG_FILENAME)
  if not os.path.isfile(path):
    return None
  with open(path) as file:
    value = json.load(file).get("do_lower_case")
  return None if value is None else bool(value)
