"""The dtype the encoder's matrix products compute in: float32 or bfloat16.

`--use_bf16` (CPUs with AVX512_BF16 or AMX) runs BERT's dense layers and the
two attention products in bfloat16 through explicit casts in
`trainer.model.fused_ops`: each float32 input and float32 weight is cast to
bfloat16 right before its MatMul/einsum, so

  * the variables, their checkpoints and the optimizer's slots stay float32
    (the gradient flows back through the Cast and arrives float32), and a
    Google checkpoint restores as is;
  * oneDNN runs the products on bfloat16 (AMX where the CPU has it) with the
    bias (and GELU) in the matmul's epilogue;
  * everything else stays float32: the residual sums, layer norm, the
    attention scores' scaling, mask, softmax and dropout, the embeddings, the
    task head, the loss and the CRF.

Walk-through for one encoder layer (B=batch, T=tokens, H=hidden, I=4H):

    x float32 [B*T, H] -> cast bf16 -> Q, K, V = x @ W_qkv + b   bf16 [B*T, H]
    scores = einsum(K, Q) bf16 -> cast float32 -> scale, mask, softmax, dropout
    context = einsum(cast bf16(probs), V)                       bf16
    attention_out = context @ W_o + b -> cast float32 -> + x -> layer norm
    inner = gelu(cast bf16(.) @ W_i + b)                        bf16 [B*T, I]
    out = inner @ W_out + b -> cast float32 -> + residual -> layer norm

Why not grappler's `auto_mixed_precision_onednn_bfloat16` rewrite for
training: it also puts GELU, dropout and the gradients' element-wise ops into
bfloat16 (Eigen converts element by element there: ~2x slower than float32),
adds ~350 Casts per step and runs layer norm in bfloat16. Measured on a
2-core Xeon with AMX (MiniLM-L6 shapes, batch 32, 64 tokens; bench results
in bench/README.md): one training step 1.42x faster than float32 with the
rewrite, 1.97x with these casts and the GELU below.

The GELU of a bfloat16 product in a graph that trains the encoder is
`gelu_bf16`: forward and gradient each one XLA-compiled loop that reads and
writes bfloat16 and computes in float32 (`tf.nn.gelu`'s gradient in bfloat16
is ~12 element-wise Eigen ops). In graphs that only run the encoder forward
(`building(training=False)`: evaluation, prediction, the frozen encoder) it is
`tf.nn.gelu`, which oneDNN fuses into the bfloat16 MatMul; XLA would compile
once per batch shape there for nothing.

Serving is different: an export is always a float32 graph, and TF Serving (or
`python -m serving.local_server --mixed_precision=bfloat16`) applies the
grappler rewrite to it; see `serving.server.saved_model_session`.
"""

import contextlib
from typing import Iterator

import tensorflow as tf

tf1 = tf.compat.v1

# The compute dtype of the encoder's products (set by `fused_ops.install`),
# and whether the graph being built differentiates the encoder
# (`building`).
_state = {"compute_dtype": tf.float32, "training": True}
COMPUTE_DTYPES = (tf.float32, tf.bfloat16)

_GELU_C = 0.7978845608028654  # sqrt(2 / pi)
_GELU_A = 0.044715


def compute_dtype() -> tf.DType:
  """The dtype the encoder's products run in: tf.float32 or tf.bfloat16."""
  return _state["compute_dtype"]


def set_compute_dtype(dtype) -> None:
  """Sets `compute_dtype()` for graphs built from now on.

  Raises:
    ValueError: for a dtype other than float32 or bfloat16.
  """
  dtype = tf.as_dtype(dtype)
  if dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute dtype {dtype.name}: use float32 or bfloat16.")
  _state["compute_dtype"] = dtype


@contextlib.contextmanager
def computing_in(dtype) -> Iterator[None]:
  """Builds in `dtype` inside the block, then restores the previous dtype.

  The exporter builds every SavedModel in float32 this way, whatever the
  run trained in.
  """
  previous = compute_dtype()
  set_compute_dtype(dtype)
  try:
    yield
  finally:
    _state["compute_dtype"] = previous


@contextlib.contextmanager
def building(training: bool) -> Iterator[None]:
  """Marks the encoder built inside the block as trained or forward-only.

  `trainer.model.heads.encoder_layers` wraps BertModel in it with its
  `is_training`.
  """
  previous = _state["training"]
  _state["training"] = bool(training)
  try:
    yield
  finally:
    _state["training"] = previous


def differentiable_gelu() -> bool:
  """True when the encoder being built is trained (see `building`)."""
  return _state["training"]


def to_compute(tensor: tf.Tensor) -> tf.Tensor:
  """`tensor` in the compute dtype (a Cast only when it differs).

  Example: a float32 kernel [384, 1536] -> bfloat16 [384, 1536] when
  computing in bfloat16; the same tensor, uncast, in float32.
  """
  dtype = compute_dtype()
  return tensor if tensor.dtype == dtype else tf.cast(tensor, dtype)


def to_float32(tensor: tf.Tensor) -> tf.Tensor:
  """`tensor` as float32 (a Cast only when it is not)."""
  return tensor if tensor.dtype == tf.float32 else tf.cast(tensor, tf.float32)


def gelu_derivative(x: tf.Tensor) -> tf.Tensor:
  """d gelu_tanh(x) / dx, elementwise, in `x`'s dtype.

  With t = tanh(c (x + a x^3)), c = sqrt(2/pi), a = 0.044715:
  0.5 (1 + t) + 0.5 c x (1 - t^2) (1 + 3 a x^2).
  Example: gelu_derivative([0.]) = [0.5].
  """
  x_squared = tf.square(x)
  t = tf.tanh(_GELU_C * x * (1.0 + _GELU_A * x_squared))
  return 0.5 * (1.0 + t) + (0.5 * _GELU_C) * x * (1.0 - tf.square(t)) * (
      1.0 + 3.0 * _GELU_A * x_squared)


@tf.custom_gradient
def gelu_bf16(x):
  """GELU (tanh form) of a bfloat16 tensor, computed in float32 by XLA.

  Args:
    x: bfloat16 [..., I], the intermediate products of the encoder.

  Returns:
    bfloat16 [..., I]; its gradient (also one XLA loop) is bfloat16 too.
  """
  with tf1.xla.experimental.jit_scope(compile_ops=True):
    y = tf.cast(tf.nn.gelu(tf.cast(x, tf.float32), approximate=True),
                x.dtype)

  def grad(dy):
    with tf1.xla.experimental.jit_scope(compile_ops=True):
      return tf.cast(tf.cast(dy, tf.float32)
                     * gelu_derivative(tf.cast(x, tf.float32)), x.dtype)
  return y, grad
