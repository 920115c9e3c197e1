"""Encoder-feature cache: run a frozen BERT once, train the head every epoch.

With --freeze_bert restoring --init_checkpoint, BERT is a fixed function of
its input, so its outputs can be computed once (without dropout: the BERT
paper's feature-based approach, section 5.3). The head only reads the first
word-piece of each word (the softmax loss masks the other positions; CRF heads
gather word starts), so the cache keeps, per training window, the selected
encoder layers at its word starts plus their label ids:

    window  [CLS] john johan ##son lives [SEP]   word_positions -1 0 1 -1 2 -1
    cached  john, johan, lives: float16 [3, stored layers, H], labels [3]

Training feeds each window as the compact sequence of its words (input_mask
1, word_positions 0..2) through the same head code
(`model.build_head_on_cached_features`), so the loss equals the one through
the encoder run without dropout. Batches are formed exactly as without the
cache: the same shuffle (of window indices) and the same length buckets (by
each window's word-piece length, `input_pipeline.batch_windows`).

Files under --bert_feature_cache_dir (default <output_dir>/cache/), named by
`cache_key`, so runs on the same data, checkpoint and layers share a folder
safely:

    bert_features-<key>.f16        float16 rows [words, stored layers, H],
                                   raw C order, windows in build order
    bert_features-<key>.index.npz  row_offset int64 [N], num_words int32 [N],
                                   window_length int32 [N] (pieces), labels
                                   int32 [words] (row order)
    bert_features-<key>.json       sizes, settings and the SHA-256 of the
                                   two files above; written last, so a
                                   cache is complete iff it exists

Before reuse (`load_or_build`) both files must have their recorded size and
SHA-256, else the cache is rebuilt with a warning naming the file. Encoder
outputs beyond float16 stop the build (no inf is cached).

Each file is written under a temporary name and renamed into place, the .json
last. Two runs building the same cache at once both finish; the second to
finish keeps the first's files and deletes its own.

"mean" stores the averaged layers (one stored layer); concat and scalar_mix
store the layers themselves and share a cache. A cache of at most
--bert_feature_cache_gb is read into memory, a larger one from disk window by
window; both give the same batches, hence the same training. A random-access
file (not TFRecord shards) is what lets the disk path shuffle whole epochs in
bounded memory and match the in-memory path exactly.
"""

import dataclasses
import hashlib
import io
import json
import os
import threading
import time
import uuid
from typing import Any, Callable, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from trainer.features import cache_files
from trainer.features import input_pipeline
from trainer.model import heads as model_lib
from trainer import durations
from trainer import schema
from trainer.errors import UserError
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

# Bump when the cache layout changes so old caches are rebuilt.
CACHE_FORMAT_VERSION = 1
FILE_PREFIX = "bert_features"
# Seconds between progress lines while the cache is built.
PROGRESS_EVERY_SECS = 15.0
# Bytes per GB of --bert_feature_cache_gb.
BYTES_PER_GB = 1e9
# Temporary files untouched this long are left by a killed build; younger
# ones may belong to a build running now (in another run sharing the folder).
STALE_TEMP_SECONDS = 6 * 3600.0
# Per-window word-piece length, used for bucketing only.
_WINDOW_LENGTH = "window_length"
# The files of a cache whose SHA-256 the .json records.
CHECKED_SUFFIXES = (".f16", ".index.npz")


def stored_layer_count(head: model_lib.HeadConfig) -> int:
  """Layers stored per word: 1 for "mean" (stored averaged), else all."""
  return 1 if head.layer_combination == "mean" else len(head.bert_layers)


def cache_key(features_path: str, init_checkpoint: str,
              bert_config_file: str, head: model_lib.HeadConfig) -> str:
  """16 hex digits naming a cache: data, model, checkpoint and layers.

  The training feature file's name carries its own key (data, vocab, window
  settings, labels); the checkpoint is identified by its path and its index
  file's size and modification time; bert_config.json by its contents.
  """
  index = f"{init_checkpoint}.index"
  stat = tf.io.gfile.stat(index)
  settings = {
      "format": CACHE_FORMAT_VERSION,
      "features": os.path.basename(features_path),
      "init_checkpoint": os.path.abspath(init_checkpoint),
      "checkpoint_index": [stat.length, stat.mtime_nsec],
      "bert_layers": list(head.bert_layers),
      "stored": "mean" if head.layer_combination == "mean" else "layers",
  }
  return input_pipeline.cache_key([bert_config_file], settings)


