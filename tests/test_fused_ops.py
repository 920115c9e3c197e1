"""Tests for trainer.model.fused_ops: same variables, same outputs, fused
kernels.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny_bert import google_variable_names
from tests.tiny_bert import make_config as train_config
from tests.tiny_bert import no_dropout_bert_config
from trainer.model import fused_ops
from trainer.model import precision
from trainer.run import train_lib
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, LENGTH = 3, 7


def _config(**overrides):
  settings = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=24,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  settings.update(overrides)
  return modeling.BertConfig(**settings)


def _inputs():
  rng = np.random.RandomState(7)
  ids = rng.randint(1, 50, [BATCH, LENGTH]).astype(np.int32)
  mask = np.ones([BATCH, LENGTH], np.int32)
  mask[1, 4:] = 0  # a padded sentence
  segments = np.zeros([BATCH, LENGTH], np.int32)
  segments[2, 3:] = 1
  return ids, mask, segments


def _build(fused, fused_layer_norm=False, is_training=False):
  """BertModel on placeholders; returns (placeholders, model)."""
  ids = tf1.placeholder(tf.int32, [None, None])
  mask = tf1.placeholder(tf.int32, [None, None])
  segments = tf1.placeholder(tf.int32, [None, None])
  with fused_ops.enabled(fused, fused_layer_norm=fused_layer_norm):
    model = modeling.BertModel(_config(), is_training=is_training,
                               input_ids=ids, input_mask=mask,
                               token_type_ids=segments)
  return (ids, mask, segments), model


def _variables():
  return [(v.op.name, v.shape.as_list()) for v in tf1.global_variables()]


def _random_weights(session):
  """Large enough weights that GELU and layer norm see a wide range."""
  rng = np.random.RandomState(3)
  for variable in tf1.global_variables():
    value = rng.normal(0.0, 0.3, variable.shape.as_list())
    if variable.op.name.endswith("gamma"):
      value += 1.0
    variable.load(value.astype(np.float32), session)


def _run(fused, fused_layer_norm, checkpoint, fetch_gradients=False):
  """Restores `checkpoint` into a (fused) model; returns output arrays."""
  with tf.Graph().as_default():
    placeholders, model = _build(fused, fused_layer_norm,
                                 is_training=fetch_gradients)
    fetches = {"layers": model.get_all_encoder_layers(),
               "pooled": model.get_pooled_output()}
    if fetch_gradients:
      weights = np.random.RandomState(5).normal(
          size=[BATCH, LENGTH, 16]).astype(np.float32)
      loss = tf.reduce_sum(model.get_sequence_output() * weights)
      variables = [v for v in tf1.trainable_variables()
                   if "pooler" not in v.op.name]  # not in the loss
      gradients = [tf.convert_to_tensor(g)  # word embeddings: IndexedSlices
                   for g in tf.gradients(loss, variables)]
      fetches["gradients"] = dict(zip([v.op.name for v in variables],
                                      gradients))
    with tf1.Session() as session:
      tf1.train.Saver().restore(session, checkpoint)
      return session.run(fetches, dict(zip(placeholders, _inputs())))


@pytest.fixture(scope="module")
def unfused_checkpoint(tmp_path_factory):
  """A checkpoint written by bert.modeling's own (unfused) graph."""
  path = str(tmp_path_factory.mktemp("unfused") / "model.ckpt")
  with tf.Graph().as_default():
    _build(fused=False)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      _random_weights(session)
      tf1.train.Saver().save(session, path)
  return path


@pytest.mark.parametrize("fused_layer_norm", [False, True])
def test_fused_model_has_exactly_the_unfused_variables(fused_layer_norm):
  with tf.Graph().as_default():
    _build(fused=False)
    unfused = _variables()
  with tf.Graph().as_default():
    _build(fused=True, fused_layer_norm=fused_layer_norm)
    fused = _variables()
  assert fused == unfused
  assert [name for name, _ in fused] == google_variable_names(2)
  assert dict(fused)["bert/encoder/layer_0/attention/self/query/kernel"] == \
      [16, 16]
  assert dict(fused)["bert/encoder/layer_1/intermediate/dense/kernel"] == \
      [16, 24]


