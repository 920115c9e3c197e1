"""Tests for serving.server.input_checks: errors, batch and length checks, TF
reasons.
"""

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving.server import input_checks

TAIL = "; split it, or send windows to serving_default (the client does)"


def _message(function, *args):
  """The INVALID_ARGUMENT message `function(*args)` raises."""
  with pytest.raises(input_checks.ServingError) as error:
    function(*args)
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert str(error.value) == error.value.message
  return error.value.message


def test_errors():
  error = input_checks.ServingError(grpc.StatusCode.NOT_FOUND, "gone")
  assert (error.code, error.message, str(error)) == (
      grpc.StatusCode.NOT_FOUND, "gone", "gone")
  error = input_checks.invalid_argument("bad")
  assert (error.code, error.message) == (grpc.StatusCode.INVALID_ARGUMENT,
                                         "bad")
  error = input_checks.unknown_signature("predict", {"serving_default",
                                                     "predict_text"})
  assert error.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.message == ('Serving signature key "predict" not found; this '
                           "model has predict_text, serving_default.")


def test_check_batch():
  ids, text = np.zeros([2, 3], np.int32), np.array([b"a", b"b"], object)
  assert input_checks.check_batch({"input_ids": ids, "text": text}) is None
  assert _message(input_checks.check_batch, {
      "input_ids": ids, "input_mask": np.zeros([1, 3], np.int32)}) == (
          "Inputs have different batch sizes: {'input_ids': 2, "
          "'input_mask': 1}.")
  assert _message(input_checks.check_batch, {
      "input_ids": np.zeros([0, 3], np.int32)}) == (
          "Empty batch: every input has 0 rows; send at least one.")
  assert _message(input_checks.check_batch, {
      "segment_ids": ids, "input_ids": np.zeros([2, 4], np.int32),
      "text": text}) == (
          "Inputs have mismatched shapes: {'segment_ids': [2, 3], "
          "'input_ids': [2, 4]}; input_ids, segment_ids take arrays of one "
          "shape [batch, seq_len].")


def test_check_lengths_texts():
  texts = np.array([b"ab", "张三李四王".encode("utf-8")], object)
  assert input_checks.check_lengths({"text": texts}, {}) is None
  assert input_checks.check_lengths({"text": texts},
                                    {"max_text_chars": 5}) is None
  assert _message(input_checks.check_lengths, {"text": texts},
                  {"max_text_chars": 4}) == (
                      "predict_text: text row 1 has 5 characters; "
                      "max_text_chars=4 allows at most 4 characters" + TAIL)
  # Over 4 bytes per allowed character: refused without decoding.
  assert _message(input_checks.check_lengths,
                  {"text": np.array([b"\xff" * 17], object)},
                  {"max_text_chars": 4}) == (
                      "predict_text: text row 0 has 17 bytes; "
                      "max_text_chars=4 allows at most 16 bytes" + TAIL)
  assert _message(input_checks.check_lengths,
                  {"text": np.array([b"ok", b"a\xe5b"], object)},
                  {"max_text_chars": 4}) == (
                      "Input text row 1 is not UTF-8: byte 1 is b'\\xe5'.")


def test_check_lengths_positions():
  limits = {"max_position_embeddings": 8}
  assert input_checks.check_lengths(
      {"input_ids": np.zeros([2, 8], np.int32)}, limits) is None
  assert _message(input_checks.check_lengths,
                  {"input_ids": np.zeros([1, 9], np.int32)}, limits) == (
                      "input_ids has 9 positions; this model takes at most 8 "
                      "(max_position_embeddings)")


@pytest.mark.parametrize("message, reason", [
    ("  a plain reason \n", "a plain reason"),
    ("first line\nsecond line", "first line second line"),
    ("indices[3] = 9 is not in [0, 4) [Op:GatherV2]",
     "indices[3] = 9 is not in [0, 4)"),
    ("assertion failed: [x must be 1]\n\t [[{{node check_x/Assert}}]]",
     "x must be 1"),
    ("", ""),
])
def test_tf_error_reason(message, reason):
  assert input_checks.tf_error_reason(message) == reason


@pytest.mark.parametrize("value, spec, message", [
    ([128], tf.TensorSpec([None], tf.int8),
     "Input x holds 128, outside the int8 range [-128, 127]."),
    ([True], tf.TensorSpec([None], tf.float32),
     "Input x must be float32 but holds True."),
    (np.array([[1]], object), tf.TensorSpec([None, None], tf.int32),
     "Input x must be int32 but string was given."),
    ([], tf.TensorSpec([None, None], tf.int32),
     "Input x must have rank 2 (shape (None, None)) but has shape [0]."),
])
def test_to_array_refuses(value, spec, message):
  assert _message(input_checks.to_array, "x", value, spec) == message


def test_to_array_accepts():
  floats = input_checks.to_array("x", [1, 2.5], tf.TensorSpec([None],
                                                             tf.float32))
  assert (floats.dtype, floats.tolist()) == (np.float32, [1.0, 2.5])
  text = input_checks.to_array("x", np.array([b"a", b"bc"]),
                               tf.TensorSpec([None], tf.string))
  assert (text.dtype, text.tolist()) == (object, [b"a", b"bc"])
  any_rank = input_checks.to_array("x", [[[7]]], tf.TensorSpec(None,
                                                               tf.int64))
  assert (any_rank.dtype, any_rank.tolist()) == (np.int64, [[[7]]])
