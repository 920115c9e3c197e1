"""What the train op keeps between steps besides the optimizer's slots.

`optimization.create_train_op` uses both:

  `DynamicLossScale`, `all_finite`   float16 training (`--use_amp`): the loss
      is scaled by `DynamicLossScale.scale`, a step whose gradients are not
      `all_finite` is skipped and the scale adjusted.
  `accumulate_gradients`   `--gradient_accumulation_steps`: float32 totals
      per trained variable and a token count, so the token-weighted mean of
      K micro-batches is applied once every K.
"""

from typing import NamedTuple, Optional

import tensorflow as tf

tf1 = tf.compat.v1


class DynamicLossScale:
  """Dynamic loss scaling for float16 training (graph mode).

  The loss is multiplied by `scale` before differentiation and gradients are
  divided by it afterwards. A step whose gradients are not all finite is
  skipped and the scale halved; after `growth_interval` good steps in a row
  it doubles.
  """

  def __init__(self, initial_scale=2.0 ** 15, growth_interval=2000):
    self.scale = tf1.get_variable(
        "loss_scale", initializer=tf.constant(initial_scale, tf.float32),
        trainable=False)
    self.good_steps = tf1.get_variable(
        "loss_scale_good_steps", initializer=tf.constant(0, tf.int64),
        trainable=False)
    self.growth_interval = growth_interval

  def update(self, grads_finite):
    """Op adjusting the scale after a step with (bool []) finite gradients."""
    grow = tf.logical_and(grads_finite,
                          self.good_steps + 1 >= self.growth_interval)
    new_scale = tf.where(grads_finite,
                         tf.where(grow, self.scale * 2.0, self.scale),
                         tf.maximum(self.scale / 2.0, 1.0))
    new_good = tf.where(tf.logical_and(grads_finite, tf.logical_not(grow)),
                        self.good_steps + 1, tf.zeros_like(self.good_steps))
    return tf.group(self.scale.assign(new_scale),
                    self.good_steps.assign(new_good))


def all_finite(grads):
  """bool []: every entry of every non-None gradient is finite."""
  checks = [tf.reduce_all(tf.math.is_finite(
      g.values if isinstance(g, tf.IndexedSlices) else g))
            for g in grads if g is not None]
  return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)


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
