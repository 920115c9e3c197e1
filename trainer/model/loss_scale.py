"""Dynamic loss scaling for float16 training (`--use_amp`), and its check.

`optimization.create_train_op` scales the loss by `DynamicLossScale.scale`,
skips a step whose gradients are not `all_finite` and adjusts the scale.
"""

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
