"""Fusable forms of `bert.modeling`'s dense layers, GELU and layer norm.

`bert-tensorflow==1.0.4` writes every encoder dense layer as an `einsum`
plus a broadcast add (``dense_layer_3d``, ``dense_layer_3d_proj``,
``dense_layer_2d``) and GELU as nine element-wise ops. Grappler's remapper
fuses none of them: it only knows ``MatMul + BiasAdd (+ activation)``. This
module computes the same functions as 2-D ``MatMul + BiasAdd`` (reshaping
around them, which costs no copy) and GELU in the `tf.nn.gelu` form, so that

  * plain TensorFlow runs ``_FusedMatMul`` (MatMul + BiasAdd) and
  * oneDNN (``TF_ENABLE_ONEDNN_OPTS=1``, the default on CPUs with
    AVX512_VNNI/BF16 or AMX) runs ``_MklNativeFusedMatMul`` with the bias and
    the GELU in the matmul's epilogue,

while creating exactly the variables Google checkpoints hold
(``<scope>/kernel`` [in, out] and ``<scope>/bias`` [out]), with the same
shapes, initializers and creation order. A checkpoint trained with the shim
restores without it and vice versa.

Layer norm: TF 2.15's oneDNN remapper makes ``_MklLayerNorm`` only from
Keras's form (Reshape -> ``FusedBatchNormV3(is_training=True)`` -> Reshape
-> Mul(gamma) -> AddV2(beta)); `tf_compat.layer_norm`'s
``tf.nn.moments`` + ``tf.nn.batch_normalization`` (9 ops) and hand-written
mean/rsqrt forms with variable gamma/beta are not matched. With oneDNN on
and no GPU, `layer_norm` below builds that form with BERT's epsilon 1e-12
(calling the raw op: the Python wrapper would raise it to 1.001e-5 for
cuDNN); inference then runs one ``_MklLayerNorm`` and training
``_MklNativeFusedBatchNormV3``/``...GradV3``. Elsewhere (oneDNN off: Eigen's
NCHW FusedBatchNorm transposes and is 2-3x slower; GPU: cuDNN rejects
epsilon < 1e-5) it is `tf_compat.layer_norm`.

Usage (the shim patches `bert.modeling`'s module globals, so it must be on
while the graph is built; variables and checkpoints are unaffected)::

    from trainer.model import fused_ops
    fused_ops.install()              # every later BertModel is fused
    ...
    with fused_ops.enabled(False):   # or scoped, e.g. in a test
      modeling.BertModel(...)
"""

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional

import tensorflow as tf
from tensorflow.python.ops import gen_nn_ops
from tensorflow.python.util import _pywrap_util_port

from trainer import tf_compat
from trainer.model import bf16_attention
from trainer.model import precision
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

# Whether `layer_norm` builds the FusedBatchNormV3 form (set by `install`).
_settings = {"fused_layer_norm": False}


def onednn_enabled() -> bool:
  """True when TensorFlow runs oneDNN kernels and graph rewrites.

  TF 2.15 turns oneDNN on by default only on CPUs with AVX512_VNNI,
  AVX512_BF16, AVX_VNNI or AMX; ``TF_ENABLE_ONEDNN_OPTS=1``/``0`` overrides
  that. The variable is read once, at the first query (this call or the
  first graph optimization), so set it before TensorFlow starts working.
  """
  return bool(_pywrap_util_port.IsMklEnabled())


def fused_layer_norm_supported() -> bool:
  """True when `layer_norm` may use the FusedBatchNormV3 form.

  That is with oneDNN on and no GPU visible (see the module docstring).
  """
  return onednn_enabled() and not tf.config.list_physical_devices("GPU")


