"""trainer.model.optimization: AdamW equals bert's; each piece of the train op.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf

from trainer.model import optimization
from trainer.tf_compat import optimization as bert_optimization

tf1 = tf.compat.v1


class _ElementwiseAdamW(optimization.AdamWeightDecayOptimizer):
  """The update before the fused kernels: ~15 element-wise ops a variable.

  Kept as the reference for the op count below.
  """

  def _resource_apply_dense(self, grad, handle):
    m, v = self.get_slot(handle, "m"), self.get_slot(handle, "v")
    next_m = self.beta_1 * m + (1.0 - self.beta_1) * grad
    next_v = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad)
    update = next_m / (tf.sqrt(next_v) + self.epsilon)
    if self._do_use_weight_decay(handle.op.name):
      update += self.weight_decay_rate * handle
    return tf.group(handle.assign_sub(self.learning_rate * update),
                    m.assign(next_m), v.assign(next_v))


_SHAPES = {"layer/kernel": [3, 2], "layer/LayerNorm/gamma": [2],
           "embeddings": [5, 2]}


def _run(optimizer_class, learning_rate, use_resource=True, steps=5):
  """Weights, steps (change / learning rate) and slots after each update.

  Gradients are random and do not depend on the weights, so a difference
  in one step is not amplified by the next. The embeddings get theirs as
  `IndexedSlices` with a repeated row (the sparse path).
  """
  rng = np.random.RandomState(0)
  with tf.Graph().as_default():
    variables = [tf1.get_variable(name, initializer=rng.randn(*shape).astype(
        np.float32), use_resource=use_resource)
                 for name, shape in _SHAPES.items()]
    dense = [tf1.placeholder(tf.float32, shape)
             for shape in list(_SHAPES.values())[:2]]
    rows = tf1.placeholder(tf.float32, [3, 2])
    sparse = tf.IndexedSlices(rows, tf.constant([1, 4, 1]), tf.constant([5, 2]))
    optimizer = optimizer_class(
        learning_rate=learning_rate, weight_decay_rate=0.01, beta_1=0.9,
        beta_2=0.999, epsilon=1e-6, exclude_from_weight_decay=["LayerNorm",
                                                              "bias"])
    train_op = optimizer.apply_gradients(zip(dense + [sparse], variables))
    # By name: bert's optimizer makes its own "<var>/adam_m" variables.
    slot_by_name = {slot.op.name: slot for slot in tf1.global_variables()}
    slots = [slot_by_name[f"{variable.op.name}/{name}"]
             for variable in variables for name in ("adam_m", "adam_v")]
    history = []
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      for _ in range(steps):
        before = session.run(variables)
        feed = {grad: rng.randn(*grad.shape.as_list()) for grad in dense}
        feed[rows] = rng.randn(3, 2)
        session.run(train_op, feed)
        after = session.run(variables)
        history.append({
            "weights": after,
            "steps": [(new.astype(np.float64) - old) / learning_rate
                      for new, old in zip(after, before)],
            "m": session.run(slots[0::2]), "v": session.run(slots[1::2])})
  return history


def _assert_history_close(ours, theirs, key, rtol, atol):
  for step_ours, step_theirs in zip(ours, theirs):
    for a, b in zip(step_ours[key], step_theirs[key]):
      np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize("use_resource", [True, False])
def test_fused_update_matches_bert_optimizer(use_resource):
  # Over 5 steps with decayed, excluded and sparse (repeated-row) variables.
  # First moments and every step's update agree to float32 rounding, except
  # that ApplyAdam weighs g^2 by 1 - 0.999 computed in float32
  # (0.00099998713, bert: 0.001): v differs by 1.3e-5 relative, hence the
  # step by up to 6.5e-6 (measured 8.8e-6 with the other rounding).
  ours = _run(optimization.AdamWeightDecayOptimizer, 0.1, use_resource)
  theirs = _run(bert_optimization.AdamWeightDecayOptimizer, 0.1)
  _assert_history_close(ours, theirs, "m", rtol=1e-6, atol=1e-7)
  _assert_history_close(ours, theirs, "v", rtol=2e-5, atol=1e-9)
  _assert_history_close(ours, theirs, "steps", rtol=1e-5, atol=1e-6)
  # The decay and the excluded variable: a wrong decay would move the step
  # by 0.01 * w (~1e-2), three orders above the tolerance.
  assert not np.allclose(ours[0]["weights"][0], ours[-1]["weights"][0])


def test_fused_weights_match_bert_at_fine_tuning_rate():
  # At BERT's fine-tuning learning rate the step differences above are far
  # below float32's resolution of the weights (measured 2e-7 relative).
  ours = _run(optimization.AdamWeightDecayOptimizer, 5e-5)
  theirs = _run(bert_optimization.AdamWeightDecayOptimizer, 5e-5)
  _assert_history_close(ours, theirs, "weights", rtol=1e-6, atol=1e-7)


def _optimizer_op_types(optimizer_class):
  """Op types of one update of 3 variables (2 decayed), slot creation aside."""
  with tf.Graph().as_default() as graph:
    variables = [tf1.get_variable(name, shape)
                 for name, shape in _SHAPES.items()]
    grads = [tf.ones(shape) for shape in _SHAPES.values()]
    existing = len(graph.get_operations())
    optimizer_class(
        learning_rate=0.1, weight_decay_rate=0.01,
        exclude_from_weight_decay=["LayerNorm"]).apply_gradients(
            zip(grads, variables))
    added = graph.get_operations()[existing:]
  return collections.Counter(op.type for op in added
                             if "/adam_m" not in op.name
                             and "/adam_v" not in op.name)


def test_fused_update_is_one_kernel_and_an_in_place_decay_per_variable():
  fused = _optimizer_op_types(optimization.AdamWeightDecayOptimizer)
  elementwise = _optimizer_op_types(_ElementwiseAdamW)
  # Per variable: ResourceApplyAdam; for the 2 decayed ones a read, a
  # multiply by 1 - lr * wd and its assignment (no copying
  # ResourceApplyGradientDescent); plus lr * wd and 1 - lr * wd (once) and
  # the final group.
  assert fused == {"ResourceApplyAdam": 3, "ReadVariableOp": 2, "Mul": 3,
                   "AssignVariableOp": 2, "Sub": 1, "NoOp": 1, "Const": 7}, fused
  # The element-wise form: 96 ops (27 of them constants), ~30 a variable.
  assert sum(elementwise.values()) == 96, elementwise


def test_decay_waits_for_the_gradient():
  # The decay rewrites w: it must not run before the forward pass has read
  # w, i.e. before the gradient (which needs that read) exists.
  with tf.Graph().as_default() as graph:
    var = tf1.get_variable("w", [2], use_resource=True)
    grad = tf.identity(tf.ones([2]), name="the_gradient")
    optimization.AdamWeightDecayOptimizer(
        learning_rate=0.1, weight_decay_rate=0.01).apply_gradients(
            [(grad, var)])
  decay = [op for op in graph.get_operations()
           if op.type == "AssignVariableOp" and "update_w" in op.name]
  assert len(decay) == 1
  seen, stack = set(), [decay[0]]
  while stack:
    op = stack.pop()
    if op.name not in seen:
      seen.add(op.name)
      stack += [t.op for t in op.inputs] + list(op.control_inputs)
  assert "the_gradient" in seen


def test_dynamic_loss_scale_halves_on_overflow_and_grows():
  with tf.Graph().as_default():
    scale = optimization.DynamicLossScale(initial_scale=8.0,
                                          growth_interval=2)
    finite = tf1.placeholder(tf.bool, [])
    update = scale.update(finite)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      values = []
      for step_finite in (False, True, True, True, False):
        session.run(update, {finite: step_finite})
        values.append(session.run(scale.scale))
  assert values == [4.0, 4.0, 8.0, 8.0, 4.0]


def test_all_finite():
  assert bool(optimization.all_finite([tf.constant([1.0, 2.0]), None]))
  assert not bool(optimization.all_finite([tf.constant([1.0, np.inf])]))


def _session_run(fetches, feeds_per_run=(None,)):
  """Initialises this graph's variables, runs `fetches` once per feed dict."""
  with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    return [session.run(fetches, feed) for feed in feeds_per_run]


