"""Feature cache (TFRecord) and `tf.data` input functions.

Offline part: `write_features` stores unpadded `WindowFeatures` as
`tf.train.Example` records (int64 lists named by `trainer.schema`).
Loading part: `input_fn_builder` parses them, casts to int32 and pads each
batch to its longest window (or to `max_seq_length` with `fixed_length`), so
short NER sentences do not pay for 128 positions of padding.

Batch produced by the input function (all int32)::

    input_ids, input_mask, segment_ids, label_ids,
    word_positions, score_mask               [batch, seq_len]
    example_index, window_index              [batch]

and, reading a teacher-targets file (`trainer.distill.teacher`) with
`num_teacher_labels` L, `teacher_log_probs` float32 [batch, seq_len, L]
(0 on padding).
"""

import collections
import hashlib
import json
import os
import time
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from absl import logging
import tensorflow as tf

from trainer.features import cache_files
from trainer.features import windows as features_lib
from trainer import schema

# Bump when the feature layout changes so old caches are rebuilt.
CACHE_FORMAT_VERSION = 1
# Training windows held for shuffling (the encoder-feature cache shuffles
# window indices with the same buffer, so both see the same order).
SHUFFLE_BUFFER = 10000


def cache_key(input_files: Sequence[str], settings: Mapping[str, Any]) -> str:
  """Hash of input file contents and every setting that shapes the features.

  Args:
    input_files: list of paths whose bytes feed the features (data file(s),
      vocab, labels).
    settings: JSON-serialisable dict (max_seq_length, doc_stride, lower case,
      data format, ...).

  Returns:
    str, 16 hex digits.
  """
  digest = hashlib.sha256()
  digest.update(json.dumps({"version": CACHE_FORMAT_VERSION, **settings},
                           sort_keys=True).encode("utf-8"))
  for path in input_files:
    # Contents only: moving the data elsewhere keeps the cache valid.
    digest.update(b"\0")
    with tf.io.gfile.GFile(path, "rb") as reader:
      while True:
        block = reader.read(1 << 20)
        if not block:
          break
        digest.update(block)
  return digest.hexdigest()[:16]


def _int64_feature(values: Iterable[int]) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def to_tf_example(window: features_lib.WindowFeatures) -> tf.train.Example:
  """Serializable `tf.train.Example` for one `WindowFeatures`."""
  feature = {}
  for key, value in window.as_dict().items():
    feature[key] = _int64_feature([value] if isinstance(value, int) else value)
  return tf.train.Example(features=tf.train.Features(feature=feature))


def write_features(windows: Iterable[features_lib.WindowFeatures],
                   path: str) -> int:
  """Writes windows to a TFRecord file atomically; returns the count.

  A `.json` sidecar records the number of windows, a histogram of window
  lengths and the file's size and SHA-256, so reruns know the size of a
  cached file, can derive length buckets without reading it, and check the
  file before reusing it (`verified_feature_meta`).
  """
  # Unique temporary name: several workers of one job may build the same
  # cache file at once; each renames a complete file into place.
  tmp_path = f"{path}.tmp-{os.getpid()}-{int(time.time() * 1e6)}"
  count = 0
  histogram = collections.Counter()
  with tf.io.TFRecordWriter(tmp_path) as writer:
    for window in windows:
      writer.write(to_tf_example(window).SerializeToString())
      histogram[len(window.input_ids)] += 1
      count += 1
  checksum = cache_files.file_sha256(tmp_path)
  size = tf.io.gfile.stat(tmp_path).length
  tf.io.gfile.rename(tmp_path, path, overwrite=True)
  with tf.io.gfile.GFile(f"{tmp_path}.json", "w") as meta:
    json.dump({"num_windows": count,
               "length_histogram": {str(k): v for k, v in
                                    sorted(histogram.items())},
               "bytes": size, "sha256": checksum}, meta)
  tf.io.gfile.rename(f"{tmp_path}.json", f"{path}.json", overwrite=True)
  return count


