"""The optimizer and the train op: schedule, gradients, accumulation, clipping.

`create_train_op` builds the BERT fine-tuning update from named pieces, each
tested on its own:

  `learning_rate_schedule`  linear warmup from 0, then linear decay to 0.
  `replica_weighted_loss`   re-weights a replica's (or TPU core's) loss so the
                            summed gradient is the whole batch's gradient.
  `compute_gradients`       gradients of exactly the trained variables,
                            unscaled under dynamic loss scaling (AMP).
  `accumulate_gradients`    sums K micro-batch gradients, token-weighted.
  `clip_gradients`          clipping by global norm (1.0, as BERT).
  `create_optimizer`        BERT's AdamW settings (TPU: summed across cores).
  `apply_and_step`          the AdamW update and the global-step increment.

`AdamWeightDecayOptimizer` is bert's AdamW through the base class.
`bert.optimization.AdamWeightDecayOptimizer` overrides `apply_gradients` and
creates its slots there, so it bypasses the base class's cross-replica
gradient aggregation (wrong under MirroredStrategy) and cannot run inside a
`tf.cond` (needed to skip steps with non-finite gradients under mixed
precision). This optimizer computes the same update but goes through the
base class: slots come from `_create_slots` and the update from
`_resource_apply_dense`, so the base class handles aggregation.

Update for each variable (bert's)::

    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g^2
    update = m / (sqrt(v) + epsilon) + weight_decay_rate * w   (decay unless
                                                   excluded, e.g. LayerNorm)
    w = w - learning_rate * update

(no bias correction, as in BERT's pre-training). bert spends ~30 ops per
variable on it; here each variable gets one fused kernel, after a decay
that reads and writes `w` once (the assignment adopts the product; a
`ResourceApplyGradientDescent(w, delta=w)` would first copy `w`, which its
`delta` aliases)::

    w = w * (1 - lr * weight_decay_rate)
    ResourceApplyAdam(w, m, v, beta1_power=0, beta2_power=0, lr, ...)

With both powers 0 Adam's step size ``lr * sqrt(1 - beta2_power) /
(1 - beta1_power)`` is ``lr``, and its update ``m / (sqrt(v) + epsilon)``
does not read `w`, so decaying first with the old `w` and then stepping is
bert's update, to float32 rounding: ApplyAdam weighs g^2 by 1 - beta_2
computed in float32 (0.00099998713, bert 0.001), so `v` differs by 1.3e-5
relative and a step by under 1e-5; weights agree to 2e-7 at lr 5e-5.
"""

import re
from typing import Optional

import tensorflow as tf

from trainer.model import sparse_rows
# Re-exported: loss scaling and accumulation are part of the train op's
# interface.
from trainer.model.step_state import Accumulation  # noqa: F401
from trainer.model.step_state import DynamicLossScale  # noqa: F401
from trainer.model.step_state import accumulate_gradients  # noqa: F401
from trainer.model.step_state import all_finite  # noqa: F401

tf1 = tf.compat.v1

# Standard BERT fine-tuning settings (google-research/bert create_optimizer).
WEIGHT_DECAY_RATE = 0.01
ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-6
CLIP_NORM = 1.0
EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")


