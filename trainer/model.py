"""The Estimator `model_fn`: BERT encoder, token-classification head, loss,
optimizer over the trainable set, eval metrics and predictions.

Tensors (B = batch, T = positions in the batch, L = number of labels)::

    input_ids, input_mask, segment_ids   int32 [B, T]
    label_ids                            int32 [B, T], -1 where unlabelled
    logits                               float32 [B, T, L]
    predictions: tags string [B, T], label_ids int32 [B, T], scores float32 [B, T]
"""

import dataclasses
import time

from absl import logging
import numpy as np
import tensorflow as tf

from trainer import crf as crf_lib
from trainer import features as features_lib
from trainer import metrics as metrics_lib
from trainer import schema
from trainer import tag_schemes
from trainer import optimization
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

HEAD_SCOPE = "ner_head"
# Standard BERT fine-tuning settings (google-research/bert create_optimizer).
WEIGHT_DECAY_RATE = 0.01
ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-6
CLIP_NORM = 1.0
EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")


HEADS = ("softmax", "crf", "bilstm_crf")


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  """The task layer on top of BERT.

  Attributes:
    kind: "softmax" (a dense layer per word-piece, the google-research/bert
      recipe), "crf" (dense + linear-chain CRF over words) or "bilstm_crf"
      (BiLSTM + dense + CRF over words).
    dropout: dropout on BERT's sequence output (and between LSTM layers)
      while training.
    lstm_units: units per direction of each BiLSTM layer.
    lstm_layers: stacked BiLSTM layers.
    crf_constrain_bio: forbid impossible transitions (O -> I-X, B-X -> I-Y,
      ...) in Viterbi decoding.
    continuation_ids: ids of word-pieces that never start a word (``##``
      pieces and specials). Used only when a request carries no
      `word_positions` (the plain `serving_default` signature): a position
      starts a word iff it is real and its piece is not a continuation.
  """
  kind: str = "softmax"
  dropout: float = 0.1
  lstm_units: int = 128
  lstm_layers: int = 1
  crf_constrain_bio: bool = False
  continuation_ids: tuple = ()

  @property
  def uses_crf(self):
    return self.kind in ("crf", "bilstm_crf")

  def as_json(self):
    """JSON-ready settings (continuation ids are derived from the vocab)."""
    return {"kind": self.kind, "dropout": self.dropout,
            "lstm_units": self.lstm_units, "lstm_layers": self.lstm_layers,
            "crf_constrain_bio": self.crf_constrain_bio}


def continuation_ids_from_vocab(vocab):
  """Ids of pieces that never start a word: '##...' pieces and specials.

  [UNK] is not among them: an unknown word is still a word.

  Example: {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "john": 5, "##son": 7}
  -> (0, 2, 7).
  """
  never_start = set(schema.SPECIAL_TOKENS) - {schema.UNK_TOKEN}
  return tuple(sorted(index for piece, index in vocab.items()
                      if piece.startswith("##") or piece in never_start))


def word_start_mask(features, continuation_ids):
  """bool [B, T]: positions holding the first word-piece of a word.

  Exact from `word_positions` when present (training, eval, predict and the
  `predict_examples` signature); otherwise derived from the piece ids.
  """
  real = tf.cast(features[schema.INPUT_MASK], tf.bool)
  if schema.WORD_POSITIONS in features:
    # `and real`: batched tf.Examples are padded with 0, which would
    # otherwise read as "word 0 starts here".
    return tf.logical_and(features[schema.WORD_POSITIONS] >= 0, real)
  input_ids = features[schema.INPUT_IDS]
  is_continuation = np.zeros([max(continuation_ids, default=0) + 1], np.bool_)
  is_continuation[list(continuation_ids)] = True
  table = tf.constant(is_continuation)
  in_table = input_ids < tf.shape(table)[0]
  continuation = tf.logical_and(
      in_table, tf.gather(table, tf.where(in_table, input_ids,
                                          tf.zeros_like(input_ids))))
  return tf.logical_and(real, tf.logical_not(continuation))