def read_feature_meta(path: str) -> Optional[dict[str, Any]]:
  """The sidecar dict of a cached file, or None when the cache is absent.

  Keys: "num_windows" (int) and "length_histogram" ({length: count}, int keys).
  """
  if not (tf.io.gfile.exists(path) and tf.io.gfile.exists(f"{path}.json")):
    return None
  with tf.io.gfile.GFile(f"{path}.json") as meta:
    data = json.load(meta)
  data["length_histogram"] = {int(k): v for k, v in
                              data.get("length_histogram", {}).items()}
  return data


def verified_feature_meta(path: str
                          ) -> tuple[Optional[dict[str, Any]], Optional[str]]:
  """Checks a cached feature file against its sidecar before reuse.

  Returns:
    (meta, None) when the file is complete and unchanged (meta as
    `read_feature_meta`); (None, None) when there is no cache; (None, why)
    when a file is there but cannot be trusted: the reason names the file
    and what is wrong (a truncated or overwritten TFRecord, an unreadable
    sidecar, a sidecar written before checksums).

  Example: a TFRecord cut to 100 of its 2,000 bytes -> (None, "<path> has
  100 bytes, <path>.json says 2000 (truncated or overwritten)").
  """
  sidecar = f"{path}.json"
  has_file, has_sidecar = tf.io.gfile.exists(path), tf.io.gfile.exists(sidecar)
  if not (has_file or has_sidecar):
    return None, None
  if not has_sidecar:
    return None, f"{path} has no sidecar {sidecar} (its writing was cut off)"
  try:
    meta = read_feature_meta(path)
    int(meta["num_windows"])
  except (ValueError, TypeError, AttributeError, KeyError) as error:
    return None, f"{sidecar} is unreadable ({type(error).__name__}: {error})"
  problem = cache_files.file_problem(path, sidecar, meta.get("bytes"),
                                     meta.get("sha256"))
  return (None, problem) if problem else (meta, None)


def read_feature_count(path: str) -> Optional[int]:
  """Number of windows in a cached file, or None when the cache is absent."""
  meta = read_feature_meta(path)
  return None if meta is None else meta["num_windows"]


def parse_spec(num_teacher_labels: Optional[int] = None) -> dict[str, Any]:
  """Parsing spec: sequence features are variable-length int64 lists.

  With `num_teacher_labels`, also the teacher's log-probabilities: one bytes
  value (`schema.TEACHER_LOG_PROBS`, written by `trainer.distill.teacher`).
  """
  spec = {key: tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True)
          for key in schema.SEQUENCE_FEATURE_KEYS}
  spec.update({key: tf.io.FixedLenFeature([], tf.int64)
               for key in schema.SCALAR_FEATURE_KEYS})
  if num_teacher_labels is not None:
    spec[schema.TEACHER_LOG_PROBS] = tf.io.FixedLenFeature([], tf.string)
  return spec


def parse_example(serialized: tf.Tensor,
                  num_teacher_labels: Optional[int] = None
                  ) -> dict[str, tf.Tensor]:
  """Parses one serialized `tf.Example` into int32 tensors ([n] or []).

  With `num_teacher_labels` L, `teacher_log_probs` becomes float32 [n, L]:
  the stored little-endian float16 bytes of a window of n positions.
  """
  parsed = tf.io.parse_single_example(serialized,
                                      parse_spec(num_teacher_labels))
  teacher = parsed.pop(schema.TEACHER_LOG_PROBS, None)
  features = {key: tf.cast(value, tf.int32) for key, value in parsed.items()}
  if teacher is not None:
    values = tf.io.decode_raw(teacher, tf.float16, little_endian=True)
    features[schema.TEACHER_LOG_PROBS] = tf.cast(
        tf.reshape(values, [-1, num_teacher_labels]), tf.float32)
  return features