class AdamWeightDecayOptimizer(tf1.train.Optimizer):
  """Adam with decoupled weight decay, bert's update in fused kernels."""

  def __init__(self, learning_rate, weight_decay_rate=0.0, beta_1=0.9,
               beta_2=0.999, epsilon=1e-6, exclude_from_weight_decay=None,
               lazy_rows: Optional[sparse_rows.Schedule] = None,
               name="AdamWeightDecayOptimizer"):
    """Args as `bert.optimization.AdamWeightDecayOptimizer`.

    Args:
      learning_rate: float or float32 scalar tensor.
      weight_decay_rate: float, decoupled L2 decay.
      beta_1, beta_2, epsilon: Adam constants.
      exclude_from_weight_decay: list of regexes; variables whose name
        matches one get no decay (BERT: "LayerNorm", "layer_norm", "bias").
      lazy_rows: a `sparse_rows.Schedule`: `IndexedSlices` of distinct rows
        (`sparse_rows.deduplicate`) update only those rows, which replay
        the steps they sat out when next used and at the schedule's last
        step; None densifies them, as bert does.
      name: op name prefix.
    """
    super().__init__(use_locking=False, name=name)
    self.learning_rate = learning_rate
    self.weight_decay_rate = weight_decay_rate
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.exclude_from_weight_decay = list(exclude_from_weight_decay or [])
    self.lazy_rows = lazy_rows
    self._hyper, self._row_tables = {}, set()

  def apply_gradients(self, grads_and_vars, global_step=None, name=None):
    pairs = list(grads_and_vars)  # tables with row gradients get a slot more
    self._row_tables = {v.op.name for g, v in pairs
                        if self.lazy_rows and isinstance(g, tf.IndexedSlices)}
    return super().apply_gradients(pairs, global_step, name)

  def _create_slots(self, var_list):
    # Slot variables are named "<var>/adam_m" and "<var>/adam_v" as in bert.
    for var in var_list:
      self._zeros_slot(var, "m", "adam_m")
      self._zeros_slot(var, "v", "adam_v")
      if var.op.name in self._row_tables:  # float32 [V], see sparse_rows
        self._get_or_make_slot_with_initializer(
            var, tf1.zeros_initializer(), var.shape[:1], tf.float32,
            "caught_up_to", "caught_up_to")

  def _prepare(self):
    # Scalars shared by every variable's kernels, built once per apply
    # (in the cross-replica context under a distribution strategy).
    learning_rate = tf.convert_to_tensor(self.learning_rate, tf.float32,
                                         name="learning_rate")
    decay_lr = learning_rate * self.weight_decay_rate
    self._hyper = {
        "lr": learning_rate, "decay_lr": decay_lr, "decay_factor": 1 - decay_lr,
        "beta1": tf.convert_to_tensor(self.beta_1, tf.float32, name="beta1"),
        "beta2": tf.convert_to_tensor(self.beta_2, tf.float32, name="beta2"),
        "epsilon": tf.convert_to_tensor(self.epsilon, tf.float32,
                                        name="epsilon"),
        # No bias correction: Adam's step size lr * sqrt(1 - 0) / (1 - 0).
        "power": tf.constant(0.0, tf.float32, name="no_bias_correction"),
    }
    if self.lazy_rows:  # the step being applied, for row catch-up
      self._hyper["now"] = tf.cast(tf1.train.get_or_create_global_step(),
                                   tf.float32)

  def _do_use_weight_decay(self, name):
    if not self.weight_decay_rate:
      return False
    return not any(re.search(pattern, name)
                   for pattern in self.exclude_from_weight_decay)

  def _hyper_as(self, var):  # `_prepare`'s scalars in `var`'s dtype
    return {key: tf.cast(value, var.dtype.base_dtype)
            for key, value in self._hyper.items()}

  def _fused_update(self, grad, var, resource: bool):
    """Decay (unless excluded), then Adam: one product and one kernel."""
    hyper, dependencies = self._hyper_as(var), []
    if self._do_use_weight_decay(var.op.name):
      # w = w_old * (1 - lr * wd): a fresh product the assignment adopts,
      # so `w` is read once and written once, never copied. After the
      # gradient, so the forward pass has read the undecayed `w`.
      with tf.control_dependencies([grad]):
        decayed = var.value() * hyper["decay_factor"]
      dependencies.append(var.assign(decayed, read_value=False) if resource
                          else tf1.assign(var, decayed).op)
    m, v = self.get_slot(var, "m"), self.get_slot(var, "v")
    scalars = dict(beta1_power=hyper["power"], beta2_power=hyper["power"],
                   lr=hyper["lr"], beta1=hyper["beta1"], beta2=hyper["beta2"],
                   epsilon=hyper["epsilon"], use_locking=self._use_locking,
                   grad=tf.cast(grad, var.dtype.base_dtype))
    with tf.control_dependencies(dependencies):
      if resource:
        return tf.raw_ops.ResourceApplyAdam(var=var.handle, m=m.handle,
                                            v=v.handle, **scalars)
      # Reference variables (tf.compat.v1 without resource variables).
      return tf.raw_ops.ApplyAdam(var=var, m=m, v=v, **scalars).op

  def _resource_apply_dense(self, grad, handle):
    return self._fused_update(grad, handle, resource=True)

  def _apply_dense(self, grad, var):
    return self._fused_update(grad, var, resource=False)

  def _resource_apply_sparse_duplicate_indices(self, grad, handle, indices):
    # Lazy rows come deduplicated (`compute_gradients`): no second pass.
    if self.lazy_rows:
      return self._resource_apply_sparse(grad, handle, indices)
    return super()._resource_apply_sparse_duplicate_indices(grad, handle,
                                                            indices)

  def _resource_apply_sparse(self, grad, handle, indices):
    if self.lazy_rows:  # distinct rows; bert densifies them
      return sparse_rows.update_rows(
          handle, self.get_slot(handle, "m"), self.get_slot(handle, "v"),
          self.get_slot(handle, "caught_up_to"), grad, indices,
          self._hyper_as(handle), self._do_use_weight_decay(handle.op.name),
          self.lazy_rows)
    dense = tf.math.unsorted_segment_sum(grad, indices,
                                         tf.shape(handle)[0])
    return self._resource_apply_dense(dense, handle)

  def _apply_sparse(self, grad, var):
    return self._apply_dense(tf.convert_to_tensor(grad), var)