def cache_prefix(cache_dir: str, key: str) -> str:
  """`<cache_dir>/bert_features-<key>` (add .f16, .index.npz, .json)."""
  return os.path.join(cache_dir, f"{FILE_PREFIX}-{key}")


def read_meta(prefix: str) -> Optional[dict[str, Any]]:
  """The cache's settings and sizes, or None when it is absent/incomplete."""
  if not tf.io.gfile.exists(f"{prefix}.json"):
    return None
  with tf.io.gfile.GFile(f"{prefix}.json") as reader:
    return json.load(reader)


def verified_meta(prefix: str
                  ) -> tuple[Optional[dict[str, Any]], Optional[str]]:
  """Checks a built cache before reuse: its .json, sizes and SHA-256s.

  Returns:
    (meta, None) for a complete, unchanged cache; (None, None) when none is
    built (no .json: absent or a build cut off); (None, why) when the cache
    cannot be trusted, `why` naming the file and what is wrong.

  Example: a .f16 overwritten with random float16 of the same size ->
  (None, "<prefix>.f16 does not match the SHA-256 in <prefix>.json ...").
  """
  marker = f"{prefix}.json"
  try:
    meta = read_meta(prefix)
    if meta is None:
      return None, None
    checksums = dict(meta.get("checksums") or {})
    expected_bytes = {".f16": int(meta["bytes"]), ".index.npz": None}
  except (ValueError, TypeError, AttributeError, KeyError) as error:
    return None, f"{marker} is unreadable ({type(error).__name__}: {error})"
  for suffix in CHECKED_SUFFIXES:
    problem = cache_files.file_problem(f"{prefix}{suffix}", marker,
                                       expected_bytes[suffix],
                                       checksums.get(suffix))
    if problem:
      return None, problem
  return meta, None


def load_or_build(prefix: str, build_fn: Callable[[], dict[str, Any]]
                  ) -> tuple[dict[str, Any], bool]:
  """The verified cache at `prefix`, else `build_fn()`'s; returns (meta, reused).

  A cache failing `verified_meta` is removed (.json first) and rebuilt, with
  a warning naming the file and the reason.
  """
  meta, problem = verified_meta(prefix)
  if meta is not None:
    return meta, True
  if problem:
    logging.warning("Rebuilding the BERT feature cache %s: %s.", prefix,
                    problem)
    cache_files.remove_files(
        [f"{prefix}{suffix}" for suffix in (".json",) + CHECKED_SUFFIXES],
        f"The BERT feature cache {prefix}",
        "pass another --bert_feature_cache_dir")
  return build_fn(), False


@dataclasses.dataclass
class _Windows:
  """Training windows read back from the feature file (numpy, unpadded)."""
  input_ids: list          # int32 [length] per window
  word_starts: list        # bool [length] per window
  labels: list             # int32 [words] per window

  @property
  def lengths(self) -> np.ndarray:
    return np.array([len(ids) for ids in self.input_ids], np.int32)


def read_windows(features_path: str) -> _Windows:
  """The windows of a feature TFRecord (`input_pipeline.write_features`)."""
  windows = _Windows([], [], [])
  for record in tf1.io.tf_record_iterator(features_path):
    feature = tf.train.Example.FromString(record).features.feature
    positions = np.array(feature[schema.WORD_POSITIONS].int64_list.value)
    labels = np.array(feature[schema.LABEL_IDS].int64_list.value, np.int32)
    windows.input_ids.append(
        np.array(feature[schema.INPUT_IDS].int64_list.value, np.int32))
    windows.word_starts.append(positions >= 0)
    windows.labels.append(labels[positions >= 0])
  return windows


def _encoder_graph(bert_config, head: model_lib.HeadConfig):
  """Placeholders and float16 [words, stored, H] word-start rows."""
  input_ids = tf1.placeholder(tf.int32, [None, None], name="input_ids")
  input_mask = tf1.placeholder(tf.int32, [None, None], name="input_mask")
  word_starts = tf1.placeholder(tf.bool, [None, None], name="word_starts")
  layers = model_lib.encoder_layers(
      bert_config, False, {schema.INPUT_IDS: input_ids,
                           schema.INPUT_MASK: input_mask,
                           schema.SEGMENT_IDS: tf.zeros_like(input_ids)},
      head.bert_layers)
  if head.layer_combination == "mean":
    stacked = model_lib.combine_layers(layers, "mean")[:, :, None, :]
  else:
    stacked = tf.stack(layers, axis=2)                    # [B, T, n, H]
  rows = tf.cast(tf.boolean_mask(stacked, word_starts), tf.float16)
  return (input_ids, input_mask, word_starts), rows


