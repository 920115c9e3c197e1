"""trainer.model.bilstm against the `LSTMCell` + `bidirectional_dynamic_rnn` it
replaces.

`reference_bilstm` is the implementation `heads._bilstm` had before, kept
here as the oracle: the new one must create the same variables and compute
the same outputs and gradients, and checkpoints of either must load.
"""

import numpy as np
import pytest
import tensorflow as tf

from trainer.model import bilstm
from trainer.model import heads

tf1 = tf.compat.v1

UNITS = 4


def reference_bilstm(inputs, lengths, units, num_layers, dropout=0.0,
                     is_training=False):
  """The former `heads._bilstm`: LSTMCells in bidirectional_dynamic_rnn."""
  outputs = inputs
  for layer in range(num_layers):
    with tf1.variable_scope(f"bilstm_{layer}"):
      forward = tf1.nn.rnn_cell.LSTMCell(
          units, initializer=tf1.glorot_uniform_initializer(), name="forward")
      backward = tf1.nn.rnn_cell.LSTMCell(
          units, initializer=tf1.glorot_uniform_initializer(),
          name="backward")
      (out_fw, out_bw), _ = tf1.nn.bidirectional_dynamic_rnn(
          forward, backward, outputs, sequence_length=lengths,
          dtype=tf.float32)
      outputs = tf.concat([out_fw, out_bw], axis=-1)
      if is_training and dropout and layer + 1 < num_layers:
        outputs = tf.nn.dropout(outputs, rate=dropout)
  return outputs


def _run(build, inputs, lengths, upstream, num_layers, values=None):
  """Outputs and d(sum(outputs * upstream)) w.r.t. inputs and variables.

  Returns:
    (outputs, input gradient, {variable name: (value, gradient)}).
  """
  with tf.Graph().as_default():
    tf1.set_random_seed(7)
    features = tf.constant(inputs)
    outputs = build(features, tf.constant(lengths), UNITS, num_layers)
    variables = tf1.trainable_variables()
    gradients = tf.gradients(tf.reduce_sum(outputs * upstream),
                             [features] + variables)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      for variable in variables:
        if values is not None:
          variable.load(values[variable.op.name][0], session)
      result = session.run([outputs, gradients, variables])
  out, (input_gradient, *variable_gradients), variable_values = result
  return out, input_gradient, {
      variable.op.name: (value, gradient) for variable, value, gradient in
      zip(variables, variable_values, variable_gradients)}


@pytest.mark.parametrize("num_layers, lengths, width", [
    (2, [7, 3, 0, 5, 1], 7),
    (1, [2, 4], 6),     # wider than the longest row
    (2, [0, 0], 3),     # no words at all
])
def test_outputs_and_gradients_equal_lstm_cell(num_layers, lengths, width):
  rng = np.random.RandomState(3)
  inputs = rng.normal(size=[len(lengths), width, 6]).astype(np.float32)
  upstream = rng.normal(size=[len(lengths), width, 2 * UNITS]).astype(
      np.float32)
  lengths = np.array(lengths, np.int32)
  want, want_input_grad, want_vars = _run(reference_bilstm, inputs, lengths,
                                          upstream, num_layers)
  got, got_input_grad, got_vars = _run(bilstm.stacked_bilstm, inputs,
                                       lengths, upstream, num_layers,
                                       values=want_vars)
  assert sorted(got_vars) == sorted(want_vars)
  assert len(got_vars) == 4 * num_layers
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
  np.testing.assert_allclose(got_input_grad, want_input_grad, rtol=0,
                             atol=1e-5)
  for name, (value, gradient) in want_vars.items():
    assert got_vars[name][0].shape == value.shape, name
    np.testing.assert_allclose(got_vars[name][1], gradient, rtol=0,
                               atol=1e-5, err_msg=name)
  # Past each row's length: exact zeros, as dynamic_rnn gives.
  past = np.arange(width)[None, :] >= lengths[:, None]
  assert np.all(got[past] == 0.0)
  if lengths.max() > 0:
    assert np.abs(got[~past]).min() > 0
    assert np.abs(want_vars["bilstm_0/bidirectional_rnn/fw/forward/kernel"]
                  [1]).max() > 1e-3