def learning_rate_schedule(init_lr: float, num_train_steps: int,
                           num_warmup_steps: int,
                           global_step: tf.Tensor) -> tf.Tensor:
  """float32 []: linear warmup from 0, then linear decay to 0 (as BERT).

  Example (init_lr 1.0, 10 steps, 2 warmup steps), learning rate at steps
  0, 1, 2, 5, 10, 12 -> 0.0, 0.5, 0.8, 0.5, 0.0, 0.0. The decay runs over all
  `num_train_steps` from step 0, so at the end of warmup it has already
  decayed to 1 - warmup / steps.

  Args:
    init_lr: peak learning rate.
    num_train_steps: steps to decay to 0 over.
    num_warmup_steps: steps of linear warmup from 0 (0: none).
    global_step: int64 [] step variable.
  """
  learning_rate = tf1.train.polynomial_decay(
      tf.constant(init_lr, tf.float32), global_step, num_train_steps,
      end_learning_rate=0.0, power=1.0, cycle=False)
  if num_warmup_steps:
    step = tf.cast(global_step, tf.float32)
    warmup = tf.constant(float(num_warmup_steps))
    is_warmup = tf.cast(step < warmup, tf.float32)
    learning_rate = ((1.0 - is_warmup) * learning_rate
                     + is_warmup * init_lr * step / warmup)
  return learning_rate


def replica_weighted_loss(loss: tf.Tensor, loss_weight: Optional[tf.Tensor],
                          replica_context, cross_shard_sum: bool = False,
                          num_shards: int = 1) -> tf.Tensor:
  """Scales a replica's loss so SUMmed replica gradients are the batch's.

  Under a distribution strategy the optimizer sums replica gradients. Each
  replica's loss is a mean over its own labelled tokens; it is re-weighted
  by its share of the global batch's tokens, so the summed gradient is the
  single-device gradient of the whole batch. On a TPU (`cross_shard_sum`)
  each core's loss is divided by the number of cores instead.

  Example: two replicas with 30 and 10 labelled tokens -> their losses are
  multiplied by 30 / 40 and 10 / 40.

  Args:
    loss: float32 [], the replica's mean loss.
    loss_weight: float32 [], what `loss` is a mean over (labelled tokens);
      None counts every replica as 1.
    replica_context: `tf.distribute.get_replica_context()`.
    cross_shard_sum: TPU `CrossShardOptimizer` sums over `num_shards`.
    num_shards: TPU cores.

  Returns:
    float32 [], the loss to differentiate.
  """
  if replica_context.num_replicas_in_sync > 1:
    local = (tf.constant(1.0) if loss_weight is None
             else tf.cast(loss_weight, tf.float32))
    total = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, local)
    loss = loss * local / tf.maximum(total, 1e-9)
  if cross_shard_sum and num_shards > 1:
    loss = loss / num_shards
  return loss


def _scale_gradient(grad, factor):
  if isinstance(grad, tf.IndexedSlices):
    return tf.IndexedSlices(grad.values * factor, grad.indices,
                            grad.dense_shape)
  return grad * factor