def _restore_bert(init_checkpoint: str) -> None:
  """Initialises every variable of the graph from the checkpoint."""
  variables = tf1.global_variables()
  assignment_map, restored = modeling.get_assignment_map_from_checkpoint(
      variables, init_checkpoint)
  missing = [v.op.name for v in variables if v.name not in restored]
  if missing:
    raise ValueError(f"--init_checkpoint={init_checkpoint} lacks BERT "
                     f"variables {missing[:3]} ({len(missing)} in all); pass "
                     "the checkpoint of --bert_config_file's model.")
  tf1.train.init_from_checkpoint(init_checkpoint, assignment_map)


def length_sorted_batches(lengths: np.ndarray,
                          batch_size: int) -> list[np.ndarray]:
  """Window indices grouped by similar length (least padding)."""
  order = np.argsort(lengths, kind="stable")
  return [order[start:start + batch_size]
          for start in range(0, len(order), batch_size)]


def _padded(windows: _Windows, lengths: np.ndarray,
            batch: np.ndarray) -> list[np.ndarray]:
  """[B, T] input_ids, input_mask and word starts of windows `batch`."""
  lengths = lengths[batch]
  feed = [np.zeros([len(batch), lengths.max()], dtype)
          for dtype in (np.int32, np.int32, np.bool_)]
  for row, window in enumerate(batch):
    feed[0][row, :lengths[row]] = windows.input_ids[window]
    feed[1][row, :lengths[row]] = 1
    feed[2][row, :lengths[row]] = windows.word_starts[window]
  return feed


class BuildProgress:
  """Logs windows done, rate and ETA at most every PROGRESS_EVERY_SECS.

  The ETA counts word-pieces, not windows: windows run shortest first.
  """

  def __init__(self, lengths: np.ndarray, what: str = "Caching BERT features"):
    self.what = what
    self.windows, self.pieces = len(lengths), int(lengths.sum())
    self.start = self.last = time.time()

  def update(self, windows: int, pieces: int) -> None:
    now = time.time()
    if now - self.last < PROGRESS_EVERY_SECS or windows >= self.windows:
      return
    elapsed = max(now - self.start, 1e-9)
    logging.info("%s: %d/%d windows (%.1f%%), %.1f windows/s, ETA %s",
                 self.what, windows, self.windows,
                 100.0 * windows / self.windows, windows / elapsed,
                 durations.format_seconds(
                     (self.pieces - pieces) * elapsed / max(pieces, 1)))
    self.last = now


def build(prefix: str, features_path: str, bert_config,
          init_checkpoint: str, head: model_lib.HeadConfig, batch_size: int,
          session_config: Optional[tf1.ConfigProto] = None) -> dict[str, Any]:
  """Runs the encoder over every window and writes the cache; returns meta.

  Args:
    prefix: `cache_prefix` of the cache.
    features_path: the training feature TFRecord.
    bert_config: `modeling.BertConfig`.
    init_checkpoint: checkpoint BERT is restored from.
    head: gives `bert_layers` and `layer_combination`.
    batch_size: windows per encoder batch (sorted by length).
    session_config: e.g. `trainer.training.estimator_lib.session_config`
      (XLA, AMP).
  """
  start = time.time()
  _remove_stale_temporaries(prefix, start)
  windows = read_windows(features_path)
  lengths = windows.lengths
  num_words = np.array([len(labels) for labels in windows.labels], np.int32)
  stored, hidden = stored_layer_count(head), bert_config.hidden_size
  nbytes = int(num_words.sum()) * stored * hidden * 2
  logging.info("Caching BERT features of %d training windows (%d words, "
               "layers %s, %d bytes) at %s", len(lengths), num_words.sum(),
               list(head.bert_layers), nbytes, prefix)
  row_offset = np.zeros([len(lengths)], np.int64)
  labels = []
  rows_sha256 = hashlib.sha256()
  unique = f"tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
  progress = BuildProgress(lengths)
  with tf.Graph().as_default():
    inputs, rows = _encoder_graph(bert_config, head)
    _restore_bert(init_checkpoint)
    with tf1.Session(config=session_config) as session, \
        tf.io.gfile.GFile(f"{prefix}.f16.{unique}", "wb") as writer:
      session.run(tf1.global_variables_initializer())
      written = done = pieces = 0
      for batch in length_sorted_batches(lengths, batch_size):
        for window in batch:  # rows come out window by window
          row_offset[window] = written
          written += num_words[window]
          labels.append(windows.labels[window])
        feed = dict(zip(inputs, _padded(windows, lengths, batch)))
        values = np.ascontiguousarray(session.run(rows, feed))
        _check_finite(values, batch, init_checkpoint, prefix)
        rows_sha256.update(values.tobytes())
        writer.write(values.tobytes())
        done, pieces = done + len(batch), pieces + int(lengths[batch].sum())
        progress.update(done, pieces)
  meta = {"format": CACHE_FORMAT_VERSION, "num_windows": len(lengths),
          "num_words": int(num_words.sum()), "stored_layers": stored,
          "hidden_size": hidden, "dtype": "float16", "bytes": nbytes,
          "bert_layers": list(head.bert_layers),
          "layer_combination": head.layer_combination,
          "init_checkpoint": init_checkpoint,
          "build_seconds": round(time.time() - start, 3),
          "checksums": {".f16": rows_sha256.hexdigest()}}
  return _commit(prefix, unique, meta, row_offset, num_words, lengths,
                 np.concatenate(labels or [np.zeros([0], np.int32)]))