def bert_sequence_output(bert_config, is_training, features,
                         use_one_hot_embeddings=False):
  """float32 [B, T, H] from `modeling.BertModel` on the feature dict."""
  model = modeling.BertModel(
      config=bert_config, is_training=is_training,
      input_ids=features[schema.INPUT_IDS],
      input_mask=features[schema.INPUT_MASK],
      token_type_ids=features[schema.SEGMENT_IDS],
      use_one_hot_embeddings=use_one_hot_embeddings)
  return model.get_sequence_output()


def _dense_logits(inputs, num_labels):
  """[..., H] -> float32 [..., L] with the head's output layer variables."""
  hidden_size = inputs.shape[-1]
  kernel = tf1.get_variable(
      "output_weights", [hidden_size, num_labels],
      initializer=tf1.truncated_normal_initializer(stddev=0.02))
  bias = tf1.get_variable("output_bias", [num_labels],
                          initializer=tf1.zeros_initializer())
  return tf.einsum("...h,hl->...l", inputs, kernel) + bias


def _bilstm(inputs, lengths, head, is_training):
  """Stacked BiLSTM over [B, W, H] words -> float32 [B, W, 2 * units]."""
  outputs = inputs
  for layer in range(head.lstm_layers):
    with tf1.variable_scope("bilstm_%d" % layer):
      forward = tf1.nn.rnn_cell.LSTMCell(head.lstm_units, name="forward")
      backward = tf1.nn.rnn_cell.LSTMCell(head.lstm_units, name="backward")
      (out_fw, out_bw), _ = tf1.nn.bidirectional_dynamic_rnn(
          forward, backward, outputs, sequence_length=lengths,
          dtype=tf.float32)
      outputs = tf.concat([out_fw, out_bw], axis=-1)
      if is_training and head.dropout and layer + 1 < head.lstm_layers:
        outputs = tf.nn.dropout(outputs, rate=head.dropout)
  return outputs


class _Head:
  """Built head: predictions plus a loss function of the gold label ids."""

  def __init__(self, outputs, loss_fn):
    self.outputs = outputs    # {tags, label_ids, scores}: [B, T] each
    self.loss_fn = loss_fn    # label_ids [B, T] -> (loss, values, weights)


def _softmax_head(sequence_output, label_names):
  logits = _dense_logits(sequence_output, len(label_names))   # [B, T, L]
  probabilities = tf.nn.softmax(logits, axis=-1)
  pred_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)

  def loss_fn(label_ids):
    loss, per_position, weights = masked_token_loss(logits, label_ids)
    return loss, per_position, weights

  return _Head({schema.OUTPUT_LABEL_IDS: pred_ids,
                schema.OUTPUT_SCORES: tf.reduce_max(probabilities, -1)},
               loss_fn)


def _crf_head(sequence_output, starts, label_names, head, is_training):
  """Dense (+ BiLSTM) and a CRF over the first piece of each word."""
  num_labels = len(label_names)
  max_time = tf.shape(sequence_output)[1]
  words, lengths, indices = crf_lib.gather_word_positions(sequence_output,
                                                          starts)
  if head.kind == "bilstm_crf":
    words = _bilstm(words, lengths, head, is_training)
    if is_training and head.dropout:
      words = tf.nn.dropout(words, rate=head.dropout)
  potentials = _dense_logits(words, num_labels)                  # [B, W, L]
  with tf1.variable_scope("crf"):
    transitions = tf1.get_variable(
        "transitions", [num_labels, num_labels],
        initializer=tf1.zeros_initializer())
    start = tf1.get_variable("start_transitions", [num_labels],
                             initializer=tf1.zeros_initializer())
    end = tf1.get_variable("end_transitions", [num_labels],
                           initializer=tf1.zeros_initializer())
  allowed = allowed_start = allowed_end = None
  if head.crf_constrain_bio:
    allowed, allowed_start = crf_lib.bio_allowed_transitions(label_names)
    allowed_end = crf_lib.bio_allowed_end(label_names)
  word_tags, _ = crf_lib.crf_viterbi_decode(
      potentials, lengths, transitions, start, end,
      allowed_transitions=allowed, allowed_start=allowed_start,
      allowed_end=allowed_end)                                   # [B, W]
  marginals = crf_lib.crf_marginals(potentials, lengths, transitions, start,
                                    end)                         # [B, W, L]
  word_scores = tf.reduce_sum(
      marginals * tf.one_hot(word_tags, num_labels), axis=-1)    # [B, W]
  pred_ids = crf_lib.scatter_to_positions(word_tags, indices, max_time, 0)
  scores = crf_lib.scatter_to_positions(word_scores, indices, max_time, 0.0)

  def loss_fn(label_ids):
    gold, _, _ = crf_lib.gather_word_positions(label_ids, starts)
    log_likelihood = crf_lib.crf_log_likelihood(
        potentials, gold, lengths, transitions, start, end)     # [B]
    words_per_row = tf.cast(lengths, tf.float32)
    loss = -tf.reduce_sum(log_likelihood) / tf.maximum(
        tf.reduce_sum(words_per_row), 1.0)
    # Per-row negative log-likelihood per word, weighted by words, so the
    # eval mean is the corpus NLL per word whatever the batching.
    return (loss, -log_likelihood / tf.maximum(words_per_row, 1.0),
            words_per_row)

  return _Head({schema.OUTPUT_LABEL_IDS: pred_ids,
                schema.OUTPUT_SCORES: scores}, loss_fn)