def gelu(x: tf.Tensor) -> tf.Tensor:
  """bert.modeling's tanh GELU in the form oneDNN fuses into a MatMul.

  Same function as ``modeling.gelu`` (``x * 0.5 * (1 + tanh(sqrt(2/pi) *
  (x + 0.044715 x^3)))``), written as ``tf.nn.gelu(approximate=True)``: the
  remapper recognises that subgraph after ``MatMul + BiasAdd`` and runs it as
  ``_MklNativeFusedMatMul(fused_ops=[BiasAdd, GeluApproximate])``. The two
  forms differ only in float32 rounding (below 1e-6 on |x| < 10).

  Args:
    x: float Tensor of any shape.

  Returns:
    Tensor of the shape and dtype of `x`.

  Example: ``gelu([-1., 0., 1.])`` = ``[-0.158808, 0., 0.841192]``.
  A bfloat16 `x` (--use_bf16) of an encoder being trained goes to
  `precision.gelu_bf16` (see `precision.building`).
  """
  if x.dtype == tf.bfloat16 and precision.differentiable_gelu():
    return precision.gelu_bf16(x)
  return tf.nn.gelu(x, approximate=True)


def _static_last_dim(tensor: tf.Tensor) -> int:
  """The static size of the last dimension; ValueError when unknown."""
  dim = tensor.shape[-1] if tensor.shape.rank else None
  if dim is None:
    raise ValueError(
        f"fused_ops needs a static last dimension, got {tensor.name} with "
        f"shape {tensor.shape}; bert.modeling's hidden size is always static.")
  return int(dim)


def _reshape_last(outputs_2d: tf.Tensor, like: tf.Tensor, keep_dims: int,
                  new_dims: List[int]) -> tf.Tensor:
  """Reshapes [rows, ...] to like.shape[:keep_dims] + new_dims.

  One Shape/StridedSlice/ConcatV2 per input tensor (grappler merges the
  identical ones of the query/key/value layers), where bert.modeling's
  `get_shape_list` costs a StridedSlice per dynamic dimension and a Pack.
  """
  static = like.shape.as_list()[:keep_dims]
  if all(dim is not None for dim in static):
    return tf.reshape(outputs_2d, static + list(new_dims))
  leading = tf.shape(like)[:keep_dims]
  return tf.reshape(outputs_2d,
                    tf.concat([leading, tf.constant(new_dims, tf.int32)], 0))


def _dense_variables(name, input_size, output_size, initializer):
  """`<name>/kernel` [input_size, output_size] and `<name>/bias` (zeros)."""
  with tf1.variable_scope(name):
    kernel = tf1.get_variable(name="kernel", shape=[input_size, output_size],
                              initializer=initializer)
    bias = tf1.get_variable(name="bias", shape=[output_size],
                            initializer=tf1.zeros_initializer)
  return kernel, bias


def _matmul_bias(inputs_2d: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor,
                 activation: Optional[Callable]) -> tf.Tensor:
  """``activation(inputs_2d @ kernel + bias)`` as MatMul + BiasAdd (+ act).

  The activation is applied to the 2-D BiasAdd output, before any reshape,
  because the remapper only fuses an activation that directly consumes the
  BiasAdd. Runs in `precision.compute_dtype()`: in bfloat16 the input and
  the float32 kernel and bias are cast right before the MatMul, and the
  output is bfloat16.
  """
  products = tf.matmul(precision.to_compute(inputs_2d),
                       precision.to_compute(kernel))
  if products.dtype == tf.float32:
    outputs = tf.nn.bias_add(products, bias)
  else:  # the bias gradient as a product (`bf16_attention.bias_grad`)
    with bf16_attention.bias_gradient_scope():
      outputs = tf.nn.bias_add(products, precision.to_compute(bias))
  if activation is not None:
    outputs = activation(outputs)
  return outputs