def _check_finite(values: np.ndarray, batch: np.ndarray,
                  init_checkpoint: str, prefix: str) -> None:
  """Refuses encoder outputs that float16 cannot hold (inf) or NaN."""
  if np.isfinite(values).all():
    return
  raise UserError(
      f"The BERT outputs of --init_checkpoint={init_checkpoint} are not "
      f"finite in float16 for training windows {sorted(batch.tolist())[:5]} "
      f"(values beyond +-65504, or NaN), so the feature cache {prefix} cannot "
      "hold them: train with --nocache_bert_features, or check the "
      "checkpoint.")


def _remove_stale_temporaries(prefix: str, now: float) -> None:
  """Deletes temporary files of `prefix` older than STALE_TEMP_SECONDS."""
  for path in tf.io.gfile.glob(f"{prefix}.*.tmp-*"):
    if now - tf.io.gfile.stat(path).mtime_nsec / 1e9 > STALE_TEMP_SECONDS:
      tf.io.gfile.remove(path)


def _commit(prefix, unique, meta, row_offset, num_words, lengths, labels):
  """Writes the index and meta; renames each file into place, meta last.

  Returns:
    The meta of the cache now at `prefix`: `meta`, or that of another run
    that completed the same cache first (then this build's files go).
  """
  rows, index, marker = [f"{prefix}{suffix}.{unique}"
                         for suffix in (".f16", ".index.npz", ".json")]
  finished = read_meta(prefix)
  if finished is not None:
    logging.info("Another run completed BERT feature cache %s first; using "
                 "it.", prefix)
    tf.io.gfile.remove(rows)
    return finished
  buffer = io.BytesIO()
  np.savez(buffer, row_offset=row_offset, num_words=num_words,
           window_length=lengths, labels=labels)
  with tf.io.gfile.GFile(index, "wb") as writer:
    writer.write(buffer.getvalue())
  meta["checksums"][".index.npz"] = hashlib.sha256(
      buffer.getvalue()).hexdigest()
  with tf.io.gfile.GFile(marker, "w") as writer:
    json.dump(meta, writer, indent=2)
  for path in (rows, index, marker):
    tf.io.gfile.rename(path, path[:-len(unique) - 1], overwrite=True)
  return meta


