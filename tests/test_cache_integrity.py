"""Every cache is checked before reuse: damaged caches are rebuilt, with a
warning naming the file, or refused where they cannot be rebuilt.

The cases of issue 23: the feature TFRecord truncated, corrupted or its
sidecar broken; the encoder-feature cache's .f16 truncated or overwritten
with inf or random finite float16, its .index.npz truncated, its .json
marker broken.
"""

import errno
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny_bert import bert_config_dict
from tests.tiny_bert import frozen_config
from tests.tiny_bert import make_config
from tests.tiny_bert import save_random_bert
from tests.tiny_bert import write_workspace
from trainer.errors import UserError
from trainer.features import encoder_cache
from trainer.features import input_pipeline
from trainer.model import heads as heads_lib
from trainer.run import train_lib
from trainer.run.run_inputs import RunInputs
from trainer.tf_compat import modeling
from trainer.training import hooks

tf1 = tf.compat.v1
TINY_BERT = bert_config_dict(num_hidden_layers=2)


def _read(path):
  with open(path, "rb") as reader:
    return reader.read()


def _write(path, data):
  with open(path, "wb") as writer:
    writer.write(data)


def _truncate(path):
  _write(path, _read(path)[:len(_read(path)) // 2])


def _flip_middle_byte(path):
  data = bytearray(_read(path))
  data[len(data) // 2] ^= 0xFF
  _write(path, bytes(data))


def _overwrite_float16(path, values):
  count = len(_read(path)) // 2
  _write(path, np.resize(np.asarray(values, np.float16), count).tobytes())


def _random_float16(path):
  count = len(_read(path)) // 2
  _write(path, np.random.default_rng(0).standard_normal(count)
         .astype(np.float16).tobytes())


def _break_json(path):
  _write(path, _read(path)[:-5])


def _drop_checksum(path, key):
  with open(path, encoding="utf-8") as reader:
    meta = json.load(reader)
  meta.pop(key)
  with open(path, "w", encoding="utf-8") as writer:
    json.dump(meta, writer)


# (name, file suffix, damage, what the warning says of that file)
FEATURE_FILE_DAMAGE = [
    ("truncated", "", _truncate, "{path} has "),
    ("corrupt record", "", _flip_middle_byte,
     "{path} does not match the SHA-256 in {path}.json"),
    ("broken sidecar", ".json", _break_json, "{path}.json is unreadable"),
    ("sidecar of an older version", ".json",
     lambda path: _drop_checksum(path, "sha256"),
     "{path}.json records no checksum of {path}"),
    ("no sidecar", ".json", os.remove, "{path} has no sidecar {path}.json"),
]


@pytest.mark.parametrize("name, suffix, damage, reason", FEATURE_FILE_DAMAGE,
                         ids=[case[0] for case in FEATURE_FILE_DAMAGE])
def test_a_damaged_feature_file_is_rebuilt_with_a_warning(
    workspace, caplog, name, suffix, damage, reason):  # pylint: disable=redefined-outer-name,unused-argument
  config = make_config(workspace, do_train=True)
  path, count = RunInputs(config).prepare().features_file("train")
  original = _read(path)
  damage(path + suffix)
  with caplog.at_level(logging.WARNING):
    again = RunInputs(config).prepare().features_file("train")
  assert again == (path, count)
  assert _read(path) == original
  assert (f"Rebuilding the train feature cache: {reason.format(path=path)}"
          in caplog.text)
  assert input_pipeline.verified_feature_meta(path)[1] is None


def test_a_feature_file_that_cannot_be_rebuilt_names_the_file(
    workspace, monkeypatch):  # pylint: disable=redefined-outer-name
  config = make_config(workspace, do_train=True)
  path, _ = RunInputs(config).prepare().features_file("train")
  _truncate(path)

  def read_only_folder(windows, target):
    raise PermissionError(errno.EACCES, "Permission denied", target)

  monkeypatch.setattr(input_pipeline, "write_features", read_only_folder)
  with pytest.raises(UserError) as refused:
    RunInputs(config).prepare().features_file("train")
  assert str(refused.value).startswith(
      f"The train feature cache {path} cannot be used ({path} has ")
  assert (f"could not be rebuilt: [Errno 13] Permission denied: '{path}'. "
          f"Remove it (rm {path} {path}.json) or make ") in str(refused.value)


def test_training_on_a_corrupt_tfrecord_rebuilds_it(workspace, caplog):  # pylint: disable=redefined-outer-name
  """Was: DataLossError (a traceback naming no file)."""
  config = make_config(workspace, do_train=True)
  path, _ = RunInputs(config).prepare().features_file("train")
  _flip_middle_byte(path)
  with caplog.at_level(logging.WARNING):
    summary = train_lib.run(config)
  assert summary["train_steps"] == 3
  assert f"Rebuilding the train feature cache: {path} does not match" in (
      caplog.text)


@pytest.fixture(scope="module")
def features(tmp_path_factory):
  """A 2-layer random BERT and the training feature file of the workspace."""
  folder = tmp_path_factory.mktemp("integrity")
  inputs = RunInputs(make_config(write_workspace(folder),
                                 do_train=True)).prepare()
  path, _ = inputs.features_file("train")
  return {"folder": folder, "features": path,
          "checkpoint": save_random_bert(str(folder / "bert_model.ckpt"),
                                         TINY_BERT)}


def _build_fn(features, prefix, checkpoint=None):  # pylint: disable=redefined-outer-name
  head = heads_lib.HeadConfig(bert_layers=(0, 1))
  return lambda: encoder_cache.build(
      prefix, features["features"], modeling.BertConfig(**TINY_BERT),
      checkpoint or features["checkpoint"], head, 3)


ENCODER_CACHE_DAMAGE = [
    ("truncated f16", ".f16", _truncate, "{prefix}.f16 has "),
    ("inf values", ".f16", lambda path: _overwrite_float16(path, [np.inf]),
     "{prefix}.f16 does not match the SHA-256 in {prefix}.json"),
    ("random finite values", ".f16", _random_float16,
     "{prefix}.f16 does not match the SHA-256 in {prefix}.json"),
    ("truncated index", ".index.npz", _truncate,
     "{prefix}.index.npz does not match the SHA-256 in {prefix}.json"),
    ("missing index", ".index.npz", os.remove, "{prefix}.index.npz is missing"),
    ("broken marker", ".json", _break_json, "{prefix}.json is unreadable"),
    ("marker of an older version", ".json",
     lambda path: _drop_checksum(path, "checksums"),
     "{prefix}.json records no checksum of {prefix}.f16"),
]


@pytest.mark.parametrize("name, suffix, damage, reason", ENCODER_CACHE_DAMAGE,
                         ids=[case[0] for case in ENCODER_CACHE_DAMAGE])
def test_a_damaged_encoder_cache_is_rebuilt_with_a_warning(
    features, caplog, name, suffix, damage, reason):  # pylint: disable=redefined-outer-name
  prefix = str(features["folder"] / name.replace(" ", "_"))
  meta, reused = encoder_cache.load_or_build(prefix,
                                             _build_fn(features, prefix))
  assert not reused
  assert encoder_cache.load_or_build(prefix, None) == (meta, True)
  original = {end: _read(prefix + end) for end in (".f16", ".index.npz")}
  damage(prefix + suffix)
  with caplog.at_level(logging.WARNING):
    rebuilt, reused = encoder_cache.load_or_build(
        prefix, _build_fn(features, prefix))
  assert not reused
  assert (f"Rebuilding the BERT feature cache {prefix}: "
          f"{reason.format(prefix=prefix)}") in caplog.text
  assert {end: _read(prefix + end) for end in original} == original
  assert rebuilt["checksums"] == meta["checksums"]
  assert encoder_cache.verified_meta(prefix) == (rebuilt, None)


def test_a_cache_that_cannot_be_removed_is_refused_naming_it(
    features, monkeypatch):  # pylint: disable=redefined-outer-name
  prefix = str(features["folder"] / "undeletable")
  encoder_cache.load_or_build(prefix, _build_fn(features, prefix))
  _random_float16(prefix + ".f16")

  def read_only(path):
    raise PermissionError(errno.EACCES, "Permission denied", path)

  monkeypatch.setattr(tf.io.gfile, "remove", read_only)
  with pytest.raises(UserError) as refused:
    encoder_cache.load_or_build(prefix, _build_fn(features, prefix))
  assert str(refused.value) == (
      f"The BERT feature cache {prefix} is damaged and cannot be rebuilt: "
      f"deleting {prefix}.json failed ([Errno 13] Permission denied: "
      f"'{prefix}.json'). Remove it by hand (rm {prefix}.json {prefix}.f16 "
      f"{prefix}.index.npz) or pass another --bert_feature_cache_dir, then "
      "rerun.")


def test_encoder_outputs_beyond_float16_are_refused(features):  # pylint: disable=redefined-outer-name
  """A checkpoint whose last layer norm scales by 1e6: inf in float16."""
  checkpoint = str(features["folder"] / "huge" / "bert_model.ckpt")
  with tf.Graph().as_default():
    ids = tf1.placeholder(tf.int32, [None, None])
    modeling.BertModel(modeling.BertConfig(**TINY_BERT), False, ids)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      gamma = [v for v in tf1.global_variables() if v.op.name ==
               "bert/encoder/layer_1/output/LayerNorm/gamma"][0]
      session.run(gamma.assign(tf.fill(tf.shape(gamma), 1e6)))
      tf1.train.Saver().save(session, checkpoint)
  prefix = str(features["folder"] / "overflow")
  with pytest.raises(UserError, match=(
      f"The BERT outputs of --init_checkpoint={checkpoint} are not finite "
      "in float16 for training windows \\[.*\\] \\(values beyond \\+-65504, "
      f"or NaN\\), so the feature cache {prefix} cannot hold them: train with "
      "--nocache_bert_features")):
    encoder_cache.load_or_build(prefix, _build_fn(features, prefix,
                                                  checkpoint))
  assert encoder_cache.read_meta(prefix) is None


def test_a_cache_cut_during_training_names_the_file(features):  # pylint: disable=redefined-outer-name
  prefix = str(features["folder"] / "cut_later")
  encoder_cache.load_or_build(prefix, _build_fn(features, prefix))
  store = encoder_cache.FeatureStore(prefix, in_memory=False)
  _write(prefix + ".f16", b"")
  last = store.num_windows - 1
  first = int(store.row_offset[last]) * 2 * 2 * 32  # 2 layers, H 32, 2 bytes
  end = first + int(store.num_words[last]) * 2 * 2 * 32
  with pytest.raises(UserError, match=(
      f"{prefix}.f16 ends before window {last} \\(bytes {first} to {end}\\): "
      "the BERT feature cache changed during training. Remove it \\(rm "
      f"{prefix}.json "
      f"{prefix}.f16 {prefix}.index.npz\\) and rerun to rebuild it.")):
    store.window(last)


def test_random_values_in_the_cache_no_longer_train_a_worse_model(
    frozen, monkeypatch, caplog):  # pylint: disable=redefined-outer-name
  """Was: "Reusing BERT feature cache" and a loss of 1.70 instead of 1.12."""
  losses = {}

  class Recorder(hooks.ProgressHook):

    def after_run(self, run_context, run_values):
      losses.setdefault(name, []).append(float(run_values.results[1]))

  monkeypatch.setattr(hooks, "ProgressHook", Recorder)
  shared = str(frozen["tmp"] / "shared_cache")
  for name in ("clean", "damaged"):
    config = frozen_config(frozen, name, head="softmax", bert_layers=[0, 1],
                           num_train_steps=3, bert_feature_cache_dir=shared)
    if name == "damaged":
      (prefix,) = [path[:-len(".f16")] for path in tf.io.gfile.glob(
          os.path.join(shared, "*.f16"))]
      _random_float16(prefix + ".f16")
    with caplog.at_level(logging.WARNING):
      summary = train_lib.run(config)
  assert not summary["bert_feature_cache"]["reused"]
  assert (f"Rebuilding the BERT feature cache {prefix}: {prefix}.f16 does "
          "not match the SHA-256") in caplog.text
  assert len(losses["clean"]) == 3
  np.testing.assert_allclose(losses["damaged"], losses["clean"], rtol=1e-5)
