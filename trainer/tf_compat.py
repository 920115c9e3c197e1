"""Makes `bert-tensorflow==1.0.4` importable on TensorFlow 2.15.

`bert/modeling.py` does ``from tensorflow.contrib import layers as
contrib_layers`` and calls ``contrib_layers.layer_norm(inputs=...,
begin_norm_axis=-1, begin_params_axis=-1, scope=name)``. TensorFlow 2 has no
`tensorflow.contrib`, so this module registers a tiny ``tensorflow.contrib``
package whose only member is ``layers.layer_norm``, written with
`tf.compat.v1` ops so that it creates exactly the variables Google checkpoints
hold::

    <scope>/LayerNorm/beta   float32 [hidden]   (zeros)
    <scope>/LayerNorm/gamma  float32 [hidden]   (ones)

Every other module gets BERT through this one:

    from trainer.tf_compat import modeling

    from trainer.tf_compat import optimization

    from trainer.tf_compat import tokenization
"""

import sys
import types

import tensorflow as tf

tf1 = tf.compat.v1

# contrib.layers.layer_norm's fixed epsilon; BERT was pre-trained with it.
LAYER_NORM_EPSILON = 1e-12


def layer_norm(inputs, center=True, scale=True, activation_fn=None, reuse=None,
               trainable=True, begin_norm_axis=1, begin_params_axis=-1,
               scope=None):
  """Layer normalization with `tf.contrib.layers.layer_norm`'s variables.

  Args:
    inputs: float Tensor `[d_0, ..., d_{r-1}]` with a static last dimension.
    center: whether to add the `beta` offset.
    scale: whether to multiply by `gamma`.
    activation_fn: optional activation applied to the output.
    reuse: passed to the variable scope.
    trainable: whether `beta` and `gamma` are trainable.
    begin_norm_axis: first axis of the moments; BERT passes -1.
    begin_params_axis: first axis of the parameter shape; BERT passes -1.
    scope: variable scope name; None gives "LayerNorm" (uniquified as
      "LayerNorm_1", ... on reuse of the default name, as contrib did).

  Returns:
    Tensor with the dtype and shape of `inputs`. Moments are computed in
    float32 even for float16 inputs, so mixed precision stays stable.

  Example: in scope "bert/embeddings", ``layer_norm(x)`` creates
  ``bert/embeddings/LayerNorm/beta`` and ``bert/embeddings/LayerNorm/gamma``.
  """
  with tf1.variable_scope(scope, "LayerNorm", [inputs], reuse=reuse):
    inputs = tf.convert_to_tensor(inputs)
    rank = inputs.shape.rank
    if rank is None:
      raise ValueError("layer_norm needs inputs of known rank, got %s" % inputs)
    params_shape = inputs.shape[begin_params_axis:]
    if not params_shape.is_fully_defined():
      raise ValueError("layer_norm needs a static parameter shape, got %s for "
                       "inputs %s" % (params_shape, inputs))
    beta = gamma = None
    if center:
      beta = tf1.get_variable("beta", shape=params_shape, dtype=tf.float32,
                              initializer=tf1.zeros_initializer(),
                              trainable=trainable)
    if scale:
      gamma = tf1.get_variable("gamma", shape=params_shape, dtype=tf.float32,
                               initializer=tf1.ones_initializer(),
                               trainable=trainable)
    x = tf.cast(inputs, tf.float32)
    norm_axes = list(range(begin_norm_axis % rank, rank))
    mean, variance = tf.nn.moments(x, norm_axes, keepdims=True)
    outputs = tf.nn.batch_normalization(
        x, mean, variance, offset=beta, scale=gamma,
        variance_epsilon=LAYER_NORM_EPSILON)
    outputs = tf.cast(outputs, inputs.dtype)
    if activation_fn is not None:
      outputs = activation_fn(outputs)
    return outputs


def install():
  """Registers `tensorflow.contrib.layers.layer_norm` (idempotent)."""
  if "tensorflow.contrib.layers" in sys.modules:
    return
  contrib = types.ModuleType("tensorflow.contrib")
  layers = types.ModuleType("tensorflow.contrib.layers")
  layers.layer_norm = layer_norm
  contrib.layers = layers
  sys.modules["tensorflow.contrib"] = contrib
  sys.modules["tensorflow.contrib.layers"] = layers


install()

# pylint: disable=g-import-not-at-top,wrong-import-position
from bert import modeling  # noqa: E402
from bert import optimization  # noqa: E402
from bert import tokenization  # noqa: E402

__all__ = ["layer_norm", "install", "modeling", "optimization", "tokenization"]