def test_learning_rate_schedule_warmup_then_linear_decay():
  with tf.Graph().as_default():
    step = tf1.placeholder(tf.int64, [])
    rate = optimization.learning_rate_schedule(1.0, 10, 2, step)
    no_warmup = optimization.learning_rate_schedule(1.0, 10, 0, step)
    values = _session_run((rate, no_warmup),
                          [{step: s} for s in (0, 1, 2, 5, 10, 12)])
  np.testing.assert_allclose([v for v, _ in values],
                             [0.0, 0.5, 0.8, 0.5, 0.0, 0.0], atol=1e-7)
  np.testing.assert_allclose([v for _, v in values],
                             [1.0, 0.9, 0.8, 0.5, 0.0, 0.0], atol=1e-7)


class _FakeReplicaContext:
  """Two replicas whose labelled tokens sum to `total` (all_reduce)."""

  num_replicas_in_sync = 2

  def __init__(self, total):
    self.total = total
    self.reduced = []

  def all_reduce(self, reduce_op, value):
    assert reduce_op == tf.distribute.ReduceOp.SUM
    self.reduced.append(value)
    return tf.constant(self.total)


def test_replica_weighted_loss_weights_by_token_share():
  # A replica with 30 of the batch's 40 labelled tokens: loss * 30 / 40.
  context = _FakeReplicaContext(40.0)
  loss = optimization.replica_weighted_loss(
      tf.constant(2.0), tf.constant(30.0), context)
  assert float(loss) == 1.5
  assert [float(v) for v in context.reduced] == [30.0]
  # Without token counts each replica counts as 1 of `total`.
  loss = optimization.replica_weighted_loss(
      tf.constant(2.0), None, _FakeReplicaContext(2.0))
  assert float(loss) == 1.0


