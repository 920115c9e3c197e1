"""trainer.features.encoder_cache: building, storing and reading cached BERT
features.
"""

import glob
import json
import os
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny_bert import checkpoint_variables
from tests.tiny_bert import frozen_config
from tests.tiny_bert import save_random_bert
from trainer.run import config as config_lib
from trainer.features import encoder_cache
from trainer.features import windows as windows_lib
from trainer.features import input_pipeline
from trainer.model import heads as heads_lib
from trainer import schema
from trainer.run import train_lib
from trainer.tf_compat import modeling
from trainer.run import cached_input

tf1 = tf.compat.v1

TINY_BERT = dict(vocab_size=20, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=37,
                 max_position_embeddings=16)


def _window(index, ids, labels, positions):
  length = len(ids)
  return windows_lib.WindowFeatures(index, 0, tuple(ids), (1,) * length,
                                 (0,) * length, tuple(labels),
                                 tuple(positions), (0,) * length)


# Seven windows: words at positions >= 0 (labels there); window 2 has a
# continuation piece, window 3 only one (no word starts at all).
WINDOWS = [
    _window(0, [2, 5, 6, 7, 3], [-1, 1, 0, 2, -1], [-1, 0, 1, 2, -1]),
    _window(1, [2, 8, 3], [-1, 2, -1], [-1, 0, -1]),
    _window(2, [2, 9, 10, 3], [-1, 0, -1, -1], [-1, 0, -1, -1]),
    _window(3, [2, 11, 3], [-1, -1, -1], [-1, -1, -1]),
    _window(4, [2, 12, 13, 14, 15, 16, 3], [-1, 1, 1, 2, 1, 0, -1],
            [-1, 0, 1, 2, 3, 4, -1]),
    _window(5, [2, 17, 3], [-1, 0, -1], [-1, 0, -1]),
    _window(6, [2, 5, 18, 3], [-1, 2, 1, -1], [-1, 0, 1, -1]),
]
WORDS = [3, 1, 1, 0, 5, 1, 2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """A tiny 2-layer BERT checkpoint, its config and a feature file."""
  folder = tmp_path_factory.mktemp("cache")
  prefix = save_random_bert(str(folder / "bert_model.ckpt"), TINY_BERT)
  bert_config_file = folder / "bert_config.json"
  bert_config_file.write_text(json.dumps(TINY_BERT))
  features_path = str(folder / "train-0123456789abcdef.tfrecord")
  input_pipeline.write_features(WINDOWS, features_path)
  return {"checkpoint": prefix, "bert_config_file": str(bert_config_file),
          "features": features_path, "folder": folder}


def _reference_layers(checkpoint, layers):
  """float32 [words, n, H] per window: each window alone, no padding."""
  with tf.Graph().as_default():
    ids = tf1.placeholder(tf.int32, [1, None])
    bert = modeling.BertModel(modeling.BertConfig(**TINY_BERT), False, ids)
    tf1.train.init_from_checkpoint(checkpoint, {"bert/": "bert/"})
    stacked = tf.stack([bert.get_all_encoder_layers()[i] for i in layers],
                       axis=2)[0]
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      outputs = [session.run(stacked, {ids: [window.input_ids]})
                 for window in WINDOWS]
  return [output[np.array(window.word_positions) >= 0]
          for output, window in zip(outputs, WINDOWS)]


def _build(files, head, name, batch_size=3):
  prefix = str(files["folder"] / name)
  meta = encoder_cache.build(
      prefix, files["features"], modeling.BertConfig(**TINY_BERT),
      files["checkpoint"], head, batch_size)
  return prefix, meta


@pytest.mark.parametrize("combination", ["concat", "mean"])
def test_build_stores_word_start_layers_and_labels(files, combination):
  head = heads_lib.HeadConfig(bert_layers=(-1, 0),
                              layer_combination=combination)
  prefix, meta = _build(files, head, f"built-{combination}")
  stored = 1 if combination == "mean" else 2
  assert meta["num_windows"] == 7 and meta["num_words"] == sum(WORDS) == 13
  assert meta["stored_layers"] == stored and meta["hidden_size"] == 32
  assert meta["bytes"] == 13 * stored * 32 * 2
  assert os.path.getsize(f"{prefix}.f16") == meta["bytes"]
  assert encoder_cache.read_meta(prefix) == meta
  reference = _reference_layers(files["checkpoint"], [1, 0])
  store = encoder_cache.FeatureStore(prefix, in_memory=True)
  assert store.num_windows == 7
  assert store.window_lengths.tolist() == [len(w.input_ids) for w in WINDOWS]
  for index, window in enumerate(WINDOWS):
    rows, labels = store.window(index)
    assert rows.dtype == np.float16 and rows.shape == (WORDS[index], stored,
                                                      32)
    assert labels.tolist() == [l for l in window.label_ids if l >= 0]
    want = reference[index]
    if combination == "mean":
      want = want.mean(axis=1, keepdims=True)
    # float16 of the float32 encoder output.
    np.testing.assert_allclose(rows.astype(np.float32), want, rtol=1e-3,
                               atol=1e-3)


def test_memory_and_disk_stores_read_the_same_windows(files):
  head = heads_lib.HeadConfig(bert_layers=(0, 1),
                              layer_combination="scalar_mix")
  prefix, _ = _build(files, head, "both", batch_size=2)
  memory = encoder_cache.FeatureStore(prefix, in_memory=True)
  disk = encoder_cache.FeatureStore(prefix, in_memory=False)
  assert memory.in_memory and not disk.in_memory
  for index in range(7):
    (rows, labels), (disk_rows, disk_labels) = (memory.window(index),
                                                disk.window(index))
    np.testing.assert_array_equal(disk_rows, rows)
    np.testing.assert_array_equal(disk_labels, labels)
  # Different batching while building gives the same rows (up to float16
  # rounding of float32 sums in other shapes).
  other, _ = _build(files, head, "other-batches", batch_size=7)
  for index in range(7):
    np.testing.assert_allclose(
        encoder_cache.FeatureStore(other, True).window(index)[0]
        .astype(np.float32), memory.window(index)[0].astype(np.float32),
        atol=2e-3)


def _word_labels(batch):
  """Per row: the labels of its words, from either kind of batch."""
  if schema.ENCODER_FEATURES in batch:
    words = batch[schema.INPUT_MASK] > 0
  else:
    words = batch[schema.WORD_POSITIONS] >= 0
  return [row[mask].tolist() for row, mask in zip(batch[schema.LABEL_IDS],
                                                  words)]


@pytest.mark.parametrize("boundaries", [[5], None])
def test_cached_batches_are_the_feature_file_batches(files, boundaries):
  head = heads_lib.HeadConfig(bert_layers=(-1,))
  prefix, _ = _build(files, head, "batches")
  store = encoder_cache.FeatureStore(prefix, in_memory=False)
  plain = input_pipeline.input_fn_builder(
      files["features"], is_training=True, batch_size=2, max_seq_length=8,
      fixed_length=boundaries is None, bucket_boundaries=boundaries,
      seed=3)({})
  cached = encoder_cache.input_fn_builder(store, 2, boundaries, seed=3)({})
  batches = 0
  for plain_batch, cached_batch in zip(plain.as_numpy_iterator(),
                                       cached.as_numpy_iterator()):
    assert _word_labels(cached_batch) == _word_labels(plain_batch)
    words = max(len(row) for row in _word_labels(plain_batch))
    assert cached_batch[schema.ENCODER_FEATURES].shape == (2, words, 1, 32)
    assert cached_batch[schema.ENCODER_FEATURES].dtype == np.float16
    width = cached_batch[schema.INPUT_MASK].shape[1]
    for mask, positions in zip(cached_batch[schema.INPUT_MASK],
                               cached_batch[schema.WORD_POSITIONS]):
      count = int(mask.sum())
      assert positions.tolist() == list(range(count)) + [-1] * (width - count)
    assert sorted(cached_batch) == sorted([
        schema.ENCODER_FEATURES, schema.INPUT_MASK, schema.WORD_POSITIONS,
        schema.LABEL_IDS])
    batches += 1
    if batches == 10:  # almost three epochs
      break
  assert batches == 10


def test_cache_key_tracks_layers_checkpoint_and_data(files, tmp_path):
  def key(head, checkpoint=files["checkpoint"], path=files["features"]):
    return encoder_cache.cache_key(path, checkpoint,
                                   files["bert_config_file"], head)

  concat = heads_lib.HeadConfig(bert_layers=(-2, -1))
  base = key(concat)
  assert len(base) == 16 and key(concat) == base
  # concat and scalar_mix store the same layers; mean stores their average.
  assert key(heads_lib.HeadConfig(bert_layers=(-2, -1),
                              layer_combination="scalar_mix")) == base
  assert key(heads_lib.HeadConfig(bert_layers=(-2, -1),
                              layer_combination="mean")) != base
  assert key(heads_lib.HeadConfig(bert_layers=(-1,))) != base
  assert key(concat, path="/x/train-fedcba9876543210.tfrecord") != base
  # Another checkpoint (here: the same one, re-saved later) is another key.
  copy = str(tmp_path / "bert_model.ckpt")
  for suffix in (".index", ".data-00000-of-00001"):
    tf.io.gfile.copy(files["checkpoint"] + suffix, copy + suffix)
  copied = key(concat, checkpoint=copy)
  assert copied != base
  # Overwritten in place: the index file's time (or size) changes the key.
  stat = os.stat(copy + ".index")
  os.utime(copy + ".index", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  assert key(concat, checkpoint=copy) not in (base, copied)


def _estimator(model_dir):
  def model_fn(features, labels, mode):  # pylint: disable=unused-argument
    raise AssertionError("never called")
  return tf.estimator.Estimator(model_fn, model_dir=str(model_dir))


def _save_model_checkpoint(model_dir, files, step, change_bert):
  """A model_dir checkpoint: the tiny BERT (maybe changed) at `step`."""
  reader = tf.train.load_checkpoint(files["checkpoint"])
  with tf.Graph().as_default():
    variables = []
    for name, _ in tf.train.list_variables(files["checkpoint"]):
      value = reader.get_tensor(name)
      if change_bert and name == "bert/embeddings/word_embeddings":
        value = value + 1.0
      variables.append(tf1.Variable(value, name=name))
    step_variable = tf1.train.get_or_create_global_step()
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      step_variable.load(step, session)
      tf1.train.Saver().save(session, str(model_dir / "model.ckpt"),
                             global_step=step)


def test_unavailable_reason(files, tmp_path):
  config = config_lib.NerConfig(init_checkpoint=files["checkpoint"])
  estimator = _estimator(tmp_path / "fresh")
  assert cached_input.unavailable_reason(config, estimator, 10) is None
  for off in (dict(cache_bert_features=False), dict(freeze_bert=False),
              dict(init_checkpoint=None)):
    assert cached_input.unavailable_reason(
        config_lib.NerConfig(**dict(dict(init_checkpoint=files["checkpoint"]),
                                    **off)), estimator, 10).startswith("off")
  resumed = tmp_path / "resumed"
  _save_model_checkpoint(resumed, files, 4, change_bert=False)
  assert cached_input.unavailable_reason(config, _estimator(resumed),
                                          10) is None
  assert cached_input.unavailable_reason(
      config, _estimator(resumed), 4).startswith("not needed:")
  changed = tmp_path / "changed"
  _save_model_checkpoint(changed, files, 4, change_bert=True)
  assert "differs from --init_checkpoint" in cached_input.unavailable_reason(
      config, _estimator(changed), 10)


def test_build_progress_logs_rate_and_piece_based_eta(monkeypatch):
  lines, now = [], [1000.0]
  monkeypatch.setattr(encoder_cache.time, "time", lambda: now[0])
  monkeypatch.setattr(encoder_cache.logging, "info",
                      lambda message, *args: lines.append(message % args))
  # Four windows of 10, 10, 40 and 40 pieces (100 in all).
  progress = encoder_cache.BuildProgress(np.array([10, 10, 40, 40]))
  for clock, windows, pieces in ((1010.0, 2, 20),   # 10 s < 15 s: quiet
                                 (1020.0, 2, 20),   # 20 pieces in 20 s
                                 (1030.0, 3, 60),   # 10 s after the last line
                                 (1040.0, 4, 100)):  # done: the caller logs
    now[0] = clock
    progress.update(windows, pieces)
  # 80 pieces left at 1 piece/s -> 80 s, though half the windows are done.
  assert lines == ["Caching BERT features: 2/4 windows (50.0%), 0.1 "
                   "windows/s, ETA 0h01m20s"]


def _assert_reads_like(prefix, reference_prefix):
  """The cache at `prefix` holds the windows of the one at reference_prefix."""
  store = encoder_cache.FeatureStore(prefix, in_memory=True)
  reference = encoder_cache.FeatureStore(reference_prefix, in_memory=True)
  assert store.meta["num_words"] == reference.meta["num_words"] == 13
  for index in range(7):
    np.testing.assert_array_equal(store.window(index)[0],
                                  reference.window(index)[0])
    np.testing.assert_array_equal(store.window(index)[1],
                                  reference.window(index)[1])


def test_a_second_build_keeps_the_cache_completed_first(files):
  head = heads_lib.HeadConfig(bert_layers=(0,))
  prefix, first = _build(files, head, "twice")
  paths = [f"{prefix}{suffix}" for suffix in (".f16", ".index.npz", ".json")]
  mtimes = [os.stat(path).st_mtime_ns for path in paths]
  again = encoder_cache.build(prefix, files["features"],
                              modeling.BertConfig(**TINY_BERT),
                              files["checkpoint"], head, 2)
  assert again == first == encoder_cache.read_meta(prefix)
  assert [os.stat(path).st_mtime_ns for path in paths] == mtimes
  assert glob.glob(f"{prefix}.*tmp*") == []


def test_concurrent_builds_of_one_key_leave_one_complete_cache(files):
  head = heads_lib.HeadConfig(bert_layers=(-1,))
  reference, _ = _build(files, head, "alone")
  prefix = str(files["folder"] / "raced")
  metas, errors = [], []

  def build():
    try:
      metas.append(encoder_cache.build(
          prefix, files["features"], modeling.BertConfig(**TINY_BERT),
          files["checkpoint"], head, 3))
    except Exception as error:  # pylint: disable=broad-except
      errors.append(error)

  threads = [threading.Thread(target=build) for _ in range(2)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert errors == [] and len(metas) == 2
  assert encoder_cache.read_meta(prefix) in metas
  assert glob.glob(f"{prefix}.*tmp*") == []
  _assert_reads_like(prefix, reference)


def test_build_removes_only_stale_temporaries(files):
  head = heads_lib.HeadConfig(bert_layers=(0, 1), layer_combination="mean")
  prefix = str(files["folder"] / "leftovers")
  stale = f"{prefix}.f16.tmp-1-killed"
  running = f"{prefix}.f16.tmp-2-running"
  for path in (stale, running):
    with open(path, "wb") as writer:
      writer.write(b"partial")
  old = time.time() - encoder_cache.STALE_TEMP_SECONDS - 60
  os.utime(stale, (old, old))
  _build(files, head, "leftovers")
  assert not os.path.exists(stale)
  assert os.path.exists(running)  # another run's build in progress
  assert encoder_cache.read_meta(prefix)["num_words"] == 13


@pytest.mark.slow  # end to end, tens of seconds
def test_runs_sharing_a_cache_dir_reuse_it_and_train_alike(frozen, caplog):  # pylint: disable=redefined-outer-name
  caplog.set_level("INFO", logger="absl")
  shared = str(frozen["tmp"] / "shared_cache")
  finals, summaries, logs = {}, {}, {}
  for name in ("first", "second"):
    caplog.clear()
    config = frozen_config(
        frozen, name, head="bilstm_crf", bert_layers=[0, 1],
        num_train_steps=4, bert_feature_cache_dir=shared)
    summaries[name] = train_lib.run(config)["bert_feature_cache"]
    logs[name] = caplog.text
    finals[name] = checkpoint_variables(
        tf.train.latest_checkpoint(config.output_dir))
    # Nothing of the shared cache under the run's own cache folder.
    assert glob.glob(os.path.join(config.output_dir, "cache",
                                  "bert_features-*")) == []
  assert not summaries["first"]["reused"] and summaries["second"]["reused"]
  assert summaries["first"]["path"] == summaries["second"]["path"]
  assert os.path.dirname(summaries["second"]["path"]) == shared
  assert "Reusing BERT feature cache " + shared in logs["second"]
  assert "Caching BERT features" in logs["first"]
  assert "Caching BERT features" not in logs["second"]
  heads = [name for name in finals["first"] if name.startswith("ner_head/")]
  assert len(heads) >= 9
  # Same batches, same order: equal up to thread-ordered float sums.
  for name in heads:
    np.testing.assert_allclose(finals["second"][name], finals["first"][name],
                               rtol=0, atol=1e-6)