@pytest.mark.parametrize("fused_layer_norm", [False, True])
def test_fused_model_restores_unfused_checkpoint_and_matches_outputs(
    unfused_checkpoint, fused_layer_norm):
  expected = _run(False, False, unfused_checkpoint)
  actual = _run(True, fused_layer_norm, unfused_checkpoint)
  assert len(actual["layers"]) == 2
  for got, want in zip(actual["layers"], expected["layers"]):
    assert got.shape == (BATCH, LENGTH, 16)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
  np.testing.assert_allclose(actual["pooled"], expected["pooled"], rtol=0,
                             atol=1e-5)
  # The weights are not trivially small: outputs differ between sentences.
  assert np.abs(expected["layers"][-1][0] - expected["layers"][-1][2]).max() \
      > 0.5


@pytest.mark.parametrize("fused_layer_norm", [False, True])
def test_fused_model_gradients_match(unfused_checkpoint, fused_layer_norm):
  expected = _run(False, False, unfused_checkpoint, fetch_gradients=True)
  actual = _run(True, fused_layer_norm, unfused_checkpoint,
                fetch_gradients=True)
  # Every embedding and encoder variable gets a gradient.
  assert sorted(actual["gradients"]) == sorted(expected["gradients"])
  assert len(expected["gradients"]) == 5 + 2 * 16
  for name in expected["gradients"]:
    want = expected["gradients"][name]
    got = actual["gradients"][name]
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale,
                               err_msg=name)
    assert np.abs(want).max() > 0, name


def test_gelu_is_berts_tanh_gelu():
  values = np.linspace(-10.0, 10.0, 2001).astype(np.float32)
  with tf.Graph().as_default(), fused_ops.enabled(False):
    x = tf.constant(values)
    assert modeling.gelu is not fused_ops.gelu
    ours, berts = fused_ops.gelu(x), modeling.gelu(x)
    with tf1.Session() as session:
      ours, berts = session.run([ours, berts])
  np.testing.assert_allclose(ours, berts, rtol=0, atol=1e-6)
  np.testing.assert_allclose(ours[[900, 1000, 1100]],
                             [-0.158808, 0.0, 0.841192], atol=1e-6)


@pytest.mark.parametrize("fused_layer_norm", [False, True])
def test_layer_norm_example_and_variable_names(fused_layer_norm):
  with tf.Graph().as_default():
    with fused_ops.enabled(fused_layer_norm=fused_layer_norm):
      with tf1.variable_scope("output"):
        out = modeling.layer_norm(tf.constant([[1.0, 2.0, 3.0],
                                               [5.0, 5.0, 5.0]]))
    names = [v.name for v in tf1.global_variables()]
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      result = session.run(out)
  assert names == ["output/LayerNorm/beta:0", "output/LayerNorm/gamma:0"]
  np.testing.assert_allclose(result, [[-1.2247449, 0.0, 1.2247449],
                                      [0.0, 0.0, 0.0]], atol=1e-6)


def test_install_uninstall_and_enabled_restore_state():
  was_installed = fused_ops.is_installed()  # e.g. by an earlier run()
  fused_ops.uninstall()
  original_dense = modeling.dense_layer_2d
  fused_ops.install(fused_layer_norm=False)
  try:
    assert fused_ops.is_installed()
    assert modeling.dense_layer_2d is fused_ops.dense_layer_2d
    assert modeling.get_activation("gelu") is fused_ops.gelu
    with fused_ops.enabled(False):
      assert modeling.dense_layer_2d is original_dense
    assert fused_ops.is_installed()
    fused_ops.uninstall()
    assert not fused_ops.is_installed()
    assert modeling.dense_layer_2d is original_dense
    assert modeling.get_activation("gelu") is not fused_ops.gelu
  finally:
    if was_installed:
      fused_ops.install()
    else:
      fused_ops.uninstall()


def test_unknown_hidden_size_is_an_error():
  with tf.Graph().as_default():
    inputs = tf1.placeholder(tf.float32, [None, None, None])
    with pytest.raises(ValueError, match="static last dimension"):
      fused_ops.dense_layer_2d(inputs, 4, None, None, "dense")



@pytest.fixture()
def restore_fused_state():
  """Puts bert.modeling back as it was (run() patches it process-wide)."""
  # pylint: disable=protected-access
  layer_norm = fused_ops._settings["fused_layer_norm"]
  with fused_ops.enabled(fused_ops.is_installed(), layer_norm):
    yield


def test_apply_graph_settings_follows_the_config(restore_fused_state):
  train_lib.apply_graph_settings(train_lib.NerConfig(fused_ops=False))
  assert not fused_ops.is_installed()
  assert precision.compute_dtype() == tf.float32
  train_lib.apply_graph_settings(train_lib.NerConfig(fused_ops=True,
                                                     use_bf16=True))
  assert fused_ops.is_installed()
  assert precision.compute_dtype() == tf.bfloat16
  train_lib.apply_graph_settings(train_lib.NerConfig(fused_ops=True))
  assert precision.compute_dtype() == tf.float32


