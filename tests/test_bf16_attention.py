"""trainer.model.bf16_attention: bfloat16 dropout, attention and bias gradient.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from trainer.model import bf16_attention

tf1 = tf.compat.v1


def _run(fetches):
  with tf1.Session() as session:
    return session.run(fetches)


def test_dropout_zeroes_or_scales_at_the_rate():
  with tf.Graph().as_default():
    x = tf.ones([500, 2000], tf.bfloat16)
    y = tf.cast(bf16_attention.dropout(x, 0.1), tf.float32)
    values = _run(y)
  # Kept elements are scaled by 65536 / (65536 - 6554) = 1.11112, which
  # bfloat16 rounds to 1.109375.
  assert set(np.unique(values).tolist()) == {0.0, 1.109375}
  dropped = float((values == 0).mean())
  # 1e6 elements: the standard error of the fraction is 3e-4.
  assert dropped == pytest.approx(6554 / 65536, abs=2e-3)


def test_dropout_half_rate_threshold_and_scale_in_float32():
  with tf.Graph().as_default():
    values = _run(bf16_attention.dropout(tf.fill([1000, 100], 3.0), 0.5))
  assert set(np.unique(values).tolist()) == {0.0, 6.0}
  assert float((values == 0).mean()) == pytest.approx(0.5, abs=1e-2)


def test_dropout_draws_new_bits_each_run_and_repeats_under_a_seed():
  def two_runs():
    with tf.Graph().as_default():
      tf1.set_random_seed(7)
      y = bf16_attention.dropout(tf.ones([64, 64]), 0.3)
      with tf1.Session() as session:
        return session.run(y), session.run(y)
  first, second = two_runs()
  assert not np.array_equal(first, second)
  again, _ = two_runs()
  np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("rate", [None, 0.0])
def test_no_dropout_returns_the_input(rate):
  with tf.Graph().as_default():
    x = tf.ones([2, 2])
    assert bf16_attention.dropout(x, rate) is x


def test_dropout_rejects_a_rate_of_one():
  with tf.Graph().as_default(), pytest.raises(ValueError, match=r"\[0, 1\)"):
    bf16_attention.dropout(tf.ones([2, 2]), 1.0)


def _reference_attention(query, key, value, mask, size_per_head):
  """bert.modeling's attention in float64 numpy, [B, F, N, H] in and out."""
  scores = np.einsum("btnh,bfnh->bnft", key, query) / math.sqrt(size_per_head)
  scores = scores + (1.0 - mask[:, None]) * -10000.0
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  return np.einsum("bnft,btnh->bfnh", probs, value)


def test_attention_core_matches_bert_attention():
  rng = np.random.RandomState(0)
  # bfloat16-exact inputs, so the reference sees what the products see.
  shape = [2, 5, 3, 4]  # [B, F=T, N, H]
  query, key, value = (
      tf.cast(tf.cast(rng.randn(*shape).astype(np.float32), tf.bfloat16),
              tf.float32).numpy() for _ in range(3))
  mask = np.ones([2, 5, 5], np.float32)
  mask[1, :, 3:] = 0.0  # the second example's last two positions are padding
  with tf.Graph().as_default():
    context = bf16_attention.attention_core(
        *(tf.cast(t, tf.bfloat16) for t in (query, key, value)),
        tf.constant(mask), 4, dropout_rate=None)
    assert context.dtype == tf.bfloat16
    assert context.shape.as_list() == shape
    result = _run(tf.cast(context, tf.float32))
  expected = _reference_attention(query, key, value, mask, 4)
  # Probabilities are rounded to bfloat16 (2^-9 relative) before the
  # context product, and the context itself is rounded once more.
  np.testing.assert_allclose(result, expected, rtol=2e-2, atol=2e-2)
  # Masked keys get no weight: with one key left, the context is its value.
  with tf.Graph().as_default():
    one_key = np.zeros([1, 2, 2], np.float32)
    one_key[..., 0] = 1.0
    context = bf16_attention.attention_core(
        *(tf.cast(t[:1, :2], tf.bfloat16) for t in (query, key, value)),
        tf.constant(one_key), 4, dropout_rate=None)
    result = _run(tf.cast(context, tf.float32))
  for position in range(2):
    np.testing.assert_array_equal(result[0, position], value[0, 0])


def test_bias_gradient_is_the_column_sum_as_a_product():
  with tf.Graph().as_default() as graph:
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]], tf.bfloat16)
    bias = tf.constant([0.5, -0.5], tf.bfloat16)
    with bf16_attention.bias_gradient_scope():
      y = tf.nn.bias_add(x, bias)
    x_grad, bias_grad = tf.gradients(y, [x, bias], grad_ys=x)
    types = {op.type for op in graph.get_operations()}
    x_grad, bias_grad = _run((tf.cast(x_grad, tf.float32),
                              tf.cast(bias_grad, tf.float32)))
  assert bias_grad.tolist() == [4.0, 6.0]
  assert x_grad.tolist() == [[1.0, 2.0], [3.0, 4.0]]
  assert "BiasAddGrad" not in types and "MatMul" in types
