"""Gradient accumulation: K micro-batches applied as one batch of K * B.

`accumulate_gradients` keeps a float32 total per trained variable and a
token count, so `create_train_op` (trainer.model.optimization) can apply the
token-weighted mean once every K micro-batches.
"""

from typing import NamedTuple, Optional

import tensorflow as tf

tf1 = tf.compat.v1


class Accumulation(NamedTuple):
  """What `accumulate_gradients` built.

  Attributes:
    pairs: [(float32 mean gradient so far, variable)]: the token-weighted
      mean of the accumulated micro-batch gradients.
    ready: bool [], True on every K-th micro-batch (time to update).
    micro_step: int64 variable counting micro-batches.
    totals: float32 accumulator variables to zero after each update.
  """
  pairs: list
  ready: tf.Tensor
  micro_step: tf.Variable
  totals: list


def accumulate_gradients(pairs: list, accumulation_steps: int,
                         loss_weight: Optional[tf.Tensor] = None
                         ) -> Accumulation:
  """Sums K micro-batch gradients, each weighted by its labelled tokens.

  K micro-batches of B examples then give the update of one batch of K * B
  exactly: the mean over all their tokens. The global step counts updates,
  so the learning-rate schedule is unchanged.

  Example (K = 2): gradients 1.0 over 3 tokens, then 5.0 over 1 token ->
  after the first micro-batch the mean is 1.0 and ready is False; after the
  second it is (3 * 1 + 1 * 5) / 4 = 2.0 and ready is True.

  Args:
    pairs: [(gradient, variable)] of one micro-batch.
    accumulation_steps: K > 1.
    loss_weight: float32 [] labelled tokens of the micro-batch (None: 1).

  Returns:
    `Accumulation`. Its tensors read the totals after this micro-batch's
    gradients are added.
  """
  micro_step = tf1.get_variable(
      "gradient_accumulation_micro_step", initializer=tf.constant(
          0, tf.int64), trainable=False)
  sums = [tf1.get_variable(
      v.op.name + "/gradient_accumulator", shape=v.shape, dtype=tf.float32,
      initializer=tf1.zeros_initializer(), trainable=False)
          for _, v in pairs]
  weight_sum = tf1.get_variable(
      "gradient_accumulation_weight", initializer=tf.constant(0.0),
      trainable=False)
  weight = tf.constant(1.0) if loss_weight is None else loss_weight
  accumulate = tf.group(
      weight_sum.assign_add(weight),
      *[total.assign_add(tf.convert_to_tensor(g) * weight)
        for total, (g, _) in zip(sums, pairs)])
  with tf.control_dependencies([accumulate]):
    ready = tf.equal((micro_step + 1) % accumulation_steps, 0)
    denominator = tf.maximum(weight_sum.read_value(), 1e-9)
    mean_pairs = [(total.read_value() / denominator, v)
                  for total, (_, v) in zip(sums, pairs)]
  return Accumulation(mean_pairs, ready, micro_step, sums + [weight_sum])
