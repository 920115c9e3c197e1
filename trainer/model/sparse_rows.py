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

Rows a batch does not use keep w, m and v until they are next used; dense
AdamW would meanwhile have moved them by lr * m / (sqrt(v) + epsilon) from
their decaying momentum and decayed them, about ten times the row's last
step in all. `replay` applies those zero-gradient steps when the row comes
back (and `flush` to every row at the last training step), so the weights
follow dense AdamW:

  `replay`  the steps a row sat out, in closed form: after k of them
            m = beta_1^k m, v = beta_2^k v, and w moved by
            sum_j lr_j (beta_1 / sqrt(beta_2))^j m / (sqrt(v) + epsilon)
            (each step's own rate, `HORIZON` terms) and decayed by
            prod_j (1 - lr_j * weight_decay_rate) (exactly, in float64).
  `flush`   `replay` for the whole table, once, at the last step.

The one approximation is epsilon: a skipped step divides by
sqrt(beta_2^j v) + epsilon, `replay` by beta_2^(j/2) (sqrt(v) + epsilon),
which differ by under 2.6% for the terms that matter (j < 50) and only where
sqrt(v) is near epsilon. A slot "<table>/caught_up_to" (float32 [V]) holds
the first step each row has not had; the other variables and slots are
those of the dense update. Accuracy against dense updates: docs/speed.md.
"""

from typing import Dict, NamedTuple, Optional

import tensorflow as tf

# Skipped steps a replay sums: (beta_1 / sqrt(beta_2))^128 = 1.5e-6.
HORIZON = 128


class Schedule(NamedTuple):
  """What `replay` needs to know of the steps a row sat out.

  Attributes:
    learning_rates: float32 [S + 1], the rate of steps 0 .. S
      (S = num_train_steps; the last is 0).
    weight_decay_rate: float, AdamW's decoupled decay.
  """
  learning_rates: tf.Tensor
  weight_decay_rate: float


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


def replay(weights, first, second, caught_up_to, until,
           schedule: Schedule, hyper: Dict[str, tf.Tensor], decay: bool):
  """Rows after dense AdamW's zero-gradient steps caught_up_to .. until - 1.

  Example (lr 0.1 at every step, beta_1 0.9, beta_2 0.81 so that
  beta_1 / sqrt(beta_2) = 1, epsilon 0, no decay): w 0, m 1, v 1,
  caught_up_to 3, until 5 -> m 0.81, v 0.6561, w -0.2 (two steps of
  0.1 * 0.9^j / 0.9^j); caught_up_to 5 -> unchanged.

  Args:
    weights, first, second: float32 [U, D] rows of w, m, v.
    caught_up_to: float32 [U], the first step each row has not had.
    until: float32 [], the step to catch up to (exclusive).
    schedule: `Schedule`.
    hyper: float32 [] "beta1", "beta2", "epsilon".
    decay: whether these rows are decayed.

  Returns:
    (weights, first, second), float32 [U, D] each.
  """
  skipped = tf.maximum(until - caught_up_to, 0.0)                    # [U]
  j = tf.range(1, HORIZON + 1, dtype=tf.float32)                     # [H]
  last = tf.cast(tf.shape(schedule.learning_rates)[0] - 1, tf.float32)
  steps = tf.minimum(caught_up_to[:, None] + j - 1.0, last)          # [U, H]
  rates = tf.gather(schedule.learning_rates, tf.cast(steps, tf.int32))
  rates *= tf.cast(j <= skipped[:, None], tf.float32)
  ratio = hyper["beta1"] / tf.sqrt(hyper["beta2"])
  shape = [-1] + [1] * (first.shape.rank - 1)
  shrink = tf.ones_like(skipped)
  if decay and schedule.weight_decay_rate:
    # Each skipped step s decays w by 1 - lr_s * wd before its own move, so
    # w shrinks by the product over all of them and the move of step s by
    # the product over the later ones: differences of cumulative logs.
    logs = tf.math.log1p(-schedule.weight_decay_rate * tf.cast(
        schedule.learning_rates, tf.float64))
    cumulative = tf.concat([[0.0], tf.cumsum(logs)], 0)              # [S + 2]
    end = tf.minimum(tf.maximum(until, caught_up_to), last + 1)      # [U]

    def product(first_step, end):  # of 1 - lr_s * wd, first_step .. end - 1
      return tf.cast(tf.exp(
          tf.gather(cumulative, tf.cast(end, tf.int32))
          - tf.gather(cumulative, tf.cast(first_step, tf.int32))), tf.float32)

    shrink = product(tf.minimum(caught_up_to, last + 1), end)
    later = product(tf.minimum(steps + 1.0, end[:, None]), end[:, None])
    rates *= later
  momentum = tf.reduce_sum(rates * tf.pow(ratio, j), axis=1)         # [U]
  direction = first / (tf.sqrt(second) + hyper["epsilon"])
  new_w = (tf.reshape(shrink, shape) * weights
           - tf.reshape(momentum, shape) * direction)
  return (new_w, first * tf.reshape(tf.pow(hyper["beta1"], skipped), shape),
          second * tf.reshape(tf.pow(hyper["beta2"], skipped), shape))


def apply_rows(var, m, v, values: tf.Tensor, rows: tf.Tensor,
               hyper: Dict[str, tf.Tensor], decay: bool,
               caught_up_to=None, schedule: Optional[Schedule] = None
               ) -> tf.Operation:
  """The lazy AdamW update of `rows` of resource variable `var`.

  Example (lr 0.1, beta_1 0.9, beta_2 0.999, epsilon 0, no decay; w, m, v
  zero [3, 1]): values [[2.]] at rows [1] -> m [[0], [0.2], [0]],
  v [[0], [0.004], [0]], w [[0], [-0.1 * 0.2 / sqrt(0.004)], [0]]
  (= -0.316); rows 0 and 2 untouched.

  Args:
    var, m, v: float32 resource variables [V, ...]: weights, Adam moments.
    values: float32 [U, ...], the (clipped) gradient of each row.
    rows: int [U], distinct row ids.
    hyper: float32 [] tensors "lr", "beta1", "beta2", "epsilon",
      "decay_lr" (lr * weight_decay_rate) and, with `caught_up_to`, "now"
      (this step).
    decay: apply the decoupled weight decay to these rows.
    caught_up_to: float32 resource variable [V] (see the module): the rows
      first `replay` the steps they sat out, then record now + 1. None:
      plain lazy AdamW.
    schedule: `Schedule`, with `caught_up_to`.

  Returns:
    The op writing the new rows of var, m and v (and of `caught_up_to`).
  """
  def gather(variable):
    return tf.raw_ops.ResourceGather(resource=variable.handle, indices=rows,
                                     dtype=variable.dtype.base_dtype)

  weights, first, second = gather(var), gather(m), gather(v)
  updates = []
  if caught_up_to is not None:
    stamps = gather(caught_up_to)
    weights, first, second = replay(weights, first, second, stamps,
                                    hyper["now"], schedule, hyper, decay)
    with tf.control_dependencies([stamps]):  # read before it is written
      updates.append((caught_up_to,
                      tf.fill(tf.shape(rows), hyper["now"] + 1)))
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
      for variable, update in [(var, new_w), (m, new_m), (v, new_v)]
      + updates])


def flush(var, m, v, caught_up_to, until, schedule: Schedule,
          hyper: Dict[str, tf.Tensor], decay: bool) -> tf.Operation:
  """`replay` of every row of the table to `until` (the last step's end).

  Example: after the last step's `apply_rows` (until = that step + 1) rows
  it updated are current and unchanged; every other row gets the steps it
  sat out, so the table is what dense AdamW would have left.

  Args:
    as `apply_rows`; until: float32 [].

  Returns:
    The op assigning var, m, v and caught_up_to whole.
  """
  new = replay(var.value(), m.value(), v.value(), caught_up_to.value(),
               until, schedule, hyper, decay)
  assigned = [variable.assign(value, read_value=False)
              for variable, value in zip((var, m, v), new)]
  with tf.control_dependencies(assigned):
    return caught_up_to.assign(tf.fill(tf.shape(caught_up_to), until),
                               read_value=False)


def update_rows(var, m, v, caught_up_to, values: tf.Tensor, rows: tf.Tensor,
                hyper: Dict[str, tf.Tensor], decay: bool,
                schedule: Schedule) -> tf.Operation:
  """`apply_rows` with catch-up, then `flush` if this is the last step.

  The last step is S - 1 for S = num_train_steps (`schedule` has S + 1
  rates), after which the whole table is what dense AdamW would leave.

  Args:
    as `apply_rows`; caught_up_to and schedule are required.

  Returns:
    The update op.
  """
  update = apply_rows(var, m, v, values, rows, hyper, decay, caught_up_to,
                      schedule)
  last_step = tf.cast(tf.shape(schedule.learning_rates)[0] - 2, tf.float32)
  with tf.control_dependencies([update]):
    return tf.cond(
        tf.equal(hyper["now"], last_step),
        lambda: flush(var, m, v, caught_up_to, hyper["now"] + 1, schedule,
                      hyper, decay),
        tf.no_op)