def test_replica_weighted_loss_single_device_and_tpu_shards():
  single = tf.distribute.get_replica_context()
  assert float(optimization.replica_weighted_loss(
      tf.constant(2.0), tf.constant(30.0), single)) == 2.0
  assert float(optimization.replica_weighted_loss(
      tf.constant(2.0), tf.constant(30.0), single, cross_shard_sum=True,
      num_shards=4)) == 0.5


def test_compute_gradients_dense_unscaled_and_only_used_variables():
  with tf.Graph().as_default():
    weights = tf1.get_variable("w", initializer=[1.0, 2.0])
    table = tf1.get_variable("table", initializer=[[1.0], [2.0], [3.0]])
    unused = tf1.get_variable("unused", initializer=5.0)
    # Row 1 is gathered twice: its dense gradient is the sum, 2.
    loss = (tf.reduce_sum(3.0 * weights)
            + tf.reduce_sum(tf.gather(table, [1, 1, 2])))
    plain = optimization.compute_gradients(loss, [weights, table, unused])
    scale = optimization.DynamicLossScale(initial_scale=1024.0)
    scaled = optimization.compute_gradients(loss, [weights, table, unused],
                                            loss_scale=scale)
    assert [v for _, v in plain] == [weights, table]
    assert not any(isinstance(g, tf.IndexedSlices) for g, _ in plain)
    (values, scaled_values), = _session_run(
        ([g for g, _ in plain], [g for g, _ in scaled]))
  for result in (values, scaled_values):
    assert result[0].tolist() == [3.0, 3.0]
    assert result[1].tolist() == [[0.0], [2.0], [1.0]]


def test_accumulate_gradients_token_weighted_mean():
  with tf.Graph().as_default():
    variable = tf1.get_variable("layer/kernel", initializer=[0.0])
    grad = tf1.placeholder(tf.float32, [1])
    tokens = tf1.placeholder(tf.float32, [])
    accumulation = optimization.accumulate_gradients(
        [(grad, variable)], accumulation_steps=2, loss_weight=tokens)
    (mean, _), = accumulation.pairs
    names = [v.op.name for v in accumulation.totals]
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      first = session.run((mean, accumulation.ready), {grad: [1.0], tokens: 3})
      session.run(accumulation.micro_step.assign_add(1))
      second = session.run((mean, accumulation.ready),
                           {grad: [5.0], tokens: 1})
      totals = session.run(accumulation.totals)
  assert names == ["layer/kernel/gradient_accumulator",
                   "gradient_accumulation_weight"]
  assert first[0].tolist() == [1.0] and not first[1]
  # (3 * 1 + 1 * 5) / 4: the mean over every token of both micro-batches.
  assert second[0].tolist() == [2.0] and second[1]
  assert totals[0].tolist() == [8.0] and totals[1] == 4.0


def test_clip_gradients_by_global_norm():
  grads = [tf.constant([3.0, 0.0]), tf.constant([4.0])]   # norm 5
  clipped = optimization.clip_gradients(grads, clip_norm=1.0)
  np.testing.assert_allclose(clipped[0], [0.6, 0.0], rtol=1e-6)
  np.testing.assert_allclose(clipped[1], [0.8], rtol=1e-6)
  halves = optimization.clip_gradients(grads, clip_norm=1.0, replicas=2)
  np.testing.assert_allclose(halves[0], [0.3, 0.0], rtol=1e-6)
  small = optimization.clip_gradients([tf.constant([0.3, 0.4])], clip_norm=1.0)
  np.testing.assert_allclose(small[0], [0.3, 0.4], rtol=1e-6)


