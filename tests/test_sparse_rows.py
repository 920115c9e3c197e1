"""trainer.model.sparse_rows: lazy AdamW on the embedding rows a batch uses.
"""

import numpy as np
import pytest
import tensorflow as tf

from trainer.model import optimization
from trainer.model import sparse_rows

tf1 = tf.compat.v1


def _run(fetches):
  with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    return session.run(fetches)


def test_deduplicate_sums_repeated_rows_in_first_seen_order():
  with tf.Graph().as_default():
    grad = tf.IndexedSlices(tf.constant([[1.0], [2.0], [4.0]]),
                            tf.constant([1, 4, 1]), tf.constant([5, 1]))
    unique = sparse_rows.deduplicate(grad)
    values, rows, shape = _run((unique.values, unique.indices,
                                unique.dense_shape))
  assert values.tolist() == [[5.0], [2.0]]
  assert rows.tolist() == [1, 4]
  assert shape.tolist() == [5, 1]


def _hyper(lr=0.1, epsilon=0.0, decay_lr=0.0):
  return {"lr": tf.constant(lr), "beta1": tf.constant(0.9),
          "beta2": tf.constant(0.999), "epsilon": tf.constant(epsilon),
          "decay_lr": tf.constant(decay_lr)}


def test_apply_rows_updates_only_the_given_rows():
  # The docstring's example: w, m, v zero, gradient 2 for row 1.
  with tf.Graph().as_default():
    var, m, v = (tf1.get_variable(name, initializer=tf.zeros([3, 1]),
                                  use_resource=True)
                 for name in ("w", "m", "v"))
    update = sparse_rows.apply_rows(var, m, v, tf.constant([[2.0]]),
                                    tf.constant([1]), _hyper(), decay=False)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      session.run(update)
      weights, first, second = session.run((var, m, v))
  np.testing.assert_allclose(first[:, 0], [0.0, 0.2, 0.0], rtol=1e-6)
  # (1 - 0.999) in float32 is 0.00099998713.
  np.testing.assert_allclose(second[:, 0], [0.0, 0.004, 0.0], rtol=2e-5)
  np.testing.assert_allclose(weights[:, 0],
                             [0.0, -0.1 * 0.2 / np.sqrt(0.004), 0.0],
                             rtol=2e-5)


def test_apply_rows_decays_the_rows_it_updates():
  with tf.Graph().as_default():
    var = tf1.get_variable("w", initializer=[[1.0], [2.0]], use_resource=True)
    m, v = (tf1.get_variable(name, initializer=tf.zeros([2, 1]),
                             use_resource=True) for name in ("m", "v"))
    # A zero gradient: only the decay moves row 0; row 1 is not given.
    update = sparse_rows.apply_rows(
        var, m, v, tf.constant([[0.0]]), tf.constant([0]),
        _hyper(epsilon=1e-6, decay_lr=0.5), decay=True)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      session.run(update)
      weights = session.run(var)
  assert weights[:, 0].tolist() == [0.5, 2.0]


def _train(sparse, batches=([1, 1, 3],), steps=100, frozen_kernel=False):
  """(table before, [(table, kernel, adam_m, adam_v) after each batch]) of
  create_train_op (`steps` train steps, 2 of warmup) on a loss that gathers
  a batch's rows of a [5, 2] table and multiplies them by a dense kernel
  (with `frozen_kernel` a constant, so the table's gradient does not depend
  on its rows: lazy and dense updates then see the same gradients)."""
  rng = np.random.RandomState(0)
  with tf.Graph().as_default():
    table = tf1.get_variable("bert/embeddings/word_embeddings",
                             initializer=rng.randn(5, 2).astype(np.float32),
                             use_resource=True)
    kernel = tf1.get_variable("dense/kernel", initializer=[0.5, -1.0],
                              use_resource=True)
    ids = tf1.placeholder(tf.int32, [None])
    if frozen_kernel:
      loss = tf.reduce_sum(tf.gather(table, ids) * [3.0, -1.0])
    else:
      loss = tf.reduce_sum(tf.square(tf.gather(table, ids) * kernel - 1.0))
    trained = [table] if frozen_kernel else [table, kernel]
    train_op, _ = optimization.create_train_op(
        loss, trained, init_lr=0.01, num_train_steps=steps,
        num_warmup_steps=0 if steps == 100 else 2,
        sparse_embedding_updates=sparse)
    slots = {v.op.name: v for v in tf1.global_variables()}
    state = (table, kernel, slots[table.op.name + "/adam_m"],
             slots[table.op.name + "/adam_v"])
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      before, after = session.run(table), []
      for batch in batches:
        session.run(train_op, {ids: batch})
        after.append(session.run(state))
  return before, after


