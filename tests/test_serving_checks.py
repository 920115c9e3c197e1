"""Tests for trainer.export.serving_checks: in-graph checks of served model
inputs.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from trainer.export import serving_checks
from trainer.tf_compat import modeling

tf1 = tf.compat.v1
KEYS = ("input_ids", "input_mask", "segment_ids")
CONFIG = modeling.BertConfig(vocab_size=30, type_vocab_size=2,
                             max_position_embeddings=8)


def _failure(error):
  """(node, assertion text) of a graph-mode tf.Assert failure."""
  node = re.search(r"^Node: '([^']*)'$", error.message, re.M).group(1)
  return node, re.search(r"^assertion failed: \[(.*)\]$", error.message,
                         re.M).group(1)


@pytest.fixture(scope="module")
def run():
  """Feeds ids, mask, segments (and a label) through the checked inputs."""
  graph = tf.Graph()
  with graph.as_default():
    inputs = {key: tf1.placeholder(tf.int64, [None, None], name=key)
              for key in KEYS}
    inputs["label_ids"] = tf1.placeholder(tf.int32, [None, None])
    outputs = serving_checks.checked_model_inputs(inputs, CONFIG)
    assert outputs["label_ids"] is inputs["label_ids"]  # passed through
    assert {k: v.dtype for k, v in outputs.items()} == {
        k: v.dtype for k, v in inputs.items()}
  # Not `with`: that would keep the graph the default one (no eager).
  session = tf1.Session(graph=graph)

  def feed(ids, mask=None, segments=None):
    values = (ids, mask or [[1] * len(ids[0])] * len(ids),
              segments or [[0] * len(ids[0])] * len(ids), [[0]])
    return session.run(outputs, dict(zip(inputs.values(), values)))

  yield feed
  session.close()


def test_model_limits():
  assert serving_checks.model_limits(CONFIG) == {
      "vocab_size": 30, "type_vocab_size": 2, "max_position_embeddings": 8}


def test_good_inputs_come_out_unchanged(run):
  ids, mask, segments = [[2, 29, 0, 3]], [[1, 1, 0, 0]], [[0, 1, 1, 0]]
  result = run(ids, mask, segments)
  for key, value in zip(KEYS, (ids, mask, segments)):
    assert result[key].dtype == np.int64
    assert result[key].tolist() == value
  assert run([[2] * 8])["input_ids"].shape == (1, 8)  # at the limit


def test_int32_inputs_in_a_tf_function():
  checked = tf.function(
      lambda features: serving_checks.checked_model_inputs(features, CONFIG))
  features = {"input_ids": tf.constant([[2, 7, 3]]),
              "input_mask": tf.constant([[1, 1, 1]]),
              "segment_ids": tf.constant([[0, 0, 1]])}
  result = checked(features)
  assert {k: (v.dtype, v.numpy().tolist()) for k, v in result.items()} == {
      "input_ids": (tf.int32, [[2, 7, 3]]),
      "input_mask": (tf.int32, [[1, 1, 1]]),
      "segment_ids": (tf.int32, [[0, 0, 1]])}
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"assertion failed: \[segment_ids must be in "
                           r"\[0, 2\) \(type_vocab_size of the model\); "
                           r"found 3 at row 0, position 2 "):
    checked({**features, "segment_ids": tf.constant([[0, 0, 3]])})


@pytest.mark.parametrize("ids, mask, segments, node, message", [
    ([[2, 31, 3]], None, None, "check_input_ids/Assert",
     "input_ids must be in [0, 30) (vocab_size of the model); found 31 at "
     "row 0, position 1 (out-of-range values in the request: 1)"),
    ([[2, 5, 3], [-1, 40, 3]], None, None, "check_input_ids/Assert",
     "input_ids must be in [0, 30) (vocab_size of the model); found -1 at "
     "row 1, position 0 (out-of-range values in the request: 2)"),
    ([[2, 5, 3]], None, [[0, 0, 2]], "check_segment_ids/Assert",
     "segment_ids must be in [0, 2) (type_vocab_size of the model); found 2 "
     "at row 0, position 2 (out-of-range values in the request: 1)"),
    ([[2, 5, 3]], [[1, 7, -1]], None, "check_input_mask/Assert",
     "input_mask must be 0 or 1; found 7 at row 0, position 1 (out-of-range "
     "values in the request: 2)"),
    ([[2, 5, 3]], [[1, 1]], None, "check_input_mask_shape/Assert",
     "input_mask has shape [1 2] but input_ids has [1 3]; input_ids, "
     "input_mask, segment_ids take one shape [batch, positions]"),
    ([[2] * 9], None, None, "check_positions/Assert",
     "input_ids has 9 positions; this model takes at most 8 "
     "(max_position_embeddings)"),
])
def test_bad_inputs_fail_with_their_message(run, ids, mask, segments, node,
                                            message):
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    run(ids, mask, segments)
  assert _failure(error.value) == (node, message)


def test_graph_check_builds_its_message_only_on_failure():
  graph = tf.Graph()
  with graph.as_default():
    x = tf1.placeholder(tf.int32, [None])
    # x[5] fails at run time for short x: only the failing branch reads it.
    check = serving_checks.graph_check(
        tf.reduce_all(x > 0), lambda: tf.strings.format("x[5] is {}", x[5]),
        "check_x")
    y = serving_checks.checked(x * 2, [check])
  with tf1.Session(graph=graph) as session:
    assert session.run(y, {x: [1, 2]}).tolist() == [2, 4]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
      session.run(y, {x: [1, 2, 3, 4, 5, -6]})
  assert _failure(error.value) == ("check_x/Assert", "x[5] is -6")