def build_head(bert_config, label_names, features, is_training=False,
               head=None, use_one_hot_embeddings=False):
  """BERT + task head on a feature dict: the one definition of predictions.

  Used by the Estimator `model_fn` and by every exported signature, so
  training-time prediction and serving cannot drift apart.

  Args:
    bert_config: `modeling.BertConfig`.
    label_names: list of str, index = label id.
    features: dict with int32 [B, T] `input_ids`, `input_mask`,
      `segment_ids`, and optionally `word_positions`.
    is_training: enables dropout.
    head: `HeadConfig` (default: softmax).

  Returns:
    `_Head` with `outputs` {tags: string [B, T], label_ids: int32 [B, T],
    scores: float32 [B, T]} and `loss_fn(label_ids) -> (loss [], values,
    weights)` (the last two for the batching-invariant `token_loss` metric).
    With a CRF head only first word-piece positions carry a predicted tag;
    other positions get label id 0 and score 0.
  """
  head = head or HeadConfig()
  if head.kind not in HEADS:
    raise ValueError("Unknown head %r; allowed: %s." % (head.kind,
                                                        ", ".join(HEADS)))
  sequence_output = bert_sequence_output(bert_config, is_training, features,
                                         use_one_hot_embeddings)
  if is_training and head.dropout:
    sequence_output = tf.nn.dropout(sequence_output, rate=head.dropout)
  with tf1.variable_scope(HEAD_SCOPE):
    if head.uses_crf:
      built = _crf_head(sequence_output,
                        word_start_mask(features, head.continuation_ids),
                        label_names, head, is_training)
    else:
      built = _softmax_head(sequence_output, label_names)
  built.outputs[schema.OUTPUT_TAGS] = tf.gather(
      tf.constant(list(label_names)), built.outputs[schema.OUTPUT_LABEL_IDS])
  return built


def build_outputs(bert_config, label_names, features, is_training=False,
                  head=None):
  """Predictions only: {tags, label_ids, scores}, see `build_head`."""
  return build_head(bert_config, label_names, features, is_training,
                    head).outputs


def masked_token_loss(logits, label_ids):
  """Mean cross-entropy over labelled positions.

  Args:
    logits: float32 [B, T, L].
    label_ids: int32 [B, T], `schema.PAD_LABEL_ID` where unlabelled.

  Returns:
    (loss float32 [], per_position float32 [B, T] (0 where unlabelled),
     weights float32 [B, T] (1 where labelled)).
  """
  weights = tf.cast(tf.not_equal(label_ids, schema.PAD_LABEL_ID), tf.float32)
  safe_labels = tf.maximum(label_ids, 0)
  per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=safe_labels, logits=logits) * weights
  loss = tf.reduce_sum(per_position) / tf.maximum(tf.reduce_sum(weights), 1.0)
  return loss, per_position, weights