def test_variables_have_lstm_cell_names_shapes_and_initial_values():
  """Same names and shapes; glorot uniform kernel, zero bias."""
  def variables(build):
    with tf.Graph().as_default():
      build(tf.zeros([2, 3, 10]), tf.constant([3, 1]), 16, 2)
      with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        return {v.op.name: session.run(v) for v in tf1.global_variables()}

  want, got = variables(reference_bilstm), variables(bilstm.stacked_bilstm)
  assert {name: value.shape for name, value in got.items()} == {
      name: value.shape for name, value in want.items()} == {
          "bilstm_0/bidirectional_rnn/fw/forward/kernel": (26, 64),
          "bilstm_0/bidirectional_rnn/fw/forward/bias": (64,),
          "bilstm_0/bidirectional_rnn/bw/backward/kernel": (26, 64),
          "bilstm_0/bidirectional_rnn/bw/backward/bias": (64,),
          "bilstm_1/bidirectional_rnn/fw/forward/kernel": (48, 64),
          "bilstm_1/bidirectional_rnn/fw/forward/bias": (64,),
          "bilstm_1/bidirectional_rnn/bw/backward/kernel": (48, 64),
          "bilstm_1/bidirectional_rnn/bw/backward/bias": (64,)}
  for name, value in got.items():
    if name.endswith("bias"):
      assert np.all(value == 0.0)
    else:  # glorot uniform: |w| <= sqrt(6 / (fan_in + fan_out))
      limit = np.sqrt(6.0 / sum(value.shape))
      assert 0.5 * limit < np.abs(value).max() <= limit


def test_checkpoint_of_the_lstm_cell_graph_restores(tmp_path):
  rng = np.random.RandomState(5)
  inputs = rng.normal(size=[3, 5, 6]).astype(np.float32)
  lengths = np.array([5, 2, 4], np.int32)
  prefix = str(tmp_path / "old.ckpt")
  outputs = {}
  for name, build in (("old", reference_bilstm),
                      ("new", bilstm.stacked_bilstm)):
    with tf.Graph().as_default():
      with tf1.variable_scope(heads.HEAD_SCOPE):
        output = build(tf.constant(inputs), tf.constant(lengths), UNITS, 2)
      saver = tf1.train.Saver()
      with tf1.Session() as session:
        if name == "old":
          session.run(tf1.global_variables_initializer())
          saver.save(session, prefix)
        else:
          saver.restore(session, prefix)
        outputs[name] = session.run(output)
  np.testing.assert_allclose(outputs["new"], outputs["old"], rtol=0,
                             atol=1e-5)
  assert np.abs(outputs["old"]).max() > 0.05


def test_dropout_between_layers_only_while_training():
  inputs = np.random.RandomState(0).normal(size=[2, 4, 6]).astype(np.float32)
  head = heads.HeadConfig(kind="bilstm_crf", lstm_units=UNITS, lstm_layers=2,
                          dropout=0.5)
  results = {}
  with tf.Graph().as_default():
    tf1.set_random_seed(1)
    for is_training in (False, True):
      with tf1.variable_scope("head", reuse=tf1.AUTO_REUSE):
        results[is_training] = heads._bilstm(  # pylint: disable=protected-access
            tf.constant(inputs), tf.constant([4, 2]), head, is_training)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      evaluation, training = session.run([results[False], results[True]])
      again = session.run(results[False])
  np.testing.assert_array_equal(again, evaluation)
  assert not np.allclose(training, evaluation, atol=1e-3)
  # Padding stays zero with dropout too.
  assert np.all(training[1, 2:] == 0.0) and np.all(evaluation[1, 2:] == 0.0)