def dense_layer_3d(input_tensor: tf.Tensor, num_attention_heads: int,
                   size_per_head: int, initializer: Any,
                   activation: Optional[Callable], name: Optional[str] = None
                   ) -> tf.Tensor:
  """``modeling.dense_layer_3d`` as a fusable 2-D MatMul + BiasAdd.

  Args:
    input_tensor: float Tensor [B, F, D].
    num_attention_heads: N.
    size_per_head: H.
    initializer: kernel initializer.
    activation: optional element-wise activation.
    name: variable scope ("query", "key", "value").

  Returns:
    Tensor [B, F, N, H] in the compute dtype (the attention products consume
    it as is); creates ``<name>/kernel`` [D, N * H] and ``<name>/bias``
    [N * H] exactly as bert.modeling does.

  Example: D=4, N=2, H=2: ``[B, F, 4] @ kernel[4, 4] + bias[4]`` is reshaped
  to [B, F, 2, 2]; element [b, f, n, h] is column n * H + h, as in
  bert.modeling's ``reshape(kernel, [D, N, H])``.
  """
  last_dim = _static_last_dim(input_tensor)
  width = num_attention_heads * size_per_head
  kernel, bias = _dense_variables(name, last_dim, width, initializer)
  outputs = _matmul_bias(tf.reshape(input_tensor, [-1, last_dim]), kernel,
                         bias, activation)
  return _reshape_last(outputs, input_tensor, 2,
                       [num_attention_heads, size_per_head])


def dense_layer_3d_proj(input_tensor: tf.Tensor, hidden_size: int,
                        num_attention_heads: int, head_size: int,
                        initializer: Any, activation: Optional[Callable],
                        name: Optional[str] = None) -> tf.Tensor:
  """``modeling.dense_layer_3d_proj`` as a fusable 2-D MatMul + BiasAdd.

  Args:
    input_tensor: float Tensor [B, F, N, H].
    hidden_size: D (= N * H).
    num_attention_heads: N.
    head_size: H.
    initializer: kernel initializer.
    activation: optional element-wise activation.
    name: variable scope ("dense").

  Returns:
    float32 Tensor [B, F, D] (it feeds dropout, the residual sum and layer
    norm); creates ``<name>/kernel`` [D, D] and ``<name>/bias`` [D]. Row
    n * H + h of the kernel multiplies input[..., n, h], as in
    bert.modeling's ``reshape(kernel, [N, H, D])``.
  """
  with tf1.variable_scope(name):
    kernel = tf1.get_variable(name="kernel", shape=[hidden_size, hidden_size],
                              initializer=initializer)
    bias = tf1.get_variable(name="bias", shape=[hidden_size],
                            initializer=tf1.zeros_initializer)
  inputs_2d = tf.reshape(input_tensor, [-1, num_attention_heads * head_size])
  outputs = precision.to_float32(
      _matmul_bias(inputs_2d, kernel, bias, activation))
  return _reshape_last(outputs, input_tensor, 2, [hidden_size])


def dense_layer_2d(input_tensor: tf.Tensor, output_size: int, initializer: Any,
                   activation: Optional[Callable], name: Optional[str] = None
                   ) -> tf.Tensor:
  """``modeling.dense_layer_2d`` as a fusable 2-D MatMul + BiasAdd (+ GELU).

  Args:
    input_tensor: float Tensor [B, F, D].
    output_size: O.
    initializer: kernel initializer.
    activation: optional element-wise activation (the intermediate layer's
      GELU; fused into the MatMul by oneDNN when it is `gelu` above).
    name: variable scope ("dense").

  Returns:
    Tensor [B, F, O]; creates ``<name>/kernel`` [D, O] and ``<name>/bias``
    [O]. With an activation (the intermediate layer) in the compute dtype,
    which the output layer's MatMul consumes; without one (the output
    layer, feeding dropout, the residual sum and layer norm) float32.
  """
  last_dim = _static_last_dim(input_tensor)
  kernel, bias = _dense_variables(name, last_dim, output_size, initializer)
  outputs = _matmul_bias(tf.reshape(input_tensor, [-1, last_dim]), kernel,
                         bias, activation)
  if activation is None:
    outputs = precision.to_float32(outputs)
  return _reshape_last(outputs, input_tensor, 2, [output_size])