def create_train_op(loss, variables, init_lr, num_train_steps,
                    num_warmup_steps, use_amp=False, accumulation_steps=1,
                    loss_weight=None, cross_shard_sum=False, num_shards=1):
  """AdamW with linear warmup and decay, over exactly `variables`.

  The same schedule, update and clipping as `bert.optimization.
  create_optimizer`, which however differentiates every trainable variable;
  here gradients are taken only for `variables`, so a frozen encoder costs no
  backward pass and gets no optimizer slots. The optimizer is
  `trainer.optimization.AdamWeightDecayOptimizer` (bert's update, through the
  base class, so distribution strategies aggregate gradients).

  Args:
    loss: float32 [] scalar.
    variables: list of `tf.Variable` to train.
    init_lr: float, peak learning rate.
    num_train_steps: int, steps to decay to 0 over.
    num_warmup_steps: int, steps of linear warmup from 0.
    use_amp: dynamic loss scaling for float16 (steps with non-finite
      gradients are skipped and the scale halved).
    accumulation_steps: K > 1 accumulates the gradients of K micro-batches
      and applies their mean once (global step = updates).
    loss_weight: float32 [], what `loss` is a mean over (labelled tokens);
      with accumulation, micro-batch gradients are weighted by it, so the
      update equals the one of the whole batch exactly.
    cross_shard_sum: TPU: sum gradients over `num_shards` cores
      (`CrossShardOptimizer`); each core's loss is scaled by 1 / num_shards.
    num_shards: TPU cores.

  Returns:
    (train_op, learning_rate tensor).
  """
  global_step = tf1.train.get_or_create_global_step()
  learning_rate = tf1.train.polynomial_decay(
      tf.constant(init_lr, tf.float32), global_step, num_train_steps,
      end_learning_rate=0.0, power=1.0, cycle=False)
  if num_warmup_steps:
    step = tf.cast(global_step, tf.float32)
    warmup = tf.constant(float(num_warmup_steps))
    is_warmup = tf.cast(step < warmup, tf.float32)
    learning_rate = ((1.0 - is_warmup) * learning_rate
                     + is_warmup * init_lr * step / warmup)
  # Under a distribution strategy the optimizer SUMs replica gradients. Each
  # replica's loss is a mean over its own labelled tokens; re-weight it by
  # its share of the global batch's tokens so the summed gradient is the
  # single-device gradient of the whole batch.
  replica_context = tf.distribute.get_replica_context()
  replicas = replica_context.num_replicas_in_sync
  if replicas > 1 and accumulation_steps > 1:
    raise ValueError("Gradient accumulation is not supported together with "
                     "a distribution strategy; use a larger per-replica "
                     "batch or more replicas instead.")
  if replicas > 1:
    local = (tf.constant(1.0) if loss_weight is None
             else tf.cast(loss_weight, tf.float32))
    total = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, local)
    loss = loss * local / tf.maximum(total, 1e-9)
  if cross_shard_sum and num_shards > 1:
    loss = loss / num_shards
  if use_amp:
    loss_scale = optimization.DynamicLossScale()
    grads = tf.gradients(loss * loss_scale.scale, variables)
    grads = [None if g is None else _scale_gradient(g, 1.0 / loss_scale.scale)
             for g in grads]
  else:
    grads = tf.gradients(loss, variables)
  # Dense gradients: the global norm for clipping must count an embedding row
  # that occurs twice in a batch once with its summed gradient (the norm of
  # IndexedSlices values would count the duplicates separately), and the
  # optimizer's update touches every row anyway.
  pairs = [(tf.convert_to_tensor(g), v) for g, v in zip(grads, variables)
           if g is not None]
  if accumulation_steps > 1:
    # Sum K micro-batch gradients; update with their mean on every K-th
    # micro-batch (K micro-batches of B == one batch of K * B). The global
    # step counts updates, so the learning-rate schedule is unchanged.
    micro_step = tf1.get_variable(
        "gradient_accumulation_micro_step", initializer=tf.constant(
            0, tf.int64), trainable=False)
    sums = [tf1.get_variable(
        v.op.name + "/gradient_accumulator", shape=v.shape, dtype=tf.float32,
        initializer=tf1.zeros_initializer(), trainable=False)
            for _, v in pairs]
    weight_sum = tf1.get_variable(
        "gradient_accumulation_weight", initializer=tf.constant(0.0),
        trainable=False)
    weight = tf.constant(1.0) if loss_weight is None else loss_weight
    accumulate = tf.group(
        weight_sum.assign_add(weight),
        *[total.assign_add(tf.convert_to_tensor(g) * weight)
          for total, (g, _) in zip(sums, pairs)])
    sums.append(weight_sum)
    with tf.control_dependencies([accumulate]):
      ready = tf.equal((micro_step + 1) % accumulation_steps, 0)
      denominator = tf.maximum(weight_sum.read_value(), 1e-9)
      pairs = [(total.read_value() / denominator, v)
               for total, (_, v) in zip(sums, pairs)]
  else:
    ready = tf.constant(True)
  if replicas > 1:
    # Clip the *global* gradient, as one device would: all-reduce first
    # (every replica then holds the same sum), clip, and hand the optimizer
    # 1/replicas of it, since it sums replica gradients again.
    reduced = replica_context.all_reduce(tf.distribute.ReduceOp.SUM,
                                         [g for g, _ in pairs])
    pairs = [(g, v) for g, (_, v) in zip(reduced, pairs)]
  finite = (optimization.all_finite([g for g, _ in pairs]) if use_amp
            else tf.constant(True))
  clipped, _ = tf.clip_by_global_norm([g for g, _ in pairs],
                                      clip_norm=CLIP_NORM)
  if replicas > 1:
    clipped = [g / replicas for g in clipped]
  pairs = list(zip(clipped, [v for _, v in pairs]))
  if use_amp and replicas > 1:
    # apply_gradients all-reduces through merge_call, which cannot run in a
    # tf.cond branch: a non-finite step instead gets zero gradients and a
    # zero learning rate (Adam moments decay once; weights do not move).
    pairs = [(tf.where(finite, g, tf.zeros_like(g)), v) for g, v in pairs]
    learning_rate_used = learning_rate * tf.cast(finite, tf.float32)
  else:
    learning_rate_used = learning_rate
  optimizer = optimization.AdamWeightDecayOptimizer(
      learning_rate=learning_rate_used, weight_decay_rate=WEIGHT_DECAY_RATE,
      beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2, epsilon=ADAM_EPSILON,
      exclude_from_weight_decay=list(EXCLUDE_FROM_WEIGHT_DECAY))
  if cross_shard_sum:
    # As google-research/bert on TPU: clip per core, sum across cores.
    optimizer = tf1.tpu.CrossShardOptimizer(
        optimizer, reduction=tf1.losses.Reduction.SUM)

  def apply_and_step():
    if use_amp and replicas == 1:
      updates = [tf.cond(finite, lambda: optimizer.apply_gradients(pairs),
                         tf.no_op), loss_scale.update(finite)]
    elif use_amp:
      updates = [optimizer.apply_gradients(pairs), loss_scale.update(finite)]
    else:
      # No tf.cond: see above.
      updates = [optimizer.apply_gradients(pairs)]
    # The global step advances on skipped (non-finite) steps too, keeping the
    # schedule.
    with tf.control_dependencies(updates):
      step_ops = [global_step.assign_add(1)]
      if accumulation_steps > 1:
        step_ops += [total.assign(tf.zeros_like(total)) for total in sums]
      return tf.group(*step_ops)

  if accumulation_steps > 1:
    train_op = tf.cond(ready, apply_and_step, tf.no_op)
    with tf.control_dependencies([train_op]):
      train_op = micro_step.assign_add(1)
  else:
    train_op = apply_and_step()
  if use_amp:
    tf1.summary.scalar("loss_scale", loss_scale.scale)
  return train_op, learning_rate


