"""The distillation loss: gold cross-entropy plus temperature-scaled KL.

For a batch holding the teacher's log-probabilities
(`schema.TEACHER_LOG_PROBS`, see `trainer.distill.teacher`) the student's
train loss is (Hinton et al. 2015)::

    loss = alpha * gold + (1 - alpha) * T^2 * KL(p_T || q_T)

    gold   the head's own loss on the gold tags (`_Head.loss_fn`): the mean
           over labelled positions (softmax) or labelled words (CRF heads);
           windows without tags (--distill_unlabelled_file) add nothing, and
           a batch without any labelled position gives 0.
    p_T    softmax(teacher log-probabilities / T), the softened teacher.
    q_T    softmax(student emissions / T), the softened student (CRF heads:
           the softmax of their per-word potentials).
    KL     averaged over the batch's distillation positions (`distill_mask`);
           T^2 keeps its gradients on the gold term's scale as T grows.

Dividing log-probabilities by T softens exactly as dividing logits does:
log p = z - logsumexp(z), and the constant drops out of the softmax.

Example (one position, L = 2, T = 1): teacher log-probs log([0.8, 0.2]),
student logits [0, 0] (q = [0.5, 0.5]) -> KL = 0.8 log 1.6 + 0.2 log 0.4
= 0.1927; with alpha 0.5 and gold 1.0 the loss is 0.5 + 0.5 * 0.1927.
"""

from typing import Mapping, NamedTuple

import tensorflow as tf

from trainer import schema


class DistillSettings(NamedTuple):
  """How the student weighs the gold tags against the teacher.

  Attributes:
    alpha: the gold loss's weight in [0, 1]; 1 - alpha weighs the KL term.
    temperature: T > 0 softening both distributions in the KL term.
  """
  alpha: float
  temperature: float


class DistilledLoss(NamedTuple):
  """What `distilled_loss` built, every tensor float32 [].

  Attributes:
    loss: alpha * gold + (1 - alpha) * kl, the loss to train on.
    gold: the head's gold loss (0 without labelled positions).
    kl: T^2 * the mean KL over distillation positions (0 without any).
    weight: the number of distillation positions, what the loss is
      (mostly) a mean over: gradient accumulation and several replicas
      weigh batches by it.
  """
  loss: tf.Tensor
  gold: tf.Tensor
  kl: tf.Tensor
  weight: tf.Tensor


def distill_mask(features: Mapping[str, tf.Tensor]) -> tf.Tensor:
  """float32 [B, T]: 1 where the teacher's distribution is a target.

  A position counts where it starts a word (`word_positions` >= 0), is real
  (`input_mask` 1) and is the window that scores the word (`score_mask` >
  0): one target per word of every sentence, labelled or not.

  Example: word_positions [[-1, 0, -1, 1, 2, -1]], input_mask [[1, 1, 1, 1,
  1, 0]], score_mask [[0, 1, 0, 1, 0, 0]] -> [[0, 1, 0, 1, 0, 0]].

  Args:
    features: int32 [B, T] `word_positions`, `input_mask`, `score_mask`.
  """
  keep = tf.logical_and(
      tf.logical_and(features[schema.WORD_POSITIONS] >= 0,
                     tf.equal(features[schema.INPUT_MASK], 1)),
      features[schema.SCORE_MASK] > 0)
  return tf.cast(keep, tf.float32)


def kl_term(student_logits: tf.Tensor, teacher_log_probs: tf.Tensor,
            mask: tf.Tensor, temperature: float) -> tf.Tensor:
  """T^2 * mean over masked positions of KL(p_T || q_T).

  p_T = softmax(teacher_log_probs / T), q_T = softmax(student_logits / T),
  both through `log_softmax` in float32, so large logits and the teacher's
  clamped -30 log-probabilities stay finite. Positions outside `mask` get no
  gradient.

  Example: one position, teacher_log_probs log([0.8, 0.2]), student_logits
  [0, 0], mask [[1]], T 1 -> 0.8 log(0.8 / 0.5) + 0.2 log(0.2 / 0.5) =
  0.19274; student_logits equal to the teacher's log-probs -> 0 for any T.

  Args:
    student_logits: float [B, T, L], the student's per-position scores
      before softmax (`_Head.emissions`).
    teacher_log_probs: float [B, T, L], the teacher's log-probabilities.
    mask: float32 [B, T], 1 at distillation positions (`distill_mask`).
    temperature: T > 0.

  Returns:
    float32 []; 0 when the mask is empty.
  """
  scale = float(temperature)
  log_q = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / scale,
                            axis=-1)
  log_p = tf.nn.log_softmax(
      tf.stop_gradient(tf.cast(teacher_log_probs, tf.float32)) / scale,
      axis=-1)
  per_position = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
  mask = tf.cast(mask, tf.float32)
  mean = tf.reduce_sum(per_position * mask) / tf.maximum(
      tf.reduce_sum(mask), 1.0)
  return scale * scale * mean


def distill_loss(gold_loss: tf.Tensor, kl: tf.Tensor,
                 alpha: float) -> tf.Tensor:
  """alpha * gold_loss + (1 - alpha) * kl (float32 []).

  Example: gold 1.0, kl 0.4, alpha 0.5 -> 0.7; alpha 1 -> the gold loss.
  """
  return alpha * gold_loss + (1.0 - alpha) * kl


def distilled_loss(gold_loss: tf.Tensor, student_logits: tf.Tensor,
                   features: Mapping[str, tf.Tensor],
                   settings: DistillSettings) -> DistilledLoss:
  """The student's train loss on a batch holding the teacher's targets.

  Args:
    gold_loss: float32 [], the head's loss on the gold tags.
    student_logits: float32 [B, T, L], `_Head.emissions`.
    features: the batch: int32 [B, T] `word_positions`, `input_mask`,
      `score_mask` and float32 [B, T, L] `schema.TEACHER_LOG_PROBS`.
    settings: alpha and temperature.

  Returns:
    `DistilledLoss`; `gold` and `kl` are named "distill_gold_loss" and
    "distill_kl" in the graph.
  """
  mask = distill_mask(features)
  gold = tf.identity(tf.cast(gold_loss, tf.float32), name="distill_gold_loss")
  kl = tf.identity(kl_term(student_logits, features[schema.TEACHER_LOG_PROBS],
                           mask, settings.temperature), name="distill_kl")
  return DistilledLoss(distill_loss(gold, kl, settings.alpha), gold, kl,
                       tf.reduce_sum(mask))