def compute_gradients(loss: tf.Tensor, variables: list,
                      loss_scale: Optional[DynamicLossScale] = None,
                      sparse: bool = False) -> list:
  """[(gradient, variable)] for each variable that gets a gradient.

  Only `variables` are differentiated, so a frozen encoder costs no backward
  pass. With `loss_scale` the scaled loss is differentiated and gradients
  are divided by the scale again (float16 training).

  Dense gradients: the global norm for clipping must count an embedding row
  that occurs twice in a batch once with its summed gradient (the norm of
  `IndexedSlices` values would count the duplicates separately), and the
  optimizer's update touches every row anyway. With `sparse` a gathered
  table's gradient stays `IndexedSlices`, one slice per distinct row
  (`sparse_rows.deduplicate`: the same global norm), for lazy row updates.

  Example: loss = sum(3 * w) + 0 * other, variables [w, unused] -> [(3s, w)]
  (`unused` gets no gradient and is left out), with or without a loss scale.
  """
  if loss_scale is not None:
    grads = tf.gradients(loss * loss_scale.scale, variables)
    grads = [None if g is None else _scale_gradient(g, 1.0 / loss_scale.scale)
             for g in grads]
  else:
    grads = tf.gradients(loss, variables)
  return [(sparse_rows.deduplicate(g)
           if sparse and isinstance(g, tf.IndexedSlices)
           else tf.convert_to_tensor(g), v)
          for g, v in zip(grads, variables) if g is not None]


def clip_gradients(grads: list, clip_norm: float = CLIP_NORM,
                   replicas: int = 1) -> list:
  """Clips by global norm, then divides by the number of replicas.

  Under a strategy `grads` are already all-reduced (every replica holds the
  same global sum), so this clips the *global* gradient as one device would;
  the optimizer sums replica gradients again, hence the division. Within
  `clip_norm` the gradients pass unmultiplied (`tf.cond` saves a pass);
  above it or not finite, `tf.clip_by_global_norm` scales them (inf: NaN).

  Example: [[3., 0.], [4.]] (norm 5), clip_norm 1 -> [[0.6, 0.], [0.8]];
  with replicas = 2 -> [[0.3, 0.], [0.4]]; [[0.3, 0.4]] -> unchanged.
  """
  norm = tf.linalg.global_norm(grads)
  clipped = tf.cond(norm <= clip_norm, lambda: list(grads), lambda: (
      tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)[0]))
  if replicas > 1:
    clipped = [g / replicas for g in clipped]
  return clipped


def create_optimizer(learning_rate: tf.Tensor, cross_shard_sum: bool = False,
                     lazy_rows: Optional[sparse_rows.Schedule] = None
                     ) -> tf1.train.Optimizer:
  """BERT's AdamW (decay 0.01, not on LayerNorm and biases).

  With `cross_shard_sum` it is wrapped as google-research/bert does on TPU:
  clip per core, sum across cores. `lazy_rows`: see the optimizer.
  """
  optimizer = AdamWeightDecayOptimizer(
      learning_rate=learning_rate, weight_decay_rate=WEIGHT_DECAY_RATE,
      beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2, epsilon=ADAM_EPSILON,
      exclude_from_weight_decay=list(EXCLUDE_FROM_WEIGHT_DECAY),
      lazy_rows=lazy_rows)
  if cross_shard_sum:
    optimizer = tf1.tpu.CrossShardOptimizer(
        optimizer, reduction=tf1.losses.Reduction.SUM)
  return optimizer


def apply_and_step(optimizer: tf1.train.Optimizer, pairs: list,
                   global_step: tf.Variable,
                   accumulation: Optional[Accumulation] = None,
                   loss_scale: Optional[DynamicLossScale] = None,
                   finite: Optional[tf.Tensor] = None,
                   skip_with_cond: bool = True) -> tf.Operation:
  """The train op: apply `pairs`, advance the global step.

  With `accumulation` the update runs only when `accumulation.ready` (then
  zeroing the totals), and the micro step advances on every call. With
  `loss_scale`, a step whose gradients are not all `finite` is skipped
  (`skip_with_cond`; under a strategy the caller zeroes them instead, since
  `apply_gradients` cannot run in a `tf.cond` branch there) and the scale is
  updated. The global step advances on skipped steps too, keeping the
  schedule.

  Example: 2 calls with accumulation K = 2 -> global step 1, micro step 2.
  """

  def update_and_step():
    if loss_scale is not None and skip_with_cond:
      updates = [tf.cond(finite, lambda: optimizer.apply_gradients(pairs),
                         tf.no_op), loss_scale.update(finite)]
    elif loss_scale is not None:
      updates = [optimizer.apply_gradients(pairs), loss_scale.update(finite)]
    else:
      updates = [optimizer.apply_gradients(pairs)]
    with tf.control_dependencies(updates):
      step_ops = [global_step.assign_add(1)]
      if accumulation is not None:
        step_ops += [total.assign(tf.zeros_like(total))
                     for total in accumulation.totals]
      return tf.group(*step_ops)

  if accumulation is None:
    return update_and_step()
  train_op = tf.cond(accumulation.ready, update_and_step, tf.no_op)
  with tf.control_dependencies([train_op]):
    return accumulation.micro_step.assign_add(1)