def _scale_gradient(grad, factor):
  if isinstance(grad, tf.IndexedSlices):
    return tf.IndexedSlices(grad.values * factor, grad.indices,
                            grad.dense_shape)
  return grad * factor


def restore_and_select_trainable(init_checkpoint, freeze_bert,
                                 use_scaffold=False):
  """Initialises from a checkpoint and returns the variables to train.

  Args:
    init_checkpoint: path prefix of a BERT checkpoint, or None/"".
    freeze_bert: when True, train only variables NOT restored from the
      checkpoint (the head); when False, train everything.
    use_scaffold: TPU: initialise inside a `scaffold_fn` (run on the host)
      instead of in the model graph.

  Returns:
    (list of `tf.Variable` to train, scaffold_fn or None).
  """
  tvars = tf1.trainable_variables()
  restored = {}
  scaffold_fn = None
  if init_checkpoint:
    assignment_map, restored = modeling.get_assignment_map_from_checkpoint(
        tvars, init_checkpoint)
    if use_scaffold:
      def scaffold_fn():
        tf1.train.init_from_checkpoint(init_checkpoint, assignment_map)
        return tf1.train.Scaffold()
    else:
      tf1.train.init_from_checkpoint(init_checkpoint, assignment_map)
  logging.info("**** Trainable Variables ****")
  trainable = []
  for var in tvars:
    is_restored = var.name in restored
    if not (freeze_bert and is_restored):
      trainable.append(var)
    logging.info("  name = %s, shape = %s%s%s", var.name, var.shape,
                 ", *INIT_FROM_CKPT*" if is_restored else "",
                 ", *FROZEN*" if freeze_bert and is_restored else "")
  if not init_checkpoint:
    logging.warning("No --init_checkpoint: BERT starts from random weights and "
                    "every variable trains (--freeze_bert has no effect).")
  if not trainable:
    raise ValueError(
        "--freeze_bert is set but every variable was restored from %s, so "
        "nothing would train. Use a BERT checkpoint without an NER head, or "
        "--nofreeze_bert." % init_checkpoint)
  logging.info("Training %d of %d variables (%d parameters).", len(trainable),
               len(tvars), sum(int(np.prod(v.shape)) for v in trainable))
  return trainable, scaffold_fn


