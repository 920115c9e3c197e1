"""trainer.optimization.AdamWeightDecayOptimizer equals bert's, update by update."""

import numpy as np
import tensorflow as tf

from trainer import optimization
from trainer.tf_compat import optimization as bert_optimization

tf1 = tf.compat.v1


def _run(optimizer_class, steps=4):
  rng = np.random.RandomState(0)
  initial = {"layer/kernel": rng.randn(3, 2).astype(np.float32),
             "layer/LayerNorm/gamma": rng.randn(2).astype(np.float32),
             "embeddings": rng.randn(5, 2).astype(np.float32)}
  with tf.Graph().as_default():
    variables = [tf1.get_variable(name, initializer=value)
                 for name, value in initial.items()]
    ids = tf1.placeholder(tf.int32, [None])
    inputs = tf1.placeholder(tf.float32, [None, 3])
    hidden = tf.matmul(inputs, variables[0]) * variables[1]
    hidden += tf.gather(variables[2], ids)   # sparse (IndexedSlices) gradient
    loss = tf.reduce_sum(tf.square(hidden - 1.0))
    optimizer = optimizer_class(
        learning_rate=0.1, weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999,
        epsilon=1e-6, exclude_from_weight_decay=["LayerNorm", "bias"])
    train_op = optimizer.apply_gradients(zip(tf.gradients(loss, variables),
                                             variables))
    history = []
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      for step in range(steps):
        session.run(train_op, {inputs: rng.randn(4, 3), ids: [step, 1, 1, 4]})
        history.append(session.run(variables))
  return history


def test_matches_bert_optimizer_update_for_update():
  ours = _run(optimization.AdamWeightDecayOptimizer)
  theirs = _run(bert_optimization.AdamWeightDecayOptimizer)
  for step_ours, step_theirs in zip(ours, theirs):
    for a, b in zip(step_ours, step_theirs):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert not np.allclose(ours[0][0], ours[-1][0])  # it did train


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
