"""The frozen-encoder recipe end to end: layers, feature cache, defaults.

Tiny 2-layer BERT checkpoints, a few steps each (the `frozen` fixture
of tests/tiny_bert.py).
"""

import glob
import json
import os
import shutil

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from tests.pipeline_fixtures import assert_served_like_predict
from tests.tiny_bert import checkpoint_variables
from tests.tiny_bert import frozen_config
from trainer.run import cli
from trainer.run import config as config_lib
from trainer.training import estimator_lib
from trainer.training import hooks
from trainer.model import heads as heads_lib
from trainer.run import train_lib
from trainer.errors import UserError

tf1 = tf.compat.v1
FLAGS = flags.FLAGS


@pytest.fixture()
def losses(monkeypatch):
  """Every training step's (global step, loss), from the model_fn's hook."""
  recorded = []

  class Recorder(hooks.ProgressHook):

    def after_run(self, run_context, run_values):
      recorded.append(float(run_values.results[1]))

  monkeypatch.setattr(hooks, "ProgressHook", Recorder)
  return recorded


@pytest.mark.parametrize("head, layers, combination", [
    ("softmax", [-2, -1], "concat"),
    pytest.param("bilstm_crf", [0, 1], "scalar_mix", marks=pytest.mark.slow)])
def test_cached_losses_equal_the_frozen_encoder_without_dropout(
    frozen, losses, head, layers, combination):
  settings = dict(bert_config_file=frozen["no_dropout_config"], head=head,
                  bert_layers=layers, layer_combination=combination,
                  head_dropout=0.0, num_train_steps=4, learning_rate=1e-3,
                  save_checkpoints_steps=1, keep_checkpoint_max=10)
  encoder = frozen_config(frozen, "encoder", cache_bert_features=False, **settings)
  summary = train_lib.run(encoder)
  assert "bert_feature_cache" not in summary
  through_encoder = list(losses)
  # The cached run starts from the same step-0 checkpoint (same head
  # initialisation; the graphs differ, so seeded initialisers would not).
  cached = frozen_config(frozen, "cached", **settings)
  os.makedirs(cached.output_dir)
  for path in glob.glob(os.path.join(encoder.output_dir, "model.ckpt-0.*")):
    shutil.copy(path, cached.output_dir)
  tf1.train.update_checkpoint_state(
      cached.output_dir, os.path.join(cached.output_dir, "model.ckpt-0"))
  losses.clear()
  summary = train_lib.run(cached)
  assert summary["bert_feature_cache"]["in_memory"]
  assert len(through_encoder) == len(losses) == 4
  # Equal up to the float16 storage of the features (Adam's m / sqrt(v)
  # amplifies rounding in tiny gradients, hence the small step size).
  assert through_encoder[0] > 0 and through_encoder[-1] != through_encoder[0]
  np.testing.assert_allclose(losses, through_encoder, rtol=0, atol=1e-4)


def test_cached_training_keeps_bert_and_serves_like_predict(frozen):
  config = frozen_config(frozen, "out", head="crf", bert_layers=[-2, -1],
                   layer_combination="scalar_mix", do_predict=True,
                   do_export=True, num_train_steps=8,
                   save_checkpoints_steps=1, keep_checkpoint_max=20)
  summary = train_lib.run(config)
  assert summary["bert_feature_cache"]["windows"] == 7
  initial = checkpoint_variables(frozen["checkpoint"])
  final = checkpoint_variables(tf.train.latest_checkpoint(config.output_dir))
  start = checkpoint_variables(os.path.join(config.output_dir, "model.ckpt-0"))
  bert_names = [name for name in initial if name.startswith("bert/")]
  assert len(bert_names) == 39  # 5 embeddings + 2 x 16 + 2 pooler
  for name in bert_names:
    np.testing.assert_array_equal(final[name], initial[name])
  assert not any(n.startswith("bert/") and "adam" in n for n in final)
  for name in ("ner_head/scalar_mix/layer_weights", "ner_head/scalar_mix/gamma",
               "ner_head/crf/transitions"):
    assert not np.array_equal(final[name], start[name]), name
  # 7 windows, batch 2: epochs end after steps 4 and 7.
  timing = hooks.epoch_seconds(os.path.join(config.output_dir,
                                            "train_timing.json"))
  assert sorted(timing) == [1, 2] and all(s > 0 for s in timing.values())

  with open(os.path.join(summary["export"], "assets.extra",
                         "ner_config.json"), encoding="utf-8") as reader:
    head = json.load(reader)["head"]
  assert (head["bert_layers"], head["layer_combination"]) == (
      [-2, -1], "scalar_mix")
  assert_served_like_predict(summary)


def _cache_files(output_dir):
  return sorted(glob.glob(os.path.join(output_dir, "cache",
                                       "bert_features-*")))