class EntityMetricAccumulator:
  """Collects eval windows and scores whole sentences with seqeval.

  Windows are merged with `features.merge_window_outputs` (each word scored
  in the window where it has most context), exactly as at prediction time, so
  eval metrics equal the metrics of `--do_predict` output.
  """

  def __init__(self, label_names):
    self._label_names = list(label_names)
    self._windows = []
    self._result = None

  def update(self, example_index, word_positions, score_mask, gold_ids,
             pred_ids):
    """Adds one batch (numpy arrays [B] and [B, T]); returns 0 (for py_func)."""
    for i in range(len(example_index)):
      if example_index[i] < 0:
        continue  # a padding window (fixed-size TPU batches)
      self._windows.append({
          schema.EXAMPLE_INDEX: int(example_index[i]),
          schema.WORD_POSITIONS: word_positions[i].tolist(),
          schema.SCORE_MASK: score_mask[i].tolist(),
          "gold": gold_ids[i].tolist(),
          "pred": pred_ids[i].tolist(),
      })
    self._result = None
    return np.int32(0)

  def result(self):
    """Dict of metrics from `metrics.entity_metrics` plus flat per-type keys."""
    if self._result is None:
      num_words = {}
      for window in self._windows:
        example = window[schema.EXAMPLE_INDEX]
        scored = [w for w, s in zip(window[schema.WORD_POSITIONS],
                                    window[schema.SCORE_MASK]) if s]
        num_words[example] = max([num_words.get(example, 0)]
                                 + [w + 1 for w in scored])
      # Renumber examples densely: eval may run on a subset of steps.
      order = sorted(num_words)
      dense = {example: i for i, example in enumerate(order)}
      windows = [dict(w, **{schema.EXAMPLE_INDEX: dense[w[schema.EXAMPLE_INDEX]]})
                 for w in self._windows]
      merged = features_lib.merge_window_outputs(
          windows, [num_words[e] for e in order])
      gold = [[self._label_names[i] for i in m["gold"]] for m in merged]
      pred = [[self._label_names[i] for i in m["pred"]] for m in merged]
      self._result = metrics_lib.entity_metrics(gold, pred)
    return self._result

  def value(self, name):
    """float32 metric value: "precision", "f1", or "<TYPE>_f1" etc."""
    result = self.result()
    if name in result:
      return np.float32(result[name])
    entity_type, key = name.rsplit("_", 1)
    return np.float32(result["per_type"].get(entity_type, {}).get(key, 0.0))


def entity_metric_ops(accumulator, entity_types, features, pred_ids):
  """Estimator eval_metric_ops for entity-level P/R/F1 (overall and per type)."""
  update_op = tf1.py_func(
      accumulator.update,
      [features[schema.EXAMPLE_INDEX], features[schema.WORD_POSITIONS],
       features[schema.SCORE_MASK], features[schema.LABEL_IDS], pred_ids],
      tf.int32, stateful=True)
  names = ["precision", "recall", "f1"]
  for entity_type in entity_types:
    names += ["%s_%s" % (entity_type, key) for key in ("precision", "recall",
                                                        "f1")]
  ops = {}
  for name in names:
    value = tf1.py_func(lambda n=name: accumulator.value(n), [], tf.float32,
                        stateful=True)
    value.set_shape([])
    ops["entity_" + name] = (value, update_op)
  return ops