def input_fn_builder(input_file: str, is_training: bool, batch_size: int,
                     max_seq_length: int, fixed_length: bool = False,
                     bucket_boundaries: Optional[Sequence[int]] = None,
                     seed: Optional[int] = None,
                     shuffle_buffer: int = SHUFFLE_BUFFER,
                     cache: bool = False,
                     pad_to_full_batches: Optional[int] = None,
                     num_teacher_labels: Optional[int] = None
                     ) -> Callable[..., tf.data.Dataset]:
  """Returns an Estimator `input_fn(params)` reading a feature TFRecord.

  Args:
    input_file: path written by `write_features`.
    is_training: shuffle and repeat forever when True; one pass otherwise.
    batch_size: int, windows per batch (TPUEstimator's `params["batch_size"]`
      takes precedence).
    max_seq_length: int, longest window; with `fixed_length` every batch is
      padded to it (the google-research/bert layout, needed on TPU).
    fixed_length: pad to `max_seq_length` instead of the batch's longest
      (the google-research/bert layout; TPUs need it).
    bucket_boundaries: optional ascending ints: windows are grouped into
      length buckets [0, b0), [b0, b1), ... before batching, so a batch holds
      windows of similar length and little padding (ignored with
      `fixed_length`). Training shuffles windows before bucketing, so batches
      of all buckets come out in random order.
    seed: shuffle seed (None: random).
    cache: keep parsed windows in memory after the first pass (later epochs
      skip reading and parsing; needs RAM for the whole file).
    pad_to_full_batches: the file's window count: append padding windows
      (example_index -1, no labels, nothing scored) so every batch is full,
      as TPUs need; consumers drop windows with example_index < 0.
    shuffle_buffer: windows held for shuffling.
    num_teacher_labels: L of a teacher-targets file
      (`trainer.distill.teacher.targets_file`): batches also hold
      `teacher_log_probs` float32 [B, T, L], padded with 0.
  """
  teacher_shape = ([] if num_teacher_labels is None else
                   [num_teacher_labels])

  def input_fn(params: Optional[Mapping[str, Any]],
               input_context: Optional[tf.distribute.InputContext] = None
               ) -> tf.data.Dataset:
    size = (params or {}).get("batch_size", batch_size)
    if input_context is not None:
      # Under a distribution strategy each replica reads its own batches:
      # the global batch is split evenly, and each input pipeline reads its
      # own shard of the file.
      size = input_context.get_per_replica_batch_size(size)
    dataset = tf.data.TFRecordDataset(input_file)
    if input_context is not None and input_context.num_input_pipelines > 1:
      dataset = dataset.shard(input_context.num_input_pipelines,
                              input_context.input_pipeline_id)
    dataset = dataset.map(lambda record: parse_example(record,
                                                       num_teacher_labels),
                          num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    if cache:
      dataset = dataset.cache()
    if is_training:
      dataset = dataset.shuffle(shuffle_buffer, seed=seed,
                                reshuffle_each_iteration=True)
      dataset = dataset.repeat()
    if pad_to_full_batches is not None and not is_training:
      missing = -pad_to_full_batches % size
      if missing:
        padding = {key: tf.fill([2], tf.constant(schema.PADDING_VALUES[key],
                                                 tf.int32))
                   for key in schema.SEQUENCE_FEATURE_KEYS}
        padding[schema.EXAMPLE_INDEX] = tf.constant(-1, tf.int32)
        padding[schema.WINDOW_INDEX] = tf.constant(0, tf.int32)
        if teacher_shape:
          padding[schema.TEACHER_LOG_PROBS] = tf.zeros([2] + teacher_shape)
        dataset = dataset.concatenate(
            tf.data.Dataset.from_tensors(padding).repeat(missing))
    length = max_seq_length if fixed_length else None
    padded_shapes = {key: [length] for key in schema.SEQUENCE_FEATURE_KEYS}
    padded_shapes.update({key: [] for key in schema.SCALAR_FEATURE_KEYS})
    padding_values = {key: tf.constant(value, tf.int32)
                      for key, value in schema.PADDING_VALUES.items()}
    padding_values.update({key: tf.constant(0, tf.int32)
                           for key in schema.SCALAR_FEATURE_KEYS})
    if teacher_shape:
      padded_shapes[schema.TEACHER_LOG_PROBS] = [length] + teacher_shape
      padding_values[schema.TEACHER_LOG_PROBS] = tf.constant(0, tf.float32)
    dataset = batch_windows(
        dataset, size, padded_shapes, padding_values,
        lambda f: tf.shape(f[schema.INPUT_IDS])[0],
        None if fixed_length else bucket_boundaries,
        drop_remainder=fixed_length and (
            is_training or pad_to_full_batches is not None))
    return dataset.prefetch(tf.data.AUTOTUNE)

  return input_fn


def batch_windows(dataset: tf.data.Dataset, batch_size: int,
                  padded_shapes: Mapping[str, Any],
                  padding_values: Mapping[str, tf.Tensor],
                  length_fn: Callable[[Mapping[str, tf.Tensor]], tf.Tensor],
                  bucket_boundaries: Optional[Sequence[int]] = None,
                  drop_remainder: bool = False) -> tf.data.Dataset:
  """Padded batches of windows, bucketed by `length_fn` when boundaries given.

  The one batching rule of training windows: the feature file's input
  function and the encoder-feature cache's (`trainer.features.encoder_cache`,
  which buckets by the same window lengths) both use it, so a frozen run forms
  the same batches with or without the cache.

  Args:
    dataset: dict elements.
    batch_size: elements per batch.
    padded_shapes, padding_values: as `padded_batch` takes them.
    length_fn: element -> int32 [] length used for bucketing.
    bucket_boundaries: ascending ints, or None/empty for one padded batch
      stream.
    drop_remainder: drop a last partial batch (unbucketed only).
  """
  if bucket_boundaries:
    return dataset.bucket_by_sequence_length(
        element_length_func=length_fn,
        bucket_boundaries=list(bucket_boundaries),
        bucket_batch_sizes=[batch_size] * (len(bucket_boundaries) + 1),
        padded_shapes=padded_shapes, padding_values=padding_values)
  return dataset.padded_batch(
      batch_size, padded_shapes=padded_shapes, padding_values=padding_values,
      drop_remainder=drop_remainder)


def bucket_boundaries_for(path: str,
                          configured: Optional[Sequence[int]] = None,
                          multiple: int = features_lib.CPU_LENGTH_MULTIPLE
                          ) -> list[int]:
  """Length-bucket boundaries of a feature file: `configured`, else derived.

  Derived from the file's length histogram
  (`features.derive_bucket_boundaries`, bucket lengths rounded up to
  `multiple`), and logged with the most padding they can leave.
  """
  meta = read_feature_meta(path)
  if meta is None:  # no sidecar: nothing to derive from or to measure
    if not configured:
      raise ValueError(f"{path} has no length histogram ({path}.json); "
                       "rebuild its features or give --bucket_boundaries.")
    return list(configured)
  boundaries = (list(configured) if configured else
                features_lib.derive_bucket_boundaries(
                    meta["length_histogram"], multiple=multiple))
  logging.info("Length buckets for %s: %s (at most %.1f%% padding)",
               os.path.basename(path), boundaries,
               100 * features_lib.padding_bound(meta["length_histogram"],
                                                boundaries))
  return boundaries


def log_cache_use(path: str, count: int, reused: bool) -> None:
  """One log line saying whether features were reused or built."""
  if reused:
    logging.info("Reusing %d cached feature windows from %s", count, path)
  else:
    logging.info("Wrote %d feature windows to %s", count, path)


def cache_path(cache_dir: str, split: str, key: str) -> str:
  """`<cache_dir>/<split>-<key>.tfrecord`."""
  return os.path.join(cache_dir, f"{split}-{key}.tfrecord")
