"""Lazy AdamW for embedding tables: update only the rows a batch looked up.

`--sparse_embedding_updates` (single device). MiniLM's word-piece table is
[30522, 384]: 11.7M of its 22.7M weights. Dense AdamW (bert's and Hugging
Face's) reads and writes the table, both Adam moments and a dense gradient at
every step, although a batch of 32 CoNLL sentences looks up a few hundred
rows; with bfloat16 products that made the update and clipping ~30% of a
short step's op time. Here the table's gradient stays a set of rows:

  `deduplicate`  one row per looked-up id, its gradients summed: the global
                 norm for clipping then equals the dense gradient's exactly.
  `apply_rows`   AdamW on those rows alone (TensorFlow's `LazyAdamOptimizer`
                 with bert's update: no bias correction, decoupled decay)::

    for each looked-up row r, g_r its summed and clipped gradient:
      m_r = beta_1 * m_r + (1 - beta_1) * g_r
      v_r = beta_2 * v_r + (1 - beta_2) * g_r^2
      w_r = w_r - lr * (m_r / (sqrt(v_r) + epsilon) + weight_decay_rate * w_r)

Rows a batch does not use keep w, m and v; dense AdamW would still move them
by lr * m / (sqrt(v) + epsilon) from their decaying momentum and decay them.
The variables and slots are those of the dense update, so checkpoints are
the same either way. Accuracy against dense updates: docs/speed.md.
"""

from typing import Dict

import tensorflow as tf


def deduplicate(grad: tf.IndexedSlices) -> tf.IndexedSlices:
  """One slice per distinct row, its values summed (first-seen order).

  Example: values [[1.], [2.], [4.]] at rows [1, 4, 1] ->
  values [[5.], [2.]] at rows [1, 4], dense shape unchanged.

  Args:
    grad: `IndexedSlices`, values [N, ...] at int indices [N] (repeats
      allowed), as `tf.gather`'s gradient.

  Returns:
    `IndexedSlices`, values [U, ...] at the U distinct indices.
  """
  rows, position = tf.unique(grad.indices)
  values = tf.math.unsorted_segment_sum(grad.values, position,
                                        tf.shape(rows)[0])
  return tf.IndexedSlices(values, rows, grad.dense_shape)


def apply_rows(var, m, v, values: tf.Tensor, rows: tf.Tensor,
               hyper: Dict[str, tf.Tensor], decay: bool) -> tf.Operation:
  """The lazy AdamW update of `rows` of resource variable `var`.

  Example (lr 0.1, beta_1 0.9, beta_2 0.999, epsilon 0, no decay; w, m, v
  zero [3, 1]): values [[2.]] at rows [1] -> m [[0], [0.2], [0]],
  v [[0], [0.004], [0]], w [[0], [-0.1 * 0.2 / sqrt(0.004)], [0]]
  (= -0.316); rows 0 and 2 untouched.

  Args:
    var, m, v: float32 resource variables [V, ...]: weights, Adam moments.
    values: float32 [U, ...], the (clipped) gradient of each row.
    rows: int [U], distinct row ids.
    hyper: float32 [] tensors "lr", "beta1", "beta2", "epsilon" and
      "decay_lr" (lr * weight_decay_rate).
    decay: apply the decoupled weight decay to these rows.

  Returns:
    The op writing the new rows of var, m and v.
  """
  def gather(variable):
    return tf.raw_ops.ResourceGather(resource=variable.handle, indices=rows,
                                     dtype=variable.dtype.base_dtype)

  weights, first, second = gather(var), gather(m), gather(v)
  one = tf.constant(1.0, values.dtype)
  new_m = hyper["beta1"] * first + (one - hyper["beta1"]) * values
  new_v = hyper["beta2"] * second + (one - hyper["beta2"]) * tf.square(values)
  new_w = weights - hyper["lr"] * new_m / (tf.sqrt(new_v) + hyper["epsilon"])
  if decay:
    new_w -= hyper["decay_lr"] * weights
  # Each write's value depends on its own variable's read, so a row is read
  # before it is written.
  return tf.group(*[
      tf.raw_ops.ResourceScatterUpdate(resource=variable.handle, indices=rows,
                                       updates=update)
      for variable, update in ((var, new_w), (m, new_m), (v, new_v))])