def create_train_op(loss, variables, init_lr, num_train_steps,
                    num_warmup_steps, use_amp=False, accumulation_steps=1,
                    loss_weight=None, cross_shard_sum=False, num_shards=1,
                    sparse_embedding_updates=False):
  """AdamW with linear warmup and decay, over exactly `variables`.

  bert's `create_optimizer` schedule, update and clipping, built from the
  pieces above; unlike bert only `variables` are differentiated, so a frozen
  encoder costs no backward pass and gets no optimizer slots.

  Args:
    loss: float32 [] scalar.
    variables: list of `tf.Variable` to train.
    init_lr: float, peak learning rate.
    num_train_steps: int, steps to decay to 0 over.
    num_warmup_steps: int, steps of linear warmup from 0.
    use_amp: dynamic loss scaling for float16 (steps with non-finite
      gradients are skipped and the scale halved).
    accumulation_steps: K > 1 accumulates the gradients of K micro-batches
      and applies their mean once (global step = updates).
    loss_weight: float32 [], what `loss` is a mean over (labelled tokens);
      with accumulation, micro-batch gradients are weighted by it, so the
      update equals the one of the whole batch exactly.
    cross_shard_sum: TPU: sum gradients over `num_shards` cores
      (`CrossShardOptimizer`); each core's loss is scaled by 1 / num_shards.
    num_shards: TPU cores.
    sparse_embedding_updates: lazy AdamW on the rows of gathered tables
      that a batch uses (`trainer.model.sparse_rows`); one device, no
      accumulation.

  Returns:
    (train_op, learning_rate tensor).

  Raises:
    ValueError: for accumulation under a distribution strategy, or sparse
      embedding updates with accumulation, replicas or TPU cores.
  """
  global_step = tf1.train.get_or_create_global_step()
  learning_rate = learning_rate_schedule(init_lr, num_train_steps,
                                         num_warmup_steps, global_step)
  replica_context = tf.distribute.get_replica_context()
  replicas = replica_context.num_replicas_in_sync
  if replicas > 1 and accumulation_steps > 1:
    raise ValueError("Gradient accumulation is not supported together with "
                     "a distribution strategy; use a larger per-replica "
                     "batch or more replicas instead.")
  if sparse_embedding_updates and (accumulation_steps > 1 or replicas > 1
                                   or cross_shard_sum):
    raise ValueError("Sparse embedding updates run on one device without "
                     "gradient accumulation.")
  loss = replica_weighted_loss(loss, loss_weight, replica_context,
                               cross_shard_sum, num_shards)
  loss_scale = DynamicLossScale() if use_amp else None
  pairs = compute_gradients(loss, variables, loss_scale,
                            sparse=sparse_embedding_updates)
  accumulation = None
  if accumulation_steps > 1:
    accumulation = accumulate_gradients(pairs, accumulation_steps, loss_weight)
    pairs = accumulation.pairs
  grads, trained = [g for g, _ in pairs], [v for _, v in pairs]
  if replicas > 1:
    # Every replica then holds the same global sum (see `clip_gradients`).
    grads = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
  finite = all_finite(grads) if use_amp else None
  grads = clip_gradients(grads, CLIP_NORM, replicas)
  learning_rate_used = learning_rate
  if use_amp and replicas > 1:
    # apply_gradients all-reduces through merge_call, which cannot run in a
    # tf.cond branch: a non-finite step instead gets zero gradients and a
    # zero learning rate (Adam moments decay once; weights do not move).
    grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
    learning_rate_used = learning_rate * tf.cast(finite, tf.float32)
  lazy_rows = sparse_rows.Schedule(learning_rate_schedule(
      init_lr, num_train_steps, num_warmup_steps, tf.range(
          num_train_steps + 1, dtype=tf.int64)), WEIGHT_DECAY_RATE) if (
              sparse_embedding_updates) else None
  optimizer = create_optimizer(learning_rate_used, cross_shard_sum, lazy_rows)
  train_op = apply_and_step(optimizer, list(zip(grads, trained)), global_step,
                            accumulation, loss_scale, finite,
                            skip_with_cond=replicas == 1)
  if use_amp:
    tf1.summary.scalar("loss_scale", loss_scale.scale)
  return train_op, learning_rate
