"""estimator_lib: devices, session config and Estimator construction."""

import json

import pytest
import tensorflow as tf

from trainer.training import estimator_lib
from trainer.model import heads as model_lib
from trainer.run.config import NerConfig

DeviceOverrides = estimator_lib.DeviceOverrides


@pytest.mark.parametrize("num_gpus, overrides, expected", [
    (0, DeviceOverrides(), None),
    (1, DeviceOverrides(), None),
    (2, DeviceOverrides(), ["/gpu:0", "/gpu:1"]),
    (0, DeviceOverrides(distribution_devices=("/cpu:0", "/cpu:1")),
     ["/cpu:0", "/cpu:1"]),
])
def test_distribution_devices(num_gpus, overrides, expected):
  config = NerConfig(num_gpus=num_gpus)
  assert estimator_lib.distribution_devices(config, overrides) == expected


def test_tpu_estimator_path():
  assert not estimator_lib.uses_tpu_estimator(NerConfig())
  assert estimator_lib.uses_tpu_estimator(NerConfig(use_tpu=True))
  assert estimator_lib.uses_tpu_estimator(
      NerConfig(), DeviceOverrides(tpu_estimator=True))


def test_session_config():
  plain = estimator_lib.session_config(NerConfig())
  assert plain.allow_soft_placement
  assert plain.graph_options.optimizer_options.global_jit_level == 0
  assert plain.graph_options.rewrite_options.auto_mixed_precision == 0
  assert "CPU" not in plain.device_count
  fast = estimator_lib.session_config(NerConfig(use_xla=True, use_amp=True))
  assert fast.graph_options.optimizer_options.global_jit_level == 1  # ON_1
  assert fast.graph_options.rewrite_options.auto_mixed_precision == 1  # ON
  mirrored = estimator_lib.session_config(
      NerConfig(), DeviceOverrides(distribution_devices=("/cpu:0", "/cpu:1")))
  assert mirrored.device_count["CPU"] == 2
  assert mirrored.inter_op_parallelism_threads == 8


@pytest.mark.parametrize("tf_config, is_multi_worker", [
    (None, False),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
     False),
    ({"cluster": {"worker": ["a:1", "b:2"]},
      "task": {"type": "worker", "index": 1}}, True),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:2"]},
      "task": {"type": "chief", "index": 0}}, True),
])
def test_multi_worker_config(monkeypatch, tf_config, is_multi_worker):
  if tf_config is None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
  else:
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
  result = estimator_lib.multi_worker_config()
  assert result == (tf_config if is_multi_worker else None)


def test_one_device_needs_no_strategy(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  assert estimator_lib.make_strategy(NerConfig()) is None


def test_head_config():
  vocab = {"[PAD]": 0, "john": 1, "##s": 2, "##ing": 3}
  head = estimator_lib.head_config(
      NerConfig(head="bilstm_crf", head_dropout=0.2, lstm_units=8,
                lstm_layers=2, crf_constrain_bio=True), vocab)
  assert head == model_lib.HeadConfig(
      kind="bilstm_crf", dropout=0.2, lstm_units=8, lstm_layers=2,
      crf_constrain_bio=True,
      continuation_ids=model_lib.continuation_ids_from_vocab(vocab))
  assert 2 in head.continuation_ids and 1 not in head.continuation_ids


@pytest.fixture()
def bert_config_file(tmp_path):
  path = tmp_path / "bert_config.json"
  path.write_text(json.dumps({
      "vocab_size": 4, "hidden_size": 8, "num_hidden_layers": 1,
      "num_attention_heads": 2, "intermediate_size": 16,
      "max_position_embeddings": 16, "type_vocab_size": 2}))
  return str(path)


def test_make_estimator(tmp_path, bert_config_file):
  config = NerConfig(output_dir=str(tmp_path / "out"), seed=7,
                     save_checkpoints_steps=50, keep_checkpoint_max=2)
  vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
  estimator = estimator_lib.make_estimator(
      config, bert_config_file, ["O", "B-X"], vocab, num_train_steps=10)
  assert type(estimator) is tf.estimator.Estimator  # pylint: disable=unidiomatic-typecheck
  assert estimator.model_dir == config.output_dir
  assert (estimator.config.tf_random_seed, estimator.config.save_checkpoints_steps,
          estimator.config.keep_checkpoint_max,
          estimator.config.log_step_count_steps) == (7, 50, 2, 100)
  assert estimator.params == {"train_batch_size": 32}
  tpu = estimator_lib.make_estimator(
      config, bert_config_file, ["O", "B-X"], vocab, num_train_steps=10,
      devices=DeviceOverrides(tpu_estimator=True))
  assert isinstance(tpu, tf.compat.v1.estimator.tpu.TPUEstimator)


def test_resolve_tpu_passes_the_flags(monkeypatch):
  calls = []
  monkeypatch.setattr(estimator_lib.tpu_cluster, "resolve",
                      lambda *args: calls.append(args) or "resolver")
  config = NerConfig(use_tpu=True, tpu_name="my-tpu", tpu_zone="z",
                     gcp_project="p", num_tpu_cores=4, tpu_timeout_seconds=7)
  assert estimator_lib.resolve_tpu(config) == "resolver"
  assert calls == [("my-tpu", "z", "p", 4, 7)]


def test_make_estimator_uses_the_resolved_tpu(tmp_path, bert_config_file,
                                              monkeypatch):
  def resolve_again(*args):
    raise AssertionError(f"resolved a second time: {args}")
  monkeypatch.setattr(estimator_lib.tpu_cluster, "resolve", resolve_again)
  address = "grpc://127.0.0.1:1"  # constructing connects to nothing
  resolver = tf.compat.v1.distribute.cluster_resolver.TPUClusterResolver(
      address)
  config = NerConfig(output_dir=str(tmp_path / "out"), use_tpu=True,
                     tpu_name=address)
  vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
  estimator = estimator_lib.make_estimator(
      config, bert_config_file, ["O", "B-X"], vocab, num_train_steps=10,
      tpu=resolver)
  assert isinstance(estimator, tf.compat.v1.estimator.tpu.TPUEstimator)
  assert estimator.config.cluster is resolver
  assert estimator.config.master == address