def test_run_trains_fused_and_predicts_unfused_from_its_checkpoint(
    workspace, restore_fused_state):
  # The default run builds the fused forms; its checkpoint restores into
  # bert.modeling's own ops (same names and shapes) with the same tags.
  settings = dict(bert_config_file=str(no_dropout_bert_config(workspace)),
                  num_train_steps=4)
  fused = train_lib.run(train_config(workspace, do_train=True,
                                     do_predict=True, **settings))
  assert fused_ops.is_installed()
  fused_records = _scores_apart(fused["predict"]["jsonl"])
  unfused = train_lib.run(train_config(workspace, do_predict=True,
                                       fused_ops=False, **settings))
  assert not fused_ops.is_installed()
  unfused_records = _scores_apart(unfused["predict"]["jsonl"])
  # Tokens, tags and entity spans equal; scores (rounded to 6 digits in the
  # file) to float32 rounding.
  assert unfused_records[0] == fused_records[0]
  np.testing.assert_allclose(unfused_records[1], fused_records[1], atol=2e-6)


def _scores_apart(jsonl_path):
  """(records without scores, every score in order) of predictions.jsonl."""
  records, scores = [], []
  with open(jsonl_path, encoding="utf-8") as reader:
    for line in reader:
      record = json.loads(line)
      scores += record.pop("scores")
      for entity in record["entities"]:
        scores.append(entity.pop("score"))
      records.append(record)
  return records, scores


# Runs in a fresh process: TF_ENABLE_ONEDNN_OPTS is read once per process.
_COUNT_FUSED_OPS = """
import collections, json, sys
import numpy as np
import tensorflow as tf
sys.path.insert(0, sys.argv[1])
from trainer.model import fused_ops
from trainer.model import precision
from trainer.tf_compat import modeling
tf1 = tf.compat.v1
tf1.disable_eager_execution()
fused_ops.install()
ids = tf1.placeholder(tf.int32, [None, None])
model = modeling.BertModel(modeling.BertConfig(
    vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=24), is_training=False, input_ids=ids)
metadata = tf1.RunMetadata()
with tf1.Session() as session:
  session.run(tf1.global_variables_initializer())
  session.run(model.get_sequence_output(), {ids: np.ones([2, 5], np.int32)},
              options=tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE,
                                     output_partition_graphs=True),
              run_metadata=metadata)
counts = collections.Counter()
for graph in metadata.partition_graphs:
  for node in graph.node:
    fused = [s.decode() for s in node.attr["fused_ops"].list.s]
    counts[node.op + ("[%s]" % ",".join(fused) if fused else "")] += 1
print(json.dumps({"counts": counts, "onednn": fused_ops.onednn_enabled(),
                  "fused_layer_norm": fused_ops.fused_layer_norm_supported()}))
"""


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_remapper_fuses_dense_gelu_and_layer_norm(onednn):
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="2",
             CUDA_VISIBLE_DEVICES="")
  output = subprocess.run([sys.executable, "-c", _COUNT_FUSED_OPS, REPO_ROOT],
                          env=env, check=True, capture_output=True, text=True)
  result = json.loads(output.stdout.strip().splitlines()[-1])
  counts = result["counts"]
  assert result["onednn"] == (onednn == "1")
  assert result["fused_layer_norm"] == (onednn == "1")
  if onednn == "1":
    # Per layer: query, key, value, attention output, output dense with their
    # bias; the intermediate dense with bias and GELU. Layer norms: the
    # embeddings' and two per layer.
    assert counts["_MklNativeFusedMatMul[BiasAdd]"] == 2 * 5
    assert counts["_MklNativeFusedMatMul[BiasAdd,GeluApproximate]"] == 2
    assert counts["_MklLayerNorm"] == 1 + 2 * 2
    assert "Tanh" not in counts and "Rsqrt" not in counts
    assert counts["_MklEinsum"] == 2 * 2  # attention scores and context
  else:
    # Eigen fuses the bias; GELU stays element-wise, layer norm is moments.
    assert counts["_FusedMatMul[BiasAdd]"] == 2 * 6
    assert counts["Tanh"] == 2
    assert counts["Rsqrt"] == 1 + 2 * 2
    assert counts["Einsum"] == 2 * 2