class FeatureStore:
  """Random access to a built cache's windows, from memory or from disk."""

  def __init__(self, prefix: str, in_memory: bool):
    """Reads the index (and, in memory, every feature row) of `prefix`."""
    self.meta = read_meta(prefix)
    self.prefix = prefix
    self.in_memory = in_memory
    with tf.io.gfile.GFile(f"{prefix}.index.npz", "rb") as reader:
      index = np.load(io.BytesIO(reader.read()))
      self.row_offset = index["row_offset"]
      self.num_words = index["num_words"]
      self.window_lengths = index["window_length"]
      self.labels = index["labels"]
    self.stored_layers = self.meta["stored_layers"]
    self.hidden_size = self.meta["hidden_size"]
    self._row_bytes = self.stored_layers * self.hidden_size * 2
    self._rows = None
    self._file = None
    self._lock = threading.Lock()
    if in_memory:
      with tf.io.gfile.GFile(f"{prefix}.f16", "rb") as reader:
        self._rows = np.frombuffer(reader.read(), np.float16).reshape(
            [-1, self.stored_layers, self.hidden_size])
    else:
      self._file = tf.io.gfile.GFile(f"{prefix}.f16", "rb")

  @property
  def num_windows(self) -> int:
    return len(self.row_offset)

  def window(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(float16 [words, stored layers, H], int32 [words]) of window `index`."""
    start, count = int(self.row_offset[index]), int(self.num_words[index])
    labels = self.labels[start:start + count]
    if self._rows is not None:
      return self._rows[start:start + count], labels
    with self._lock:
      try:
        self._file.seek(start * self._row_bytes)
        data = self._file.read(count * self._row_bytes)
      except tf.errors.OutOfRangeError:
        data = b""
    if len(data) != count * self._row_bytes:  # changed after it was checked
      first = start * self._row_bytes
      raise UserError(
          f"{self.prefix}.f16 ends before window {index} (bytes {first} to "
          f"{first + count * self._row_bytes}): the BERT feature cache changed"
          f" during training. Remove it (rm {self.prefix}.json {self.prefix}"
          f".f16 {self.prefix}.index.npz) and rerun to rebuild it.")
    return (np.frombuffer(data, np.float16).reshape(
        [count, self.stored_layers, self.hidden_size]), labels)


def input_fn_builder(store: FeatureStore, batch_size: int,
                     bucket_boundaries: Optional[list[int]], seed: int,
                     shuffle_buffer: int = input_pipeline.SHUFFLE_BUFFER
                     ) -> Callable[..., tf.data.Dataset]:
  """Training `input_fn(params)` over cached windows, repeating forever.

  Batches are those of `input_pipeline.input_fn_builder` on the feature file
  (same shuffle of window indices, same buckets by word-piece length),
  padded to the batch's most words. Batch: `encoder_features` float16
  [B, W, stored layers, H]; int32 [B, W] `input_mask` (1 on words),
  `word_positions` (0..n-1, -1 on padding), `label_ids` (-1 on padding).
  """
  stored, hidden = store.stored_layers, store.hidden_size

  def lookup(index):
    features, labels = store.window(int(index))
    return features, labels, store.window_lengths[index]

  def to_features(index):
    features, labels, length = tf.numpy_function(
        lookup, [index], (tf.float16, tf.int32, tf.int32))
    features.set_shape([None, stored, hidden])
    labels.set_shape([None])
    length.set_shape([])
    words = tf.shape(labels)[0]
    return {schema.ENCODER_FEATURES: features,
            schema.INPUT_MASK: tf.ones([words], tf.int32),
            schema.WORD_POSITIONS: tf.range(words, dtype=tf.int32),
            schema.LABEL_IDS: labels, _WINDOW_LENGTH: length}

  padded_shapes = {schema.ENCODER_FEATURES: [None, stored, hidden],
                   schema.INPUT_MASK: [None], schema.WORD_POSITIONS: [None],
                   schema.LABEL_IDS: [None], _WINDOW_LENGTH: []}

  def input_fn(params=None, input_context=None):  # pylint: disable=unused-argument
    size = (params or {}).get("batch_size", batch_size)
    padding_values = {
        schema.ENCODER_FEATURES: tf.constant(0, tf.float16),
        schema.INPUT_MASK: tf.constant(0, tf.int32),
        schema.WORD_POSITIONS: tf.constant(schema.NO_WORD, tf.int32),
        schema.LABEL_IDS: tf.constant(schema.PAD_LABEL_ID, tf.int32),
        _WINDOW_LENGTH: tf.constant(0, tf.int32)}
    dataset = tf.data.Dataset.range(store.num_windows)
    dataset = dataset.shuffle(shuffle_buffer, seed=seed,
                              reshuffle_each_iteration=True).repeat()
    dataset = dataset.map(to_features, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    dataset = input_pipeline.batch_windows(
        dataset, size, padded_shapes, padding_values,
        lambda element: element[_WINDOW_LENGTH], bucket_boundaries)
    dataset = dataset.map(lambda batch: {key: value for key, value in
                                         batch.items()
                                         if key != _WINDOW_LENGTH})
    return dataset.prefetch(tf.data.AUTOTUNE)

  return input_fn