def entity_types_of(label_names):
  """Sorted entity types in a label list: ["O","B-PER","I-LOC"] -> ["LOC","PER"]."""
  return sorted({tag_schemes.split_tag(label)[1] for label in label_names}
                - {None})


def model_fn_builder(bert_config, label_names, init_checkpoint, learning_rate,
                     num_train_steps, num_warmup_steps, freeze_bert,
                     head=None, use_amp=False, accumulation_steps=1,
                     tpu_estimator=False, use_tpu=False, num_tpu_shards=1):
  """Returns a `model_fn(features, labels, mode, params)` for `tf.estimator`.

  Args:
    bert_config: `modeling.BertConfig`.
    label_names: list of str, index = label id.
    init_checkpoint: BERT checkpoint prefix or None.
    learning_rate, num_train_steps, num_warmup_steps: see `create_train_op`.
    freeze_bert: train only the variables not restored from the checkpoint.
    head: `HeadConfig` (default softmax).
    use_amp: dynamic loss scaling for float16 training (see
      `create_train_op`; the float16 graph rewrite is a session option).
    accumulation_steps: micro-batches per optimizer update.
    tpu_estimator: return `TPUEstimatorSpec`s (for `TPUEstimator`; also with
      use_tpu=False, which runs the same path on CPU/GPU).
    use_tpu: on a TPU: one-hot embedding lookups, checkpoint init in a
      `scaffold_fn`, cross-shard gradient sums, no string outputs.
    num_tpu_shards: TPU cores the batch is split over.
  """
  label_names = list(label_names)
  entity_types = entity_types_of(label_names)

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    is_training = mode == tf.estimator.ModeKeys.TRAIN
    built = build_head(bert_config, label_names, features, is_training, head,
                       use_one_hot_embeddings=use_tpu)
    outputs = built.outputs
    trainable, scaffold_fn = restore_and_select_trainable(
        init_checkpoint, freeze_bert, use_scaffold=use_tpu)
    pred_ids = outputs[schema.OUTPUT_LABEL_IDS]

    if mode == tf.estimator.ModeKeys.PREDICT:
      predictions = dict(outputs)
      if tpu_estimator:
        # TPUs return no strings; tags are rebuilt from ids on the host.
        del predictions[schema.OUTPUT_TAGS]
      # Window bookkeeping rides along for merging (absent when serving).
      for key in (schema.EXAMPLE_INDEX, schema.WORD_POSITIONS,
                  schema.SCORE_MASK):
        if key in features:
          predictions[key] = features[key]
      if tpu_estimator:
        return tf1.estimator.tpu.TPUEstimatorSpec(
            mode, predictions=predictions, scaffold_fn=scaffold_fn)
      export_outputs = {
          schema.SERVING_DEFAULT_SIGNATURE:
              tf.estimator.export.PredictOutput(dict(outputs))}
      return tf.estimator.EstimatorSpec(mode, predictions=predictions,
                                        export_outputs=export_outputs)

    label_ids = features[schema.LABEL_IDS]
    loss, loss_values, loss_weights = built.loss_fn(label_ids)

    if mode == tf.estimator.ModeKeys.TRAIN:
      train_op, lr = create_train_op(loss, trainable, learning_rate,
                                     num_train_steps, num_warmup_steps,
                                     use_amp=use_amp,
                                     accumulation_steps=accumulation_steps,
                                     loss_weight=tf.reduce_sum(loss_weights),
                                     cross_shard_sum=use_tpu,
                                     num_shards=num_tpu_shards)
      if not use_tpu:  # summaries on a TPU need a host_call
        tf1.summary.scalar("learning_rate", lr)
      hooks = [ProgressHook(loss, num_train_steps,
                            (params or {}).get("train_batch_size", 0))]
      if tpu_estimator:
        return tf1.estimator.tpu.TPUEstimatorSpec(
            mode, loss=loss, train_op=train_op, scaffold_fn=scaffold_fn,
            training_hooks=hooks)
      return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op,
                                        training_hooks=hooks)

    def metric_fn(example_index, word_positions, score_mask, gold_ids,
                  predicted_ids, values, weights):
      batch = {schema.EXAMPLE_INDEX: example_index,
               schema.WORD_POSITIONS: word_positions,
               schema.SCORE_MASK: score_mask, schema.LABEL_IDS: gold_ids}
      accumulator = EntityMetricAccumulator(label_names)
      metrics = entity_metric_ops(accumulator, entity_types, batch,
                                  predicted_ids)
      # Estimator's "loss" averages batch means, so it depends on batching;
      # token_loss is the mean over all labelled positions.
      metrics["token_loss"] = tf1.metrics.mean(values, weights=weights)
      scored = tf.cast(tf.logical_and(score_mask > 0, gold_ids >= 0),
                       tf.float32)
      metrics["token_accuracy"] = tf1.metrics.accuracy(
          labels=tf.maximum(gold_ids, 0), predictions=predicted_ids,
          weights=scored)
      return metrics

    metric_args = [features[schema.EXAMPLE_INDEX],
                   features[schema.WORD_POSITIONS],
                   features[schema.SCORE_MASK], label_ids, pred_ids,
                   loss_values, loss_weights]
    if tpu_estimator:
      return tf1.estimator.tpu.TPUEstimatorSpec(
          mode, loss=loss, eval_metrics=(metric_fn, metric_args),
          scaffold_fn=scaffold_fn)
    return tf.estimator.EstimatorSpec(mode, loss=loss,
                                      eval_metric_ops=metric_fn(*metric_args))

  return model_fn