def test_clip_gradients_in_a_graph_multiplies_only_above_the_norm():
  # One graph, both branches of the cond, a sparse (IndexedSlices) gradient
  # among them: within the norm the values pass exactly and no multiply
  # runs; above it both are scaled; an infinite norm gives NaN, as
  # tf.clip_by_global_norm does.
  with tf.Graph().as_default() as graph:
    scale = tf1.placeholder(tf.float32, [])
    dense = tf.constant([0.3, 0.4]) * scale
    rows = tf.IndexedSlices(tf.constant([[0.0, 0.0]]) + scale * 0.0,
                            tf.constant([1]), tf.constant([3, 2]))
    clipped = optimization.clip_gradients([dense, rows], clip_norm=1.0)
    assert isinstance(clipped[1], tf.IndexedSlices)
    with tf1.Session(graph=graph) as session:
      run = lambda value: session.run(  # noqa: E731
          [clipped[0], clipped[1].values], {scale: value})
      inside, _ = run(1.0)
      np.testing.assert_array_equal(inside, np.float32([0.3, 0.4]))
      metadata = tf1.RunMetadata()
      session.run(clipped[0], {scale: 1.0}, run_metadata=metadata,
                  options=tf1.RunOptions(
                      trace_level=tf1.RunOptions.FULL_TRACE))
      executed = {node.node_name for device in metadata.step_stats.dev_stats
                  for node in device.node_stats}
      assert not any("clip_by_global_norm/mul" in name for name in executed)
      above, _ = run(10.0)   # norm 5
      np.testing.assert_allclose(above, [0.6, 0.8], rtol=1e-6)
      infinite, _ = run(np.inf)
      assert np.isnan(infinite).all()


class _UnitRateSgd(tf1.train.GradientDescentOptimizer):
  """Plain SGD with learning rate 1: the update equals the gradient."""

  def __init__(self):
    super().__init__(1.0)


def test_apply_and_step_with_accumulation():
  with tf.Graph().as_default():
    global_step = tf1.train.get_or_create_global_step()
    variable = tf1.get_variable("w", initializer=[0.0])
    grad = tf1.placeholder(tf.float32, [1])
    accumulation = optimization.accumulate_gradients(
        [(grad, variable)], accumulation_steps=2)
    train_op = optimization.apply_and_step(
        _UnitRateSgd(), accumulation.pairs, global_step, accumulation)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      states = []
      for value in (1.0, 3.0, 10.0):
        session.run(train_op, {grad: [value]})
        states.append(session.run((variable, global_step,
                                   accumulation.micro_step,
                                   accumulation.totals[0])))
  # One update with the mean of 1 and 3, after the 2nd micro-batch; the
  # totals were zeroed then, and the 3rd micro-batch only accumulates.
  assert [(w.tolist(), int(g), int(m), t.tolist())
          for w, g, m, t in states] == [([0.0], 0, 1, [1.0]),
                                        ([-2.0], 1, 2, [0.0]),
                                        ([-2.0], 1, 3, [10.0])]


def test_apply_and_step_skips_non_finite_amp_steps():
  with tf.Graph().as_default():
    global_step = tf1.train.get_or_create_global_step()
    variable = tf1.get_variable("w", initializer=[0.0])
    grad = tf1.placeholder(tf.float32, [1])
    scale = optimization.DynamicLossScale(initial_scale=8.0)
    train_op = optimization.apply_and_step(
        _UnitRateSgd(), [(grad, variable)], global_step,
        loss_scale=scale, finite=optimization.all_finite([grad]))
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      states = []
      for value in (np.inf, 2.0):
        session.run(train_op, {grad: [value]})
        states.append(session.run((variable, global_step, scale.scale)))
  # The overflow step moves nothing but the step (kept on schedule) and
  # halves the scale; the next step applies.
  assert [(w.tolist(), int(g), float(s)) for w, g, s in states] == [
      ([0.0], 1, 4.0), ([-2.0], 2, 4.0)]


def test_create_train_op_one_step_equals_hand_computed_adamw():
  with tf.Graph().as_default():
    weights = tf1.get_variable("dense/kernel", initializer=[1.0, 2.0])
    bias = tf1.get_variable("dense/bias", initializer=[0.5])
    # Gradient [3, 4] (norm 5) for the kernel and 0 for the bias.
    loss = tf.reduce_sum(weights * [3.0, 4.0]) + 0.0 * tf.reduce_sum(bias)
    train_op, learning_rate = optimization.create_train_op(
        loss, [weights, bias], init_lr=0.1, num_train_steps=10,
        num_warmup_steps=0)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      rate = session.run(learning_rate)
      session.run(train_op)
      new_weights, new_bias, step = session.run(
          (weights, bias, tf1.train.get_global_step()))
  grad = np.array([0.6, 0.8])  # clipped to norm 1
  m, v = 0.1 * grad, 0.001 * grad ** 2
  update = m / (np.sqrt(v) + 1e-6) + 0.01 * np.array([1.0, 2.0])
  # ApplyAdam's float32 1 - 0.999 (see above) moves the update by 6.5e-6.
  np.testing.assert_allclose((np.array([1.0, 2.0]) - new_weights) / 0.1,
                             update, rtol=1e-5)
  assert rate == np.float32(0.1)
  assert new_bias.tolist() == [0.5]  # zero gradient, no decay on biases
  assert step == 1