def test_disk_cache_trains_like_memory_and_reruns_reuse_it(frozen, caplog):
  caplog.set_level("INFO", logger="absl")
  finals = {}
  for name, gigabytes in (("memory", 4.0), ("disk", 1e-12)):
    config = frozen_config(frozen, name, head="bilstm_crf", bert_layers=[0, 1],
                     num_train_steps=5, bert_feature_cache_gb=gigabytes)
    summary = train_lib.run(config)
    cache = summary["bert_feature_cache"]
    assert cache["in_memory"] == (name == "memory")
    assert cache["bytes"] == 50 * 2 * 32 * 2  # words x layers x H x float16
    assert not cache["reused"]
    finals[name] = checkpoint_variables(tf.train.latest_checkpoint(config.output_dir))
  assert "read from memory" in caplog.text and "read from disk" in caplog.text
  assert "without dropout" in caplog.text
  heads = [name for name in finals["memory"] if name.startswith("ner_head/")]
  assert len(heads) >= 9
  # The same batches in the same order; only float sums whose order depends
  # on thread scheduling may differ (seen: 7e-9). Other batches would move
  # the weights by orders of magnitude more.
  for name in heads:
    np.testing.assert_allclose(finals["disk"][name], finals["memory"][name],
                               rtol=0, atol=1e-6)

  # A rerun with more steps reuses the cache on disk.
  files = _cache_files(config.output_dir)
  assert [os.path.basename(f).split(".", 1)[1] for f in files] == [
      "f16", "index.npz", "json"]
  mtimes = [os.path.getmtime(path) for path in files]
  caplog.clear()
  config.num_train_steps = 7
  summary = train_lib.run(config)
  assert summary["bert_feature_cache"]["reused"]
  assert "Reusing BERT feature cache" in caplog.text
  assert _cache_files(config.output_dir) == files
  assert [os.path.getmtime(path) for path in files] == mtimes
  assert tf.train.latest_checkpoint(config.output_dir).endswith("ckpt-7")


@pytest.mark.slow  # end to end, tens of seconds
def test_changed_bert_in_output_dir_turns_the_cache_off(frozen, caplog):
  caplog.set_level("INFO", logger="absl")
  config = frozen_config(frozen, "out", freeze_bert=False, num_train_steps=2)
  train_lib.run(config)
  config.freeze_bert, config.num_train_steps = True, 4
  summary = train_lib.run(config)
  assert "bert_feature_cache" not in summary
  assert "differs from --init_checkpoint" in caplog.text
  assert _cache_files(config.output_dir) == []


def test_config_checks_layers_combination_and_budget(frozen):
  def check(**overrides):
    frozen_config(frozen, "out", **overrides).validate()

  check(bert_layers=[0, -1], layer_combination="mean")
  with pytest.raises(UserError, match=r"^--bert_layers=-3: the encoder has 2 "
                     r"layers.*\(--bert_config_file=.*_0\.1\.json\)"):
    check(bert_layers=[-3])
  with pytest.raises(UserError, match=r"^--bert_layers=1,-1 names a layer "
                     "twice"):
    check(bert_layers=[1, -1])
  with pytest.raises(UserError, match=r"^--layer_combination='sum' is not one "
                     r"of concat, scalar_mix, mean\.$"):
    check(layer_combination="sum")
  with pytest.raises(UserError, match=r"^--bert_feature_cache_gb=-1\.0 must be "
                     r">= 0"):
    check(bert_feature_cache_gb=-1.0)


def test_head_config_carries_the_layers():
  head = estimator_lib.head_config(config_lib.NerConfig(
      bert_layers=[-4, -1], layer_combination="scalar_mix"), {"[PAD]": 0})
  assert head.bert_layers == (-4, -1)
  assert head.layer_combination == "scalar_mix"
  assert heads_lib.HeadConfig(**head.as_json()).bert_layers == (-4, -1)


def test_frozen_defaults_fill_only_unset_settings(frozen):
  config = frozen_config(frozen, "out")
  applied = config_lib.apply_frozen_defaults(config,
                                             lambda name: name == "head")
  # The 2-layer model has no layers -4 and -3.
  assert applied == {"bert_layers": [-2, -1], "layer_combination": "concat",
                     "lstm_layers": 1, "learning_rate": 2e-3,
                     "num_train_epochs": 10.0}
  assert (config.bert_layers, config.head, config.lstm_layers) == (
      [-2, -1], "softmax", 1)
  unfrozen = frozen_config(frozen, "out", freeze_bert=False)
  assert config_lib.apply_frozen_defaults(unfrozen, lambda name: False) == {}
  assert unfrozen.bert_layers == [-1] and unfrozen.head == "softmax"


@pytest.fixture()
def parsed_flags():
  if "do_train" not in FLAGS:
    cli.define_flags()
  FLAGS.unparse_flags()
  yield lambda *args: FLAGS(["run_ner.py", *args])
  FLAGS.unparse_flags()


def test_command_line_applies_frozen_defaults(frozen, parsed_flags):
  model_flags = [f"--bert_config_file={frozen['bert_config_file']}",
                 f"--vocab_file={frozen['vocab_file']}",
                 f"--init_checkpoint={frozen['checkpoint']}", "--do_train"]
  parsed_flags(*model_flags, "--lstm_layers=3", "--bert_layers=0")
  config = cli.config_from_flags()
  assert (config.bert_layers, config.layer_combination, config.head,
          config.lstm_layers, config.learning_rate,
          config.num_train_epochs) == ([0], "concat", "bilstm_crf", 3, 2e-3,
                                       10.0)
  assert config.cache_bert_features and config.bert_feature_cache_gb == 4.0
  FLAGS.unparse_flags()
  parsed_flags(*model_flags, "--nofreeze_bert",
               "--bert_layers=-2,-1", "--layer_combination=scalar_mix",
               "--nocache_bert_features", "--bert_feature_cache_gb=0.5")
  config = cli.config_from_flags()
  assert (config.bert_layers, config.layer_combination, config.head,
          config.learning_rate, config.cache_bert_features,
          config.bert_feature_cache_gb) == ([-2, -1], "scalar_mix", "softmax",
                                            5e-5, False, 0.5)
  FLAGS.unparse_flags()
  parsed_flags(*model_flags, "--bert_layers=-1,x")
  with pytest.raises(UserError, match=r"^--bert_layers=-1,x must be "
                     "comma-separated integers"):
    cli.config_from_flags()