def test_first_step_equals_the_dense_update():
  # One step from zero moments: dense AdamW moves unused rows only by their
  # decay, so the used rows, the kernel and both moments agree.
  before, [(dense_table, dense_kernel, dense_m, dense_v)] = _train(False)
  _, [(table, kernel, m, v)] = _train(True)
  used = [1, 3]
  np.testing.assert_allclose(table[used], dense_table[used], rtol=1e-6)
  np.testing.assert_allclose(kernel, dense_kernel, rtol=1e-6)
  np.testing.assert_allclose(m, dense_m, rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(v, dense_v, rtol=1e-5, atol=1e-12)
  # Unused rows: untouched lazily, decayed (lr 0.01 * 0.01) densely.
  unused = [0, 2, 4]
  assert (table[unused] == before[unused]).all()
  np.testing.assert_allclose(dense_table[unused], before[unused] * (1 - 1e-4),
                             rtol=1e-6)


def test_a_row_left_out_of_a_batch_keeps_its_weights_and_moments():
  # Row 1 is used by the first batch only. In the second, dense AdamW
  # decays its moments and steps it by its momentum; lazily it stays.
  batches = ([1, 1, 3], [2])
  _, dense = _train(False, batches)
  _, lazy = _train(True, batches)
  (table_1, _, m_1, v_1), (table_2, _, m_2, v_2) = lazy
  assert (table_2[1] == table_1[1]).all()
  assert (m_2[1] == m_1[1]).all() and (v_2[1] == v_1[1]).all()
  assert m_2[2].any()  # the second batch's row moved
  np.testing.assert_allclose(dense[1][2][1], 0.9 * dense[0][2][1], rtol=1e-6)
  step = np.abs(dense[1][0][1] - dense[0][0][1])
  assert (step > 1e-3).all(), step  # momentum: ~lr, not decay (~1e-4 * w)


def test_replay_is_the_docstring_example():
  # beta_1 / sqrt(beta_2) = 1: each skipped step moves w by lr * m / sqrt(v).
  with tf.Graph().as_default():
    schedule = sparse_rows.Schedule(tf.fill([11], 0.1), 0.0)
    hyper = {"beta1": tf.constant(0.9), "beta2": tf.constant(0.81),
             "epsilon": tf.constant(0.0)}
    rows = [tf.constant([[0.0], [0.0]]), tf.ones([2, 1]), tf.ones([2, 1])]
    weights, first, second = _run(sparse_rows.replay(
        *rows, tf.constant([3.0, 5.0]), tf.constant(5.0), schedule, hyper,
        decay=True))
  np.testing.assert_allclose(weights[:, 0], [-0.2, 0.0], rtol=1e-6)
  np.testing.assert_allclose(first[:, 0], [0.81, 1.0], rtol=1e-6)
  np.testing.assert_allclose(second[:, 0], [0.6561, 1.0], rtol=1e-6)


def test_replay_decays_by_the_rates_of_the_skipped_steps():
  # Rates 0, 1, 2, 3 (then 0); decay 0.01; zero moments: steps 1 and 2
  # skipped -> w (1 - 0.01 * 1)(1 - 0.01 * 2).
  with tf.Graph().as_default():
    schedule = sparse_rows.Schedule(tf.constant([0.0, 1, 2, 3, 0]), 0.01)
    hyper = {"beta1": tf.constant(0.9), "beta2": tf.constant(0.999),
             "epsilon": tf.constant(1e-6)}
    weights, _, _ = _run(sparse_rows.replay(
        tf.constant([[2.0]]), tf.zeros([1, 1]), tf.zeros([1, 1]),
        tf.constant([1.0]), tf.constant(3.0), schedule, hyper, decay=True))
  np.testing.assert_allclose(weights, [[2.0 * 0.99 * 0.98]], rtol=1e-6)


def test_rows_that_come_back_equal_the_dense_update():
  # Row 1 sits out steps 1 and 2 and comes back at step 3; row 3 is used
  # once. With gradients independent of the rows, lazy rows with replay
  # match dense AdamW wherever they were used at the last step seen, even
  # after warmup changed the rate every step; unused rows wait.
  batches = ([1, 3], [2], [2, 4], [1])
  _, dense = _train(False, batches, frozen_kernel=True)
  _, lazy = _train(True, batches, frozen_kernel=True)
  np.testing.assert_allclose(lazy[-1][0][1], dense[-1][0][1], rtol=1e-5)
  np.testing.assert_allclose(lazy[-1][2][1], dense[-1][2][1], rtol=1e-5)
  np.testing.assert_allclose(lazy[-1][3][1], dense[-1][3][1], rtol=1e-5)
  assert (lazy[-1][0][3] == lazy[0][0][3]).all()  # row 3: waits
  assert not np.allclose(lazy[-1][0][3], dense[-1][0][3], rtol=1e-5)


def test_last_step_leaves_the_whole_table_as_dense_updates_do():
  # 4 training steps: at step 3 every row, used or not, replays the steps
  # it sat out, so weights and both moments match dense AdamW everywhere.
  batches = ([1, 3], [2], [2, 4], [1])
  before, dense = _train(False, batches, steps=4, frozen_kernel=True)
  _, lazy = _train(True, batches, steps=4, frozen_kernel=True)
  for ours, theirs in zip(lazy[-1][::2], dense[-1][::2]):  # table, m
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)
  np.testing.assert_allclose(lazy[-1][3], dense[-1][3], rtol=1e-4, atol=1e-12)
  assert not np.allclose(lazy[-2][0], dense[-2][0], rtol=1e-5)  # before it
  assert (lazy[-1][0][0] != before[0]).all()  # never used, yet decayed


