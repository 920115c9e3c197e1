"""Tests for trainer.tf_compat: bert.modeling on TF 2 with Google's names."""

import sys

import numpy as np
import tensorflow as tf

from tests.tiny_bert import google_variable_names
from trainer import tf_compat
from trainer.tf_compat import modeling

tf1 = tf.compat.v1


def test_contrib_layers_is_registered():
  assert sys.modules["tensorflow.contrib.layers"].layer_norm is \
      tf_compat.layer_norm
  tf_compat.install()  # idempotent
  assert sys.modules["tensorflow.contrib.layers"].layer_norm is \
      tf_compat.layer_norm


def test_tiny_bert_has_exactly_google_variable_names():
  config = modeling.BertConfig(vocab_size=20, hidden_size=16,
                               num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=24)
  with tf.Graph().as_default():
    ids = tf1.placeholder(tf.int32, [None, None])
    modeling.BertModel(config, is_training=False, input_ids=ids)
    variables = {v.name[:-2]: v.shape.as_list()
                 for v in tf1.global_variables()}
  assert list(variables) == google_variable_names(2)
  assert variables["bert/encoder/layer_1/output/LayerNorm/gamma"] == [16]
  assert variables["bert/embeddings/LayerNorm/beta"] == [16]


def test_layer_norm_matches_numpy_with_epsilon_1e12():
  values = np.array([[[1.0, 2.0, 4.0], [0.5, 0.5, 0.5]]], np.float32)
  with tf.Graph().as_default():
    with tf1.variable_scope("output"):
      out = tf_compat.layer_norm(tf.constant(values), begin_norm_axis=-1,
                                 begin_params_axis=-1)
    names = [v.name for v in tf1.global_variables()]
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      result = session.run(out)
  assert names == ["output/LayerNorm/beta:0", "output/LayerNorm/gamma:0"]
  mean = values.mean(-1, keepdims=True)
  expected = (values - mean) / np.sqrt(values.var(-1, keepdims=True) + 1e-12)
  np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)
  # A constant row normalises to 0, not NaN (epsilon keeps it finite).
  np.testing.assert_array_equal(result[0, 1], [0.0, 0.0, 0.0])