def layer_norm(input_tensor: tf.Tensor, name: Optional[str] = None
               ) -> tf.Tensor:
  """``modeling.layer_norm`` (last axis, epsilon 1e-12), fusable by oneDNN.

  Creates ``<scope>/LayerNorm/beta`` and ``.../gamma`` [hidden] in that order,
  as `tf_compat.layer_norm` does. When `install` enabled the fused form
  (oneDNN, no GPU) and the input is float32 of rank 2 or 3, it computes::

      rows = reshape(x, [1, -1, hidden, 1])            # NCHW: a row a channel
      normalized = FusedBatchNormV3(rows, ones, zeros, is_training=True)
      outputs = reshape(normalized, shape(x)) * gamma + beta

  which the remapper turns into one ``_MklLayerNorm`` in inference graphs;
  otherwise it is `tf_compat.layer_norm`.

  Args:
    input_tensor: float Tensor [..., hidden] with a static last dimension.
    name: variable scope; None gives "LayerNorm" (uniquified like contrib).

  Returns:
    Tensor with the shape and dtype of `input_tensor`, within 1e-5 of
    `tf_compat.layer_norm`.

  Example: ``layer_norm([[1., 2., 3.]])`` with gamma=1, beta=0 gives
  ``[[-1.2247449, 0., 1.2247449]]``.
  """
  rank = input_tensor.shape.rank
  if (not _settings["fused_layer_norm"] or input_tensor.dtype != tf.float32
      or rank not in (2, 3)):
    return tf_compat.layer_norm(inputs=input_tensor, begin_norm_axis=-1,
                                begin_params_axis=-1, scope=name)
  hidden = _static_last_dim(input_tensor)
  with tf1.variable_scope(name, "LayerNorm", [input_tensor]):
    beta = tf1.get_variable("beta", shape=[hidden], dtype=tf.float32,
                            initializer=tf1.zeros_initializer())
    gamma = tf1.get_variable("gamma", shape=[hidden], dtype=tf.float32,
                             initializer=tf1.ones_initializer())
    shape = tf.shape(input_tensor)
    # The remapper's pattern: Fill(dims, Const) scale/offset, one empty Const
    # as both mean and variance, and no other reader of the first Reshape
    # (so the row count comes from the input's shape, not from `rows`).
    num_rows = tf.reshape(tf.reduce_prod(shape[:-1]), [1])
    rows = tf.reshape(input_tensor, [1, -1, hidden, 1])
    empty = tf.constant([], tf.float32)
    normalized = gen_nn_ops.fused_batch_norm_v3(
        rows, tf.fill(num_rows, 1.0), tf.fill(num_rows, 0.0), empty, empty,
        epsilon=tf_compat.LAYER_NORM_EPSILON, data_format="NCHW",
        is_training=True)[0]
    return tf.reshape(normalized, shape) * gamma + beta


def attention_layer(from_tensor, to_tensor, attention_mask=None,
                    num_attention_heads=1, size_per_head=512, query_act=None,
                    key_act=None, value_act=None,
                    attention_probs_dropout_prob=0.0, initializer_range=0.02,
                    batch_size=None, from_seq_length=None, to_seq_length=None):
  """``modeling.attention_layer`` with its two products in the compute dtype.

  In float32 this is bert.modeling's own function (the same graph). In
  bfloat16 the query/key/value projections come out bfloat16 and
  `bf16_attention.attention_core` multiplies them in bfloat16, with the
  scaling, mask, softmax and dropout in float32.

  Args:
    from_tensor: float32 [B, F, D]; to_tensor: float32 [B, T, D] (BertModel
      passes rank-3 tensors); the rest as ``modeling.attention_layer``.

  Returns:
    [B, F, N, H] in the compute dtype (the output projection consumes it).
  """
  if precision.compute_dtype() == tf.float32:
    return _ORIGINALS["attention_layer"](
        from_tensor, to_tensor, attention_mask=attention_mask,
        num_attention_heads=num_attention_heads, size_per_head=size_per_head,
        query_act=query_act, key_act=key_act, value_act=value_act,
        attention_probs_dropout_prob=attention_probs_dropout_prob,
        initializer_range=initializer_range, batch_size=batch_size,
        from_seq_length=from_seq_length, to_seq_length=to_seq_length)
  if from_tensor.shape.rank != 3 or to_tensor.shape.rank != 3:
    raise ValueError("fused_ops.attention_layer in bfloat16 needs rank-3 "
                     "from_tensor and to_tensor, as BertModel passes.")
  initializer = modeling.create_initializer(initializer_range)
  query = dense_layer_3d(from_tensor, num_attention_heads, size_per_head,
                         initializer, query_act, "query")
  key = dense_layer_3d(to_tensor, num_attention_heads, size_per_head,
                       initializer, key_act, "key")
  value = dense_layer_3d(to_tensor, num_attention_heads, size_per_head,
                         initializer, value_act, "value")
  return bf16_attention.attention_core(
      query, key, value, attention_mask, size_per_head,
      attention_probs_dropout_prob)


