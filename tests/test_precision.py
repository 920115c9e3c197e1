"""--use_bf16: the encoder's products in bfloat16, everything stored float32.

Graph tests on a tiny BERT (hidden 32, 2 layers). bfloat16 kernels run on any
CPU (emulated where it has no AVX512_BF16/AMX: slow, but exact enough for a
tiny model), so these run in the default suite everywhere.
"""

import collections
import json
import logging

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny_bert import google_variable_names
from tests.tiny_bert import make_config
from tests.tiny_bert import no_dropout_bert_config
from trainer import cpu_features
from trainer.errors import UserError
from trainer.model import fused_ops
from trainer.model import optimization
from trainer.model import precision
from trainer.run import train_lib
from trainer.tf_compat import modeling

tf1 = tf.compat.v1
LAYERS = 2
CONFIG = modeling.BertConfig(
    vocab_size=30, hidden_size=32, num_hidden_layers=LAYERS,
    num_attention_heads=4, intermediate_size=64, max_position_embeddings=32,
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
PRODUCT_OPS = ("MatMul", "BatchMatMulV2", "Einsum")


def _build_step(compute_dtype, is_training=True, config=CONFIG):
  """A tiny BERT with a loss and the trainer's AdamW step, in a new graph.

  Returns (graph, loss, train_op, sequence_output).
  """
  graph = tf.Graph()
  with graph.as_default(), fused_ops.enabled(True, compute_dtype=compute_dtype):
    tf1.set_random_seed(1)
    ids = tf.constant(np.arange(2 * 8).reshape(2, 8) % 30, tf.int32)
    model = modeling.BertModel(config, is_training, ids,
                               input_mask=tf.ones_like(ids))
    output = model.get_sequence_output()
    loss = tf.reduce_mean(tf.square(output - 0.5))
    train_op = (optimization.create_train_op(
        loss, tf1.trainable_variables(), 1e-3, 10, 0)[0]
                if is_training else None)
  return graph, loss, train_op, output


def _op_dtypes(graph, scope=""):
  """{op type: Counter of its "T" dtype names} of `graph`'s ops under
  `scope`."""
  dtypes = collections.defaultdict(collections.Counter)
  for op in graph.get_operations():
    attr = op.node_def.attr.get("T")
    if not op.name.startswith(scope):
      continue
    if attr is not None and attr.HasField("type"):
      dtypes[op.type][tf.as_dtype(attr.type).name] += 1
  return dtypes


def test_bf16_products_run_in_bfloat16_the_rest_in_float32():
  graph, _, _, output = _build_step(tf.bfloat16, is_training=False)
  dtypes = _op_dtypes(graph, "bert/encoder/")
  # Per layer: query, key, value, attention output, intermediate, output
  # dense layers (MatMul) and the two attention products (BatchMatMulV2).
  assert dtypes["MatMul"] == {"bfloat16": 6 * LAYERS}
  # Outside the encoder: the token-type embedding's one-hot product and the
  # pooler stay float32.
  assert _op_dtypes(graph)["MatMul"] == {"bfloat16": 6 * LAYERS,
                                         "float32": 2}
  assert dtypes["BatchMatMulV2"] == {"bfloat16": 2 * LAYERS}
  assert not dtypes["Einsum"]
  assert dtypes["Softmax"] == {"float32": LAYERS}
  assert "bfloat16" not in dtypes["FusedBatchNormV3"] and "bfloat16" not in (
      dtypes["Mean"])  # layer norm in float32 (either form)
  assert output.dtype == tf.float32


def _sequence_output(compute_dtype):
  # Weights 25x BERT's initial scale: attention far from uniform, so the
  # score scale, the mask and which of key and value is which all matter.
  config = modeling.BertConfig.from_dict(dict(CONFIG.to_dict(),
                                              initializer_range=0.5))
  graph, _, _, output = _build_step(compute_dtype, is_training=False,
                                    config=config)
  with graph.as_default(), tf1.Session(graph=graph) as session:
    session.run(tf1.global_variables_initializer())
    return session.run(output)


def test_bf16_encoder_output_follows_float32():
  # Same seed, same weights: every product rounded to bfloat16 (8 bits of
  # mantissa) moves the layer-normed outputs (std 1) by ~1e-2. A missing
  # score scale, a swapped key and value or a mask on the wrong axis moves
  # them by ~1.
  bf16 = _sequence_output(tf.bfloat16)
  fp32 = _sequence_output(tf.float32)
  assert np.abs(bf16 - fp32).max() < 0.1
  assert np.abs(bf16 - fp32).mean() < 0.02


def test_float32_graph_has_no_bfloat16_op():
  graph, _, _, _ = _build_step(tf.float32)
  assert all("bfloat16" not in counts for counts in _op_dtypes(graph).values())


def _train_once(compute_dtype, checkpoint_prefix=None):
  """(loss before, loss after one step, {variable: dtype}) of a fresh model."""
  graph, loss, train_op, _ = _build_step(compute_dtype)
  with graph.as_default(), tf1.Session(graph=graph) as session:
    session.run(tf1.global_variables_initializer())
    before = session.run(loss)
    session.run(train_op)
    after = session.run(loss)
    dtypes = {variable.op.name: variable.dtype.base_dtype.name
              for variable in tf1.global_variables()}
    if checkpoint_prefix:
      tf1.train.Saver().save(session, checkpoint_prefix)
  return before, after, dtypes


def test_bf16_step_keeps_float32_variables_and_checkpoint(tmp_path):
  prefix = str(tmp_path / "model.ckpt")
  before, after, dtypes = _train_once(tf.bfloat16, prefix)
  assert set(dtypes.values()) == {"float32", "int64"}  # int64: global_step
  stored = tf.train.load_checkpoint(prefix).get_variable_to_dtype_map()
  assert {dtype.name for dtype in stored.values()} == {"float32", "int64"}
  # Google's variable names, as bert.modeling creates them (no extra copy).
  assert set(google_variable_names(LAYERS)) <= set(stored)
  assert after < before  # the step trained


def test_bf16_loss_and_step_follow_float32():
  bf16_before, bf16_after, _ = _train_once(tf.bfloat16)
  fp32_before, fp32_after, _ = _train_once(tf.float32)
  # Same initial weights (same seed): the losses differ by bfloat16 rounding
  # of the products only (8 bits of mantissa: ~0.4% per product).
  assert bf16_before == pytest.approx(fp32_before, rel=2e-2)
  assert bf16_after == pytest.approx(fp32_after, rel=2e-2)


def test_gelu_bf16_and_its_gradient_match_float32():
  x = np.linspace(-4.0, 4.0, 33).astype(np.float32)
  with tf.Graph().as_default(), tf1.Session() as session:
    x32 = tf.constant(x)
    x16 = tf.cast(x32, tf.bfloat16)
    y16 = precision.gelu_bf16(x16)
    grad16 = tf.gradients(y16, x16)[0]
    y32 = tf.nn.gelu(x32, approximate=True)
    grad32 = tf.gradients(y32, x32)[0]
    got = session.run([tf.cast(y16, tf.float32), tf.cast(grad16, tf.float32),
                       y32, grad32])
  assert y16.dtype == tf.bfloat16 and grad16.dtype == tf.bfloat16
  np.testing.assert_allclose(got[0], got[2], rtol=1e-2, atol=1e-2)
  np.testing.assert_allclose(got[1], got[3], rtol=1e-2, atol=1e-2)


def test_gelu_derivative_exact_values():
  with tf.Graph().as_default(), tf1.Session() as session:
    got = session.run(precision.gelu_derivative(
        tf.constant([0.0, 1.0, -1.0], tf.float64)))
  # d/dx of 0.5 x (1 + tanh(c (x + a x^3))) at 0 is 0.5; at +-1 computed by
  # hand: 0.5 (1 + t) + 0.5 c x (1 - t^2)(1 + 3a), t = tanh(c (1 + a)).
  c, a = np.sqrt(2 / np.pi), 0.044715
  t = np.tanh(c * (1 + a))
  one = 0.5 * (1 + t) + 0.5 * c * (1 - t * t) * (1 + 3 * a)
  np.testing.assert_allclose(got, [0.5, one, 1.0 - one], rtol=1e-12)


def test_computing_in_restores_the_previous_dtype():
  with fused_ops.enabled(True, compute_dtype=tf.bfloat16):
    assert precision.compute_dtype() == tf.bfloat16
    with precision.computing_in(tf.float32):
      assert precision.compute_dtype() == tf.float32
    assert precision.compute_dtype() == tf.bfloat16
  assert precision.compute_dtype() == tf.float32


def test_set_compute_dtype_refuses_float16():
  with pytest.raises(ValueError, match="compute dtype float16: use float32 "
                                       "or bfloat16"):
    precision.set_compute_dtype(tf.float16)


@pytest.fixture()
def bf16_cpu(monkeypatch):
  """Lets --use_bf16 pass its CPU check here (the kernels emulate bfloat16
  where the CPU lacks it: slow, but the same numbers)."""
  monkeypatch.setattr(cpu_features, "bf16_support_error",
                      lambda *unused, **unused_kw: None)
  with fused_ops.enabled(fused_ops.is_installed()):
    yield


def _tags(jsonl_path):
  with open(jsonl_path, encoding="utf-8") as reader:
    return [json.loads(line)["tags"] for line in reader]


def test_bf16_run_trains_predicts_and_exports_float32(workspace, bf16_cpu,
                                                      caplog):
  settings = dict(bert_config_file=str(no_dropout_bert_config(workspace)),
                  num_train_steps=4)
  caplog.set_level(logging.INFO)
  bf16 = train_lib.run(make_config(workspace, do_train=True, do_predict=True,
                                   do_export=True, use_bf16=True, **settings))
  checkpoint = tf.train.latest_checkpoint(bf16["output_dir"])
  # Prediction read the checkpoint's weights as constants
  # (trainer.model.constant_weights): their bfloat16 casts fold once.
  assert f"Predicting with the weights of {checkpoint} as constants." in (
      caplog.messages)
  stored = tf.train.load_checkpoint(checkpoint).get_variable_to_dtype_map()
  assert {dtype.name for dtype in stored.values()} == {"float32", "int64"}
  # The export is a float32 graph (TF Serving decides its precision).
  graph_def = tf1.saved_model.loader.load(
      tf1.Session(graph=tf.Graph()), ["serve"], bf16["export"]).graph_def
  assert "DT_BFLOAT16" not in str(graph_def)
  # The same checkpoint predicted in float32 tags (nearly) the same.
  fp32 = train_lib.run(make_config(workspace, do_predict=True, **settings))
  bf16_tags, fp32_tags = _tags(bf16["predict"]["jsonl"]), _tags(
      fp32["predict"]["jsonl"])
  flat = [(a, b) for x, y in zip(bf16_tags, fp32_tags) for a, b in zip(x, y)]
  assert len(bf16_tags) == len(fp32_tags) and len(flat) > 20
  assert sum(a == b for a, b in flat) / len(flat) >= 0.9


def test_use_bf16_refuses_nofused_ops(workspace, bf16_cpu):
  with pytest.raises(UserError, match="cannot be combined with --nofused_ops"):
    make_config(workspace, do_train=True, use_bf16=True,
                fused_ops=False).validate()
