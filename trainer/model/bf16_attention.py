"""The encoder's bfloat16 training pieces that are not matrix products.

With `--use_bf16` the products run on AMX/AVX512_BF16 at ~5x their float32
speed (1.4 TFLOP/s against 0.3 on a 2-core Xeon), so a step's time goes to
what surrounds them. Three of those are built here instead of by
bert.modeling or Eigen's default kernels (`fused_ops` calls them only when
the compute dtype is bfloat16; float32 graphs are bert.modeling's):

  `dropout`         16 random bits an element (one Philox word serves two),
                    compared as integers, instead of a float32 uniform per
                    element: 1.8 ms against 3.2 for one layer's attention
                    probabilities at [32, 12, 64, 64].
  `attention_core`  scores and context as batched matrix products on
                    [B, N, F, H] (one transpose per input), where the einsums
                    "BTNH,BFNH->BNFT" transposed inside each product and its
                    two gradients: fwd + bwd of one layer's attention 13.8 ms
                    -> 8.7 ms at length 64, 56 -> 43 ms at 128 (with
                    `dropout`; docs/speed.md).
  `bias_grad`       a BiasAdd's bias gradient as ones[1, rows] @ dy on
                    oneDNN (0.7 ms) instead of Eigen's bfloat16 column sum
                    (1.2 ms at [2048, 1536]); it also sums in float32.

Dropout keeps an element when its 16 random bits are >= round(rate * 65536)
and scales kept ones by 65536 / (65536 - threshold), so it is unbiased; the
drop probability differs from `rate` by under 2^-17 (0.1 -> 0.100006).
"""

import math
from typing import Optional

import tensorflow as tf

tf1 = tf.compat.v1

_WORD_STATES = 1 << 16
# BiasAdd ops built with this gradient (`bias_gradient_scope`).
BIAS_GRADIENT = "NerBiasAddMatMulGrad"


def dropout(x: tf.Tensor, rate: Optional[float]) -> tf.Tensor:
  """Inverted dropout of `x` at `rate` from 16-bit random integers.

  Args:
    x: float Tensor of any shape (its element count must be even, as every
      BERT activation's is: the hidden size and N * H are even).
    rate: drop probability in [0, 1), or None / 0.0 for no dropout (returns
      `x`, as `bert.modeling.dropout`).

  Returns:
    Tensor like `x`: each element 0 or x * 65536 / (65536 - threshold).

  Example: rate 0.5 -> threshold 32768: elements whose bits are >= 32768
  are doubled, the rest zeroed.
  """
  if rate is None or rate == 0.0:
    return x
  if not 0.0 < rate < 1.0:
    raise ValueError(f"dropout rate {rate} must be in [0, 1).")
  threshold = int(round(rate * _WORD_STATES))
  scale = _WORD_STATES / (_WORD_STATES - threshold)
  with tf.name_scope("dropout"):
    count = tf.size(x, out_type=tf.int32)
    # Stateful, so each step draws new bits; reproducible under a graph seed.
    seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    words = tf.random.stateless_uniform(tf.reshape(count // 2, [1]), seed,
                                        minval=None, maxval=None,
                                        dtype=tf.uint32)
    keep = tf.reshape(tf.bitcast(words, tf.uint16), tf.shape(x)) >= threshold
    # x * mask: the backward pass is one product with the same mask (a
    # select would build zeros in both directions).
    return x * tf.where(keep, tf.constant(scale, x.dtype),
                        tf.constant(0.0, x.dtype))


def attention_core(query: tf.Tensor, key: tf.Tensor, value: tf.Tensor,
                   attention_mask: Optional[tf.Tensor], size_per_head: int,
                   dropout_rate: Optional[float]) -> tf.Tensor:
  """Scaled dot-product attention with bfloat16 products.

  Args:
    query: bfloat16 [B, F, N, H]; key, value: bfloat16 [B, T, N, H].
    attention_mask: int or float [B, F, T], 1 where a query may attend, or
      None.
    size_per_head: H (scores are scaled by 1 / sqrt(H)).
    dropout_rate: attention-probability dropout (`dropout`), or None / 0.

  Returns:
    bfloat16 [B, F, N, H], the context. Scaling, mask, softmax and dropout
    are float32, as in bert.modeling.

  Example: with one key (T = 1) and no dropout, every query's context is
  that key's value.
  """
  heads_first = [0, 2, 1, 3]  # [B, *, N, H] <-> [B, N, *, H]
  scores = tf.cast(tf.matmul(tf.transpose(query, heads_first),
                             tf.transpose(key, heads_first),
                             transpose_b=True), tf.float32)  # [B, N, F, T]
  scores *= 1.0 / math.sqrt(float(size_per_head))
  if attention_mask is not None:
    mask = tf.expand_dims(tf.cast(attention_mask, tf.float32), axis=1)
    scores += (1.0 - mask) * -10000.0
  probabilities = dropout(tf.nn.softmax(scores), dropout_rate)
  context = tf.matmul(tf.cast(probabilities, value.dtype),
                      tf.transpose(value, heads_first))  # [B, N, F, H]
  return tf.transpose(context, heads_first)


@tf.RegisterGradient(BIAS_GRADIENT)
def bias_grad(op, grad):
  """Gradients of BiasAdd(x [rows, C], bias [C]) with the bias's as a product.

  Returns:
    (grad, ones[1, rows] @ grad reshaped to [C]).

  Example: grad [[1, 2], [3, 4]] -> bias gradient [4, 6].
  """
  del op  # BiasAdd's gradient does not depend on its inputs.
  columns = tf.shape(grad)[-1]
  rows = tf.reshape(grad, [-1, columns])
  ones = tf.ones(tf.stack([1, tf.shape(rows)[0]]), grad.dtype)
  return grad, tf.reshape(tf.matmul(ones, rows), [columns])


def bias_gradient_scope():
  """Context manager: BiasAdd ops built inside get `bias_grad`."""
  return tf1.get_default_graph().gradient_override_map(
      {"BiasAdd": BIAS_GRADIENT})
