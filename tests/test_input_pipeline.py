"""Tests for trainer.features.input_pipeline (feature cache and tf.data
batches).
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from trainer.features import windows
from trainer.features import input_pipeline
from trainer import schema


def _windows():
  return [
      windows.WindowFeatures(0, 0, (2, 5, 6, 3), (1, 1, 1, 1), (0, 0, 0, 0),
                              (-1, 1, 0, -1), (-1, 0, 1, -1), (0, 1, 1, 0)),
      windows.WindowFeatures(1, 0, (2, 7, 3), (1, 1, 1), (0, 0, 0),
                              (-1, 2, -1), (-1, 0, -1), (0, 1, 0)),
  ]


def test_cache_key_tracks_contents_and_settings(tmp_path):
  data = tmp_path / "train.txt"
  data.write_text("EU B-ORG\n")
  moved = tmp_path / "copy.txt"
  moved.write_text("EU B-ORG\n")
  key = input_pipeline.cache_key([str(data)], {"max_seq_length": 128})
  assert len(key) == 16
  # Same bytes elsewhere: same key. Other bytes or settings: new key.
  assert input_pipeline.cache_key([str(moved)], {"max_seq_length": 128}) == key
  assert input_pipeline.cache_key([str(data)], {"max_seq_length": 64}) != key
  data.write_text("EU B-MISC\n")
  assert input_pipeline.cache_key([str(data)], {"max_seq_length": 128}) != key


def test_write_then_batch_pads_to_longest_in_batch(tmp_path):
  path = str(tmp_path / "f.tfrecord")
  assert input_pipeline.write_features(_windows(), path) == 2
  assert input_pipeline.read_feature_count(path) == 2
  assert input_pipeline.read_feature_count(path + "x") is None
  dataset = input_pipeline.input_fn_builder(
      path, is_training=False, batch_size=2, max_seq_length=8)({})
  [batch] = list(dataset.as_numpy_iterator())
  assert batch[schema.INPUT_IDS].tolist() == [[2, 5, 6, 3], [2, 7, 3, 0]]
  assert batch[schema.INPUT_MASK].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
  assert batch[schema.LABEL_IDS].tolist() == [[-1, 1, 0, -1], [-1, 2, -1, -1]]
  assert batch[schema.WORD_POSITIONS].tolist() == [[-1, 0, 1, -1],
                                                   [-1, 0, -1, -1]]
  assert batch[schema.EXAMPLE_INDEX].tolist() == [0, 1]
  assert batch[schema.INPUT_IDS].dtype == "int32"


def test_fixed_length_pads_to_max_seq_length(tmp_path):
  path = str(tmp_path / "f.tfrecord")
  input_pipeline.write_features(_windows(), path)
  dataset = input_pipeline.input_fn_builder(
      path, is_training=True, batch_size=2, max_seq_length=6,
      fixed_length=True, seed=3)({})
  batch = next(iter(dataset))
  assert batch[schema.INPUT_IDS].shape == (2, 6)
  assert batch[schema.SEGMENT_IDS].numpy().sum() == 0


def test_to_tf_example_round_trip():
  window = _windows()[1]
  serialized = input_pipeline.to_tf_example(window).SerializeToString()
  parsed = input_pipeline.parse_example(tf.constant(serialized))
  assert {k: v.numpy().tolist() for k, v in parsed.items()} == {
      k: list(v) if isinstance(v, tuple) else v
      for k, v in window.as_dict().items()}


def test_bucketing_groups_windows_by_length(tmp_path):
  short = windows.WindowFeatures(0, 0, (2, 5, 3), (1, 1, 1), (0, 0, 0),
                                  (-1, 1, -1), (-1, 0, -1), (0, 1, 0))
  long = windows.WindowFeatures(1, 0, (2, 5, 5, 5, 5, 5, 5, 3), (1,) * 8,
                                 (0,) * 8, (-1,) * 8, (-1,) * 8, (0,) * 8)
  path = str(tmp_path / "f.tfrecord")
  input_pipeline.write_features([short, long, short, long], path)
  assert input_pipeline.read_feature_meta(path)["length_histogram"] == {
      3: 2, 8: 2}
  dataset = input_pipeline.input_fn_builder(
      path, is_training=False, batch_size=2, max_seq_length=16,
      bucket_boundaries=[5])({})
  shapes = sorted(b[schema.INPUT_IDS].shape for b in
                  dataset.as_numpy_iterator())
  assert shapes == [(2, 3), (2, 8)]  # no batch mixes the two lengths


def test_bucket_boundaries_for_takes_the_given_or_derives_them(tmp_path):
  path = str(tmp_path / "f.tfrecord")
  lengths = [3] * 5 + [12] * 3 + [40] * 2
  input_pipeline.write_features(
      [windows.WindowFeatures(i, 0, (2,) * n, (1,) * n, (0,) * n, (-1,) * n,
                               (-1,) * n, (0,) * n)
       for i, n in enumerate(lengths)], path)
  assert input_pipeline.bucket_boundaries_for(path, [7, 9]) == [7, 9]
  # windows.derive_bucket_boundaries of {3: 5, 12: 3, 40: 2}: quantile
  # lengths 3, 12 and 40, rounded up to even lengths or multiples of 8.
  assert input_pipeline.bucket_boundaries_for(path) == [5, 13]
  assert input_pipeline.bucket_boundaries_for(path, None, 8) == [9, 17]
  assert input_pipeline.bucket_boundaries_for(path, None) == \
      windows.derive_bucket_boundaries({3: 5, 12: 3, 40: 2})
  os.remove(path + ".json")  # features without their sidecar
  assert input_pipeline.bucket_boundaries_for(path, [7, 9]) == [7, 9]
  with pytest.raises(ValueError, match="has no length histogram"):
    input_pipeline.bucket_boundaries_for(path)


def test_batch_windows_buckets_by_the_given_length():
  dataset = tf.data.Dataset.from_tensor_slices(
      {"x": [1, 2, 3, 4], "n": [9, 1, 8, 2]})
  batches = input_pipeline.batch_windows(
      dataset, 2, {"x": [], "n": []},
      {"x": tf.constant(0, tf.int32), "n": tf.constant(0, tf.int32)},
      lambda element: element["n"], bucket_boundaries=[5])
  assert sorted(b["x"].tolist() for b in batches.as_numpy_iterator()) == [
      [1, 3], [2, 4]]
  plain = input_pipeline.batch_windows(
      dataset, 3, {"x": [], "n": []},
      {"x": tf.constant(0, tf.int32), "n": tf.constant(0, tf.int32)},
      lambda element: element["n"], drop_remainder=True)
  assert [b["x"].tolist() for b in plain.as_numpy_iterator()] == [[1, 2, 3]]


def _with_teacher(window, rows):
  """A feature record plus float16 `rows` as the teacher-targets file has."""
  example = input_pipeline.to_tf_example(window)
  example.features.feature[schema.TEACHER_LOG_PROBS].bytes_list.value.append(
      np.asarray(rows, "<f2").tobytes())
  return example.SerializeToString()


# Two labels; float16-exact values. Window 0 has 4 positions, window 1 has 3.
TEACHER_ROWS = ([[0, 0], [-0.25, -1.5], [-2.0, -0.125], [0, 0]],
                [[0, 0], [-0.5, -0.75], [0, 0]])


def _teacher_file(tmp_path):
  path = str(tmp_path / "teacher.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for window, rows in zip(_windows(), TEACHER_ROWS):
      writer.write(_with_teacher(window, rows))
  return path


def test_teacher_log_probs_are_batched_with_the_windows(tmp_path):
  path = _teacher_file(tmp_path)
  dataset = input_pipeline.input_fn_builder(
      path, is_training=False, batch_size=2, max_seq_length=8,
      num_teacher_labels=2)({})
  [batch] = list(dataset.as_numpy_iterator())
  assert batch[schema.INPUT_IDS].tolist() == [[2, 5, 6, 3], [2, 7, 3, 0]]
  assert batch[schema.TEACHER_LOG_PROBS].dtype == np.float32
  # Row t of window i is the stored row t; padding is 0.
  assert batch[schema.TEACHER_LOG_PROBS].tolist() == [
      TEACHER_ROWS[0], TEACHER_ROWS[1] + [[0, 0]]]
  # Without num_teacher_labels the same file reads as a feature file.
  plain = input_pipeline.input_fn_builder(
      path, is_training=False, batch_size=2, max_seq_length=8)({})
  assert schema.TEACHER_LOG_PROBS not in next(iter(plain))
  assert schema.TEACHER_LOG_PROBS not in input_pipeline.parse_spec()


def test_teacher_log_probs_fixed_length_and_padding_windows(tmp_path):
  path = _teacher_file(tmp_path)
  batches = list(input_pipeline.input_fn_builder(
      path, is_training=False, batch_size=3, max_seq_length=6,
      fixed_length=True, pad_to_full_batches=2,
      num_teacher_labels=2)({}).as_numpy_iterator())
  assert len(batches) == 1
  log_probs = batches[0][schema.TEACHER_LOG_PROBS]
  assert log_probs.shape == (3, 6, 2)
  assert log_probs[0, :4].tolist() == TEACHER_ROWS[0]
  assert log_probs[1, :3].tolist() == TEACHER_ROWS[1]
  assert not log_probs[0, 4:].any() and not log_probs[1, 3:].any()
  # The padding window (example_index -1) has no teacher rows.
  assert batches[0][schema.EXAMPLE_INDEX].tolist() == [0, 1, -1]
  assert not log_probs[2].any()


def test_teacher_log_probs_shuffle_and_bucket_with_their_windows(tmp_path):
  path = _teacher_file(tmp_path)
  dataset = input_pipeline.input_fn_builder(
      path, is_training=True, batch_size=1, max_seq_length=8,
      bucket_boundaries=[4], seed=5, num_teacher_labels=2)({})
  for batch in dataset.take(6).as_numpy_iterator():
    example = batch[schema.EXAMPLE_INDEX][0]
    rows = TEACHER_ROWS[example]
    assert batch[schema.TEACHER_LOG_PROBS][0].tolist() == rows
    assert batch[schema.INPUT_IDS].shape == (1, len(rows))