def dropout(input_tensor: tf.Tensor, dropout_prob: Optional[float]
            ) -> tf.Tensor:
  """``modeling.dropout``; in bfloat16 graphs `bf16_attention.dropout`."""
  if precision.compute_dtype() == tf.float32:
    return _ORIGINALS["dropout"](input_tensor, dropout_prob)
  return bf16_attention.dropout(input_tensor, dropout_prob)


# bert.modeling global -> fused replacement. `get_activation("gelu")` reads the
# module global `gelu` at call time, so replacing it covers BertModel.
_REPLACEMENTS = {
    "dense_layer_3d": dense_layer_3d,
    "dense_layer_3d_proj": dense_layer_3d_proj,
    "dense_layer_2d": dense_layer_2d,
    "gelu": gelu,
    "layer_norm": layer_norm,
    "attention_layer": attention_layer,
    "dropout": dropout,
}
# The functions bert.modeling had before `install()`.
_ORIGINALS: Dict[str, Callable] = {
    name: getattr(modeling, name) for name in _REPLACEMENTS}


def _set_functions(functions: Dict[str, Callable]) -> None:
  for name, function in functions.items():
    setattr(modeling, name, function)


def is_installed() -> bool:
  """True while bert.modeling builds the fused forms."""
  return all(getattr(modeling, name) is function
             for name, function in _REPLACEMENTS.items())


def install(fused_layer_norm: Optional[bool] = None,
            compute_dtype: Optional[tf.DType] = None) -> None:
  """Makes every later `modeling.BertModel` build the fused forms.

  Idempotent. Affects graph construction only; variables, checkpoints and
  outputs (to float32 rounding) are those of bert.modeling.

  Args:
    fused_layer_norm: build layer norms in the FusedBatchNormV3 form; None
      (default) does so iff `fused_layer_norm_supported()`.
    compute_dtype: dtype of the dense layers' and attention's products
      (`trainer.model.precision`): tf.bfloat16 casts their inputs and float32
      weights right before each product; None (default) is float32.
  """
  if fused_layer_norm is None:
    fused_layer_norm = fused_layer_norm_supported()
  _settings["fused_layer_norm"] = bool(fused_layer_norm)
  precision.set_compute_dtype(compute_dtype or tf.float32)
  _set_functions(_REPLACEMENTS)


def uninstall() -> None:
  """Restores bert.modeling's own functions, in float32 (idempotent)."""
  precision.set_compute_dtype(tf.float32)
  _set_functions(_ORIGINALS)


@contextlib.contextmanager
def enabled(on: bool = True,
            fused_layer_norm: Optional[bool] = None,
            compute_dtype: Optional[tf.DType] = None) -> Iterator[None]:
  """Builds with (``on``) or without the fused forms inside the block.

  Restores the previous state on exit, so it nests inside `install()`.
  `fused_layer_norm` and `compute_dtype` are passed to `install`.
  """
  was_installed = is_installed()
  previous = dict(_settings)
  previous_dtype = precision.compute_dtype()
  if on:
    install(fused_layer_norm, compute_dtype)
  else:
    uninstall()
  try:
    yield
  finally:
    _settings.update(previous)
    precision.set_compute_dtype(previous_dtype)
    _set_functions(_REPLACEMENTS if was_installed else _ORIGINALS)
