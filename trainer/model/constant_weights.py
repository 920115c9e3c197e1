"""Evaluation and prediction graphs that read their weights as constants.

Under `--use_bf16` every encoder product casts its float32 weight to bfloat16
right before the MatMul (`trainer.model.precision`). In a training graph the
weights change every step, so that is the price of float32 master weights.
An evaluation or prediction graph of one checkpoint does not need variables
at all: built with the checkpoint's values as graph constants,

  * grappler's constant folding turns each `Cast(Const float32)` into a
    bfloat16 constant once, when the session first runs the graph, instead
    of casting all weights (10.6M values for MiniLM-L6) on every batch, and
  * oneDNN sees constant weights and prepares each one in its blocked
    (AMX) layout once instead of on every call.

The export's `--export_constant_weights` does the same for serving
(`trainer.export.saved_model_writer`); this module does it for `--do_eval`,
`--do_predict` and the evaluations during training. Measured on a 2-core
Xeon with AMX (bench/README.md): see `bench.vs_pytorch` rows "predict".

`weights_as_constants(checkpoint)` is a variable scope whose custom getter
answers every `tf.compat.v1.get_variable` of a float32 variable the
checkpoint holds with a constant of its value; anything else (the global
step, variables the checkpoint lacks) stays a variable. Names of the graph's
other ops are unchanged.

Example::

    with weights_as_constants("out/model.ckpt-1317") as replaced:
      built = heads.build_head(bert_config, labels, features)
    # replaced: ["bert/embeddings/word_embeddings", ...]; no trainable
    # variables in the graph.
"""

import contextlib
from typing import Iterator, Optional

from absl import logging
import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1

# Graphs hold at most this many bytes of constants (a GraphDef is a protocol
# buffer, limited to 2 GB): BERT-base (440 MB) fits, BERT-large does not.
MAX_CONSTANT_BYTES = 1 << 30


def checkpoint_bytes(checkpoint: str) -> int:
  """Bytes of the float32 values in `checkpoint` (optimizer slots included).

  Example: MiniLM-L6 fine-tuned with AdamW -> about 3 x 90 MB.
  """
  reader = tf.train.load_checkpoint(checkpoint)
  shapes = reader.get_variable_to_shape_map()
  dtypes = reader.get_variable_to_dtype_map()
  return sum(int(np.prod(shape)) * 4 for name, shape in shapes.items()
             if dtypes[name] == tf.float32)


def usable_checkpoint(model_dir: Optional[str],
                      max_bytes: int = MAX_CONSTANT_BYTES) -> Optional[str]:
  """The latest checkpoint of `model_dir` if its weights fit in a graph.

  Returns None (build with variables) without a checkpoint, or when the
  checkpoint's float32 values exceed `max_bytes` (a log line says so).
  """
  if not model_dir:
    return None
  checkpoint = tf.train.latest_checkpoint(model_dir)
  if checkpoint is None:
    return None
  size = checkpoint_bytes(checkpoint)
  if size > max_bytes:
    logging.info("Reading weights as variables: %s holds %.0f MB, more than "
                 "a graph's constants may take (%.0f MB).", checkpoint,
                 size / 1e6, max_bytes / 1e6)
    return None
  return checkpoint


@contextlib.contextmanager
def weights_as_constants(checkpoint: str) -> Iterator[list]:
  """A variable scope in which checkpointed float32 weights are constants.

  Args:
    checkpoint: a checkpoint prefix, e.g. "out/model.ckpt-1317".

  Yields:
    The list of variable names replaced so far (filled while building).
  """
  reader = tf.train.load_checkpoint(checkpoint)
  dtypes = reader.get_variable_to_dtype_map()
  replaced = []

  def constant_getter(getter, name, *args, **kwargs):
    # TensorFlow passes the next getter as the keyword argument `getter`.
    if dtypes.get(name) != tf.float32:
      return getter(name, *args, **kwargs)
    value = reader.get_tensor(name)
    shape = kwargs.get("shape")
    if shape is not None and list(value.shape) != list(
        tf.TensorShape(shape).as_list()):
      raise ValueError(
          f"{checkpoint} holds {name} with shape {list(value.shape)}, but the "
          f"model builds it with {list(tf.TensorShape(shape).as_list())}: "
          "the checkpoint is of another model (bert_config.json or head "
          "settings differ).")
    replaced.append(name)
    return tf.constant(value, dtype=tf.float32)

  with tf1.variable_scope(tf1.get_variable_scope(), custom_getter=constant_getter,
                          auxiliary_name_scope=False):
    yield replaced