def test_the_update_reads_no_whole_table():
  # No op of the lazy update produces a [5, 2] tensor from the table's
  # gradient: no densified gradient, no dense Adam kernel.
  with tf.Graph().as_default() as graph:
    table = tf1.get_variable("emb", [5, 2], use_resource=True)
    loss = tf.reduce_sum(tf.gather(table, [1, 1, 3]))
    optimization.create_train_op(loss, [table], 0.01, 10, 0,
                                 sparse_embedding_updates=True)
    types = {op.type for op in graph.get_operations()}
  assert "ResourceScatterUpdate" in types
  assert not types & {"ResourceApplyAdam", "ResourceApplyGradientDescent"}


def test_create_train_op_refuses_accumulation():
  with tf.Graph().as_default():
    table = tf1.get_variable("emb", [5, 2], use_resource=True)
    loss = tf.reduce_sum(tf.gather(table, [1]))
    with pytest.raises(ValueError, match="one device"):
      optimization.create_train_op(loss, [table], 0.01, 10, 0,
                                   accumulation_steps=2,
                                   sparse_embedding_updates=True)


def test_a_run_ends_with_every_row_caught_up(tmp_path):
  # The embedded default (a from-scratch tiny BERT, every variable trained)
  # for 12 steps: the checkpoint's word-piece table has replayed all 12
  # steps in every row, and its rows stayed finite.
  from trainer.data.sample_data import sample_data_dir
  from trainer.run import train_lib
  config = train_lib.NerConfig(
      output_dir=str(tmp_path / "out"), data_dir=sample_data_dir(),
      do_train=True, num_train_steps=12, train_batch_size=8,
      sparse_embedding_updates=True, save_checkpoints_steps=100000)
  train_lib.run(config)
  checkpoint = tf.train.latest_checkpoint(config.output_dir)
  name = "bert/embeddings/word_embeddings"
  caught_up_to = tf.train.load_variable(checkpoint, name + "/caught_up_to")
  table = tf.train.load_variable(checkpoint, name)
  assert caught_up_to.shape == table.shape[:1]
  assert (caught_up_to == 12).all()
  assert np.isfinite(table).all()
