"""AdamW with weight decay that works under `tf.distribute` strategies.

`bert.optimization.AdamWeightDecayOptimizer` overrides `apply_gradients` and
creates its slots there, so it bypasses the base class's cross-replica
gradient aggregation (wrong under MirroredStrategy) and cannot run inside a
`tf.cond` (needed to skip steps with non-finite gradients under mixed
precision). This optimizer computes exactly the same update but goes through
the base class: slots come from `_create_slots` and the update from
`_resource_apply_dense`, so the base class handles aggregation.

Update for each variable (identical to bert's)::

    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g^2
    update = m / (sqrt(v) + epsilon) + weight_decay_rate * w   (decay unless
                                                   excluded, e.g. LayerNorm)
    w = w - learning_rate * update

(no bias correction, as in BERT's pre-training).
"""

import re

import tensorflow as tf

tf1 = tf.compat.v1


class AdamWeightDecayOptimizer(tf1.train.Optimizer):
  """Adam with decoupled weight decay, numerically equal to bert's."""

  def __init__(self, learning_rate, weight_decay_rate=0.0, beta_1=0.9,
               beta_2=0.999, epsilon=1e-6, exclude_from_weight_decay=None,
               name="AdamWeightDecayOptimizer"):
    """Args as `bert.optimization.AdamWeightDecayOptimizer`.

    Args:
      learning_rate: float or float32 scalar tensor.
      weight_decay_rate: float, decoupled L2 decay.
      beta_1, beta_2, epsilon: Adam constants.
      exclude_from_weight_decay: list of regexes; variables whose name
        matches one get no decay (BERT: "LayerNorm", "layer_norm", "bias").
      name: op name prefix.
    """
    super().__init__(use_locking=False, name=name)
    self.learning_rate = learning_rate
    self.weight_decay_rate = weight_decay_rate
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.exclude_from_weight_decay = list(exclude_from_weight_decay or [])

  def _create_slots(self, var_list):
    # Slot variables are named "<var>/adam_m" and "<var>/adam_v" as in bert.
    for var in var_list:
      self._zeros_slot(var, "m", "adam_m")
      self._zeros_slot(var, "v", "adam_v")

  def _do_use_weight_decay(self, name):
    if not self.weight_decay_rate:
      return False
    return not any(re.search(pattern, name)
                   for pattern in self.exclude_from_weight_decay)

  def _update(self, grad, var):
    m = self.get_slot(var, "m")
    v = self.get_slot(var, "v")
    grad = tf.cast(grad, var.dtype.base_dtype)
    next_m = self.beta_1 * m + (1.0 - self.beta_1) * grad
    next_v = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad)
    update = next_m / (tf.sqrt(next_v) + self.epsilon)
    if self._do_use_weight_decay(var.op.name):
      update += self.weight_decay_rate * var
    learning_rate = tf.cast(self.learning_rate, var.dtype.base_dtype)
    return tf.group(var.assign_sub(learning_rate * update),
                    m.assign(next_m), v.assign(next_v))

  def _resource_apply_dense(self, grad, handle):
    return self._update(grad, handle)

  def _apply_dense(self, grad, var):
    return self._update(grad, var)

  def _resource_apply_sparse(self, grad, handle, indices):
    # Embedding gradients arrive as slices; bert densifies them implicitly,
    # and decay/momentum touch every row anyway, so do the same.
    dense = tf.math.unsorted_segment_sum(grad, indices,
                                         tf.shape(handle)[0])
    return self._update(dense, handle)

  def _apply_sparse(self, grad, var):
    return self._update(tf.convert_to_tensor(grad), var)


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