class ProgressHook(tf1.train.SessionRunHook):
  """Logs step, loss, steps/s, examples/s and ETA every `every_secs` seconds."""

  def __init__(self, loss, total_steps, batch_size, every_secs=15.0):
    self._loss_tensor = loss
    self._total_steps = total_steps
    self._batch_size = batch_size
    self._every_secs = every_secs

  def begin(self):
    self._global_step = tf1.train.get_global_step()
    self._last_time = None
    self._last_step = None

  def before_run(self, run_context):  # pylint: disable=unused-argument
    return tf1.train.SessionRunArgs((self._global_step, self._loss_tensor))

  def after_run(self, run_context, run_values):
    step, loss = run_values.results
    step = int(step)
    now = time.time()
    if self._last_time is None:
      self._last_time, self._last_step = now, step
      return
    elapsed = now - self._last_time
    if elapsed < self._every_secs and step < self._total_steps:
      return
    steps_per_sec = (step - self._last_step) / max(elapsed, 1e-9)
    remaining = max(self._total_steps - step, 0)
    eta = remaining / steps_per_sec if steps_per_sec > 0 else float("inf")
    logging.info("step %d/%d (%.1f%%): loss %.4f, %.2f steps/s, "
                 "%.1f examples/s, ETA %s",
                 step, self._total_steps, 100.0 * step / self._total_steps, loss,
                 steps_per_sec, steps_per_sec * self._batch_size,
                 _format_seconds(eta))
    self._last_time, self._last_step = now, step


def _format_seconds(seconds):
  if seconds == float("inf"):
    return "unknown"
  seconds = int(seconds)
  return "%dh%02dm%02ds" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


class BatchProgressHook(tf1.train.SessionRunHook):
  """Logs eval/predict progress (batches done of total) every `every_secs`."""

  def __init__(self, phase, total_batches, every_secs=30.0):
    self._phase = phase
    self._total = total_batches
    self._every_secs = every_secs

  def begin(self):
    self._done = 0
    self._start = self._last = time.time()

  def after_run(self, run_context, run_values):
    self._done += 1
    now = time.time()
    if now - self._last >= self._every_secs:
      rate = self._done / max(now - self._start, 1e-9)
      logging.info("%s: batch %d/%d, %.1f batches/s, ETA %s", self._phase,
                   self._done, self._total, rate,
                   _format_seconds(max(self._total - self._done, 0) / rate))
      self._last = now

  def end(self, session):
    logging.info("%s: %d batches in %.1fs", self._phase, self._done,
                 time.time() - self._start)
