"""trainer.distill.loss: the distillation mask, the KL term, the mixed loss,
and the train loss `model_fn` builds from them.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from trainer import schema
from trainer.distill import loss as loss_lib
from trainer.model import heads
from trainer.tf_compat import modeling
from trainer.training import model_fn as model_fn_lib

tf1 = tf.compat.v1

LABELS = ["O", "B-LOC", "I-LOC"]
# Two windows, three labels. Row 0: positions 1 and 2 are distilled, 3 is a
# word start another window scores, 0 is [CLS]. Row 1: position 1 only.
STUDENT = np.array([[[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [3.0, 1.0, -1.0],
                     [9.0, -9.0, 0.0]],
                    [[0.0, 0.0, 0.0], [-1.0, 2.0, 0.0], [5.0, 5.0, 5.0],
                     [0.0, 0.0, 0.0]]], np.float32)
TEACHER = np.log(np.array([[[1 / 3, 1 / 3, 1 / 3], [0.7, 0.2, 0.1],
                            [0.1, 0.1, 0.8], [0.5, 0.25, 0.25]],
                           [[1 / 3, 1 / 3, 1 / 3], [0.05, 0.9, 0.05],
                            [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]]],
                          np.float32))
MASK = np.array([[0, 1, 1, 0], [0, 1, 0, 0]], np.float32)


def _numpy_kl(student, teacher, mask, temperature):
  """The KL term written out in float64 numpy."""
  def log_softmax(values):
    values = values.astype(np.float64) / temperature
    shifted = values - values.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  log_p, log_q = log_softmax(teacher), log_softmax(student)
  per_position = (np.exp(log_p) * (log_p - log_q)).sum(-1)
  return temperature ** 2 * (per_position * mask).sum() / mask.sum()


def test_distill_mask_keeps_scored_real_word_starts():
  features = {schema.WORD_POSITIONS: tf.constant([[-1, 0, -1, 1, 2, 0]]),
              schema.INPUT_MASK: tf.constant([[1, 1, 1, 1, 1, 0]]),
              schema.SCORE_MASK: tf.constant([[0, 1, 0, 1, 0, 0]])}
  mask = loss_lib.distill_mask(features)
  assert mask.dtype == tf.float32
  assert mask.numpy().tolist() == [[0, 1, 0, 1, 0, 0]]


def test_docstring_example():
  kl = loss_lib.kl_term(tf.zeros([1, 1, 2]),
                        tf.math.log(tf.constant([[[0.8, 0.2]]])),
                        tf.ones([1, 1]), 1.0)
  np.testing.assert_allclose(
      float(kl), 0.8 * math.log(1.6) + 0.2 * math.log(0.4), rtol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_kl_is_zero_when_the_student_matches_the_teacher(temperature):
  kl = loss_lib.kl_term(tf.constant(TEACHER), tf.constant(TEACHER),
                        tf.constant(MASK), temperature)
  assert float(kl) == 0.0


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kl_matches_numpy_over_masked_positions(temperature):
  kl = loss_lib.kl_term(tf.constant(STUDENT), tf.constant(TEACHER),
                        tf.constant(MASK), temperature)
  expected = _numpy_kl(STUDENT, TEACHER, MASK, temperature)
  np.testing.assert_allclose(float(kl), expected, rtol=1e-5)
  # Masked-out positions do not count: changing them changes nothing.
  changed = STUDENT.copy()
  changed[0, 3] = [-50.0, 50.0, 0.0]
  changed[1, 2] = [100.0, 0.0, 0.0]
  again = loss_lib.kl_term(tf.constant(changed), tf.constant(TEACHER),
                           tf.constant(MASK), temperature)
  assert float(again) == float(kl)


def test_kl_with_an_empty_mask_is_zero():
  kl = loss_lib.kl_term(tf.constant(STUDENT), tf.constant(TEACHER),
                        tf.zeros([2, 4]), 2.0)
  assert float(kl) == 0.0


def test_kl_gradient_reaches_the_student_at_masked_positions_only():
  student = tf.Variable(STUDENT)
  with tf.GradientTape() as tape:
    kl = loss_lib.kl_term(student, tf.constant(TEACHER), tf.constant(MASK),
                          2.0)
  gradient = tape.gradient(kl, student).numpy()
  assert np.all(np.isfinite(gradient))
  assert np.abs(gradient[0, 1]).sum() > 0 and np.abs(gradient[1, 1]).sum() > 0
  assert gradient[0, 0].tolist() == [0, 0, 0]
  assert gradient[0, 3].tolist() == [0, 0, 0]
  assert gradient[1, 2].tolist() == [0, 0, 0]
  # A softmax gradient sums to 0 over the labels.
  np.testing.assert_allclose(gradient.sum(-1), 0.0, atol=1e-6)


def test_distill_loss_mixes_the_terms():
  assert float(loss_lib.distill_loss(tf.constant(1.0), tf.constant(0.4),
                                     0.5)) == pytest.approx(0.7)
  assert float(loss_lib.distill_loss(tf.constant(1.0), tf.constant(0.4),
                                     1.0)) == 1.0
  assert float(loss_lib.distill_loss(tf.constant(1.0), tf.constant(0.4),
                                     0.0)) == pytest.approx(0.4)


def test_distilled_loss_combines_gold_and_kl():
  features = {schema.WORD_POSITIONS: tf.constant([[-1, 0, 1, 2],
                                                  [-1, 0, 1, -1]]),
              schema.INPUT_MASK: tf.ones([2, 4], tf.int32),
              schema.SCORE_MASK: tf.constant(MASK.astype(np.int32)),
              schema.TEACHER_LOG_PROBS: tf.constant(TEACHER)}
  settings = loss_lib.DistillSettings(alpha=0.25, temperature=2.0)
  built = loss_lib.distilled_loss(tf.constant(2.0), tf.constant(STUDENT),
                                  features, settings)
  kl = _numpy_kl(STUDENT, TEACHER, MASK, 2.0)
  np.testing.assert_allclose(float(built.kl), kl, rtol=1e-5)
  assert float(built.gold) == 2.0
  np.testing.assert_allclose(float(built.loss), 0.25 * 2.0 + 0.75 * kl,
                             rtol=1e-5)
  assert float(built.weight) == 3.0


# --- The train loss of model_fn -------------------------------------------

TINY_BERT = dict(vocab_size=20, hidden_size=32, num_hidden_layers=1,
                 num_attention_heads=2, intermediate_size=37,
                 max_position_embeddings=16, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0)


def _batch(labelled):
  """Two windows with teacher targets; label_ids all -1 unless `labelled`."""
  label_ids = ([[-1, 1, 2, 0, -1], [-1, 0, -1, 1, -1]] if labelled
               else [[-1] * 5, [-1] * 5])
  teacher = np.log(np.full([2, 5, 3], 1 / 3, np.float32))
  teacher[0, 1] = np.log([0.1, 0.8, 0.1])
  teacher[0, 2] = np.log([0.1, 0.1, 0.8])
  teacher[1, 3] = np.log([0.2, 0.7, 0.1])
  return {schema.INPUT_IDS: tf.constant([[2, 5, 6, 7, 3], [2, 8, 18, 9, 3]]),
          schema.INPUT_MASK: tf.ones([2, 5], tf.int32),
          schema.SEGMENT_IDS: tf.zeros([2, 5], tf.int32),
          schema.LABEL_IDS: tf.constant(label_ids),
          schema.EXAMPLE_INDEX: tf.constant([0, 1]),
          schema.WORD_POSITIONS: tf.constant([[-1, 0, 1, 2, -1],
                                              [-1, 0, -1, 1, -1]]),
          schema.SCORE_MASK: tf.constant([[0, 1, 1, 0, 0],
                                          [0, 1, 0, 1, 0]]),
          schema.TEACHER_LOG_PROBS: tf.constant(teacher)}


def _train_losses(head, labelled, alpha=0.3, distill=True):
  """(spec loss, gold term, KL term) of one TRAIN-mode model_fn call."""
  settings = (loss_lib.DistillSettings(alpha=alpha, temperature=2.0)
              if distill else None)
  model_fn = model_fn_lib.model_fn_builder(
      modeling.BertConfig(**TINY_BERT), LABELS, None, 1e-3, 10, 1, False,
      head=heads.HeadConfig(kind=head, dropout=0.0), distill=settings)
  with tf.Graph().as_default() as graph:
    tf1.set_random_seed(3)
    spec = model_fn(_batch(labelled), None, tf.estimator.ModeKeys.TRAIN, {})
    fetches = [spec.loss]
    if distill:
      fetches += [graph.get_tensor_by_name("distill_gold_loss:0"),
                  graph.get_tensor_by_name("distill_kl:0")]
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      return session.run(fetches)


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_unlabelled_windows_contribute_only_the_kl_term(head):
  loss, gold, kl = _train_losses(head, labelled=False, alpha=0.3)
  assert gold == 0.0
  assert kl > 0.0
  assert loss == np.float32(1.0 - 0.3) * kl


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_labelled_windows_mix_gold_and_kl(head):
  loss, gold, kl = _train_losses(head, labelled=True, alpha=0.3)
  assert gold > 0.0 and kl > 0.0
  np.testing.assert_allclose(loss, 0.3 * gold + 0.7 * kl, rtol=1e-6)
  # The gold term is the loss the same model trains on without a teacher.
  plain, = _train_losses(head, labelled=True, distill=False)
  np.testing.assert_allclose(gold, plain, rtol=1e-6)


def test_crf_gold_loss_of_an_unlabelled_batch_is_zero():
  # Without distillation too: a batch of tag-less windows is 0, never NaN
  # (nor a gather of label -1).
  loss, = _train_losses("crf", labelled=False, distill=False)
  assert loss == 0.0
