"""The Estimator `model_fn`: model, checkpoint restore, train op, metrics.

`model_fn_builder` returns the `model_fn(features, labels, mode, params)` that
`tf.estimator.Estimator` (or `TPUEstimator`) calls once per mode:

  PREDICT  `model.build_head` outputs (tags, label_ids, scores) plus the
           window bookkeeping features, and a `serving_default` export output.
  TRAIN    the head's loss and `optimization.create_train_op` over the
           variables `restore_and_select_trainable` picks. Batches holding
           `encoder_features` (cached training with a frozen encoder, see
           `trainer.features.encoder_cache`) go through
           `model.build_head_on_cached_features`: same head, same
           variables, BERT never runs. A student's batches holding the
           teacher's targets (--teacher_dir) add the KL term of
           `trainer.distill.loss` to the gold loss.
  EVAL     the loss, `token_loss`, `token_accuracy` and entity-level P/R/F1
           (`metrics.EntityMetricAccumulator` behind `py_func`s).

Both Estimator kinds get their spec from one `_spec` helper.
"""

import contextlib
from typing import Callable, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from trainer.training import hooks as hooks_lib
from trainer.evaluation import metrics as metrics_lib
from trainer.model import constant_weights as constant_weights_lib
from trainer.model import heads as model_lib
from trainer.model import optimization
from trainer import schema
from trainer.data import tag_schemes
from trainer.distill import layers as distill_layers
from trainer.distill import loss as distill_loss
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

# Entity-level metrics reported overall and per entity type.
ENTITY_METRIC_KEYS = ("precision", "recall", "f1")
# Features passed through to predictions for merging windows (absent when
# serving).
WINDOW_KEYS = (schema.EXAMPLE_INDEX, schema.WORD_POSITIONS, schema.SCORE_MASK)


def _student_assignment_map(tvars, init_checkpoint: str,
                            student_layers: Sequence[int]):
  """(checkpoint name -> student variable name, restored variable names).

  Like `modeling.get_assignment_map_from_checkpoint`, but student encoder
  layer i reads checkpoint layer `student_layers[i]`; the restored names are
  the variables' names ("bert/encoder/layer_0/...:0").
  """
  names = {var.name: var.name.rsplit(":", 1)[0] for var in tvars}
  assignment_map = distill_layers.assignment_map(
      {names[var.name]: var.shape.as_list() for var in tvars},
      dict(tf.train.list_variables(init_checkpoint)), student_layers)
  restored_names = set(assignment_map.values())
  for index, layer in enumerate(student_layers):
    logging.info("Student layer %d <- checkpoint layer %d", index, layer)
  return assignment_map, {name: 1 for name, short in names.items()
                          if short in restored_names}


def restore_and_select_trainable(init_checkpoint: Optional[str],
                                 freeze_bert: bool,
                                 use_scaffold: bool = False,
                                 student_layers: Optional[list[int]] = None):
  """Initialises from a checkpoint and returns the variables to train.

  Example: a graph with BERT and an NER head, a BERT checkpoint and
  freeze_bert=True -> ([ner_head/output_weights, ner_head/output_bias],
  None): BERT's variables are restored and frozen.

  Args:
    init_checkpoint: path prefix of a BERT checkpoint, or None/"".
    freeze_bert: when True, train only variables NOT restored from the
      checkpoint (the head); when False, train everything.
    use_scaffold: TPU: initialise inside a `scaffold_fn` (run on the host)
      instead of in the model graph.
    student_layers: for a student (--student_layers), the checkpoint layer
      each encoder layer starts from: with [1, 3, 5] the student's
      bert/encoder/layer_2/* is restored from the checkpoint's
      bert/encoder/layer_5/* (`trainer.distill.layers.assignment_map`);
      None restores same-named variables.

  Returns:
    (list of `tf.Variable` to train, scaffold_fn or None).

  Raises:
    ValueError: if freeze_bert leaves nothing to train.
  """
  tvars = tf1.trainable_variables()
  restored = {}
  scaffold_fn = None
  if init_checkpoint:
    if student_layers is not None:
      assignment_map, restored = _student_assignment_map(
          tvars, init_checkpoint, student_layers)
    else:
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
        f"--freeze_bert is set but every variable was restored from "
        f"{init_checkpoint}, so nothing would train. Use a BERT checkpoint "
        f"without an NER head, or --nofreeze_bert.")
  logging.info("Training %d of %d variables (%d parameters).", len(trainable),
               len(tvars), sum(int(np.prod(v.shape)) for v in trainable))
  return trainable, scaffold_fn


def entity_types_of(label_names: Sequence[str]) -> list[str]:
  """Sorted entity types of a label list.

  Example: ["O", "B-PER", "I-LOC", "B-LOC"] -> ["LOC", "PER"].
  """
  return sorted({tag_schemes.split_tag(label)[1] for label in label_names}
                - {None})


def entity_metric_ops(accumulator: metrics_lib.EntityMetricAccumulator,
                      entity_types: Sequence[str], features, pred_ids):
  """Estimator eval_metric_ops for entity-level P/R/F1 (overall and per type).

  Args:
    accumulator: collects the batches (its methods run in `py_func`s).
    entity_types: types to report, e.g. ["LOC", "PER"].
    features: int32 `example_index` [B], `word_positions`, `score_mask` and
      `label_ids` [B, T].
    pred_ids: int32 [B, T] predicted label ids.

  Returns:
    {"entity_precision": (value, update_op), ..., "entity_PER_f1": ...}, the
    values float32 [] and all sharing one update op.
  """
  update_op = tf1.py_func(
      accumulator.update,
      [features[schema.EXAMPLE_INDEX], features[schema.WORD_POSITIONS],
       features[schema.SCORE_MASK], features[schema.LABEL_IDS], pred_ids],
      tf.int32, stateful=True)
  names = list(ENTITY_METRIC_KEYS)
  for entity_type in entity_types:
    names += [f"{entity_type}_{key}" for key in ENTITY_METRIC_KEYS]
  ops = {}
  for name in names:
    value = tf1.py_func(lambda n=name: accumulator.value(n), [], tf.float32,
                        stateful=True)
    value.set_shape([])
    ops["entity_" + name] = (value, update_op)
  return ops


def _metric_fn_builder(label_names: Sequence[str]) -> Callable:
  """The eval `metric_fn` (called on the host on a TPU) for `label_names`."""
  entity_types = entity_types_of(label_names)

  def metric_fn(example_index, word_positions, score_mask, gold_ids,
                predicted_ids, values, weights):
    batch = {schema.EXAMPLE_INDEX: example_index,
             schema.WORD_POSITIONS: word_positions,
             schema.SCORE_MASK: score_mask, schema.LABEL_IDS: gold_ids}
    accumulator = metrics_lib.EntityMetricAccumulator(label_names)
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

  return metric_fn


def _spec(mode: str, tpu_estimator: bool, scaffold_fn=None, predictions=None,
          export_outputs=None, loss=None, train_op=None, training_hooks=None,
          eval_metrics=None):
  """A `TPUEstimatorSpec` or an `EstimatorSpec` from the same arguments.

  Args:
    mode: `tf.estimator.ModeKeys` value.
    tpu_estimator: build a `TPUEstimatorSpec` (with `scaffold_fn`) rather
      than an `EstimatorSpec` (which gets `export_outputs`).
    scaffold_fn, predictions, export_outputs, loss, train_op,
      training_hooks: as the specs take them; None when not used.
    eval_metrics: (metric_fn, list of tensors), as `TPUEstimatorSpec` takes
      it; for an `EstimatorSpec`, `metric_fn(*tensors)` is called here.
  """
  if tpu_estimator:
    return tf1.estimator.tpu.TPUEstimatorSpec(
        mode, predictions=predictions, loss=loss, train_op=train_op,
        eval_metrics=eval_metrics, scaffold_fn=scaffold_fn,
        training_hooks=training_hooks)
  eval_metric_ops = None
  if eval_metrics is not None:
    metric_fn, metric_args = eval_metrics
    eval_metric_ops = metric_fn(*metric_args)
  return tf.estimator.EstimatorSpec(
      mode, predictions=predictions, loss=loss, train_op=train_op,
      eval_metric_ops=eval_metric_ops, export_outputs=export_outputs,
      training_hooks=training_hooks)


def _predictions(outputs, features, tpu_estimator: bool) -> dict:
  """Head outputs plus the window features present (TPU: no string tags)."""
  predictions = dict(outputs)
  if tpu_estimator:
    # TPUs return no strings; tags are rebuilt from ids on the host.
    del predictions[schema.OUTPUT_TAGS]
  for key in WINDOW_KEYS:
    if key in features:
      predictions[key] = features[key]
  return predictions


def replica_mean_loss(loss: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """The loss to log and the loss to put in the train spec, per replica.

  Under a distribution strategy (several GPUs or workers) the Estimator SUMs
  the replicas' spec losses for its "loss = ..." log line and the loss
  summary, so two workers logged twice the real loss. Each replica's spec
  loss is divided by the number of replicas, so the sum is the mean over
  replicas; the progress log gets the mean itself (an all-reduce, which the
  caller must make part of every replica's train op: the Estimator runs the
  first replica's hooks only, and a collective that one replica never joins
  blocks the step).

  Example: two replicas with losses 1.8 and 1.6 -> spec losses 0.9 and 0.8
  (the Estimator logs 1.7), and both progress hooks see 1.7.

  Args:
    loss: float32 [], this replica's mean loss over its labelled tokens.

  Returns:
    (logged loss, spec loss), float32 []; both `loss` on one device.
  """
  replica_context = tf.distribute.get_replica_context()
  replicas = replica_context.num_replicas_in_sync if replica_context else 1
  if replicas <= 1:
    return loss, loss
  mean = replica_context.all_reduce(tf.distribute.ReduceOp.MEAN, loss)
  return mean, loss / replicas


def model_fn_builder(bert_config, label_names, init_checkpoint, learning_rate,
                     num_train_steps, num_warmup_steps, freeze_bert,
                     head=None, use_amp=False, accumulation_steps=1,
                     tpu_estimator=False, use_tpu=False, num_tpu_shards=1,
                     student_layers=None,
                     distill: Optional[distill_loss.DistillSettings] = None,
                     constant_weights: bool = False,
                     sparse_embedding_updates: bool = False):
  """Returns a `model_fn(features, labels, mode, params)` for `tf.estimator`.

  Args:
    bert_config: `modeling.BertConfig`.
    label_names: list of str, index = label id.
    init_checkpoint: BERT checkpoint prefix or None.
    learning_rate, num_train_steps, num_warmup_steps: see
      `optimization.create_train_op`.
    freeze_bert: train only the variables not restored from the checkpoint.
    head: `model.HeadConfig` (default softmax).
    use_amp: dynamic loss scaling for float16 training (see
      `optimization.create_train_op`; the float16 graph rewrite is a session
      option).
    accumulation_steps: micro-batches per optimizer update.
    tpu_estimator: return `TPUEstimatorSpec`s (for `TPUEstimator`; also with
      use_tpu=False, which runs the same path on CPU/GPU).
    use_tpu: on a TPU: one-hot embedding lookups, checkpoint init in a
      `scaffold_fn`, cross-shard gradient sums, no string outputs.
    num_tpu_shards: TPU cores the batch is split over.
    student_layers: list of int or None: a student's encoder layer i starts
      from layer `student_layers[i]` of init_checkpoint (see
      `restore_and_select_trainable`).
    distill: `DistillSettings` of a student (--teacher_dir): training batches
      holding `schema.TEACHER_LOG_PROBS` train on alpha * the gold loss +
      (1 - alpha) * T^2 * KL(teacher || student) (`trainer.distill.loss`);
      eval and predict are unchanged.
    constant_weights: evaluate and predict with the weights of the model
      dir's latest checkpoint as graph constants
      (`trainer.model.constant_weights`; --use_bf16 sets it: the weights'
      bfloat16 casts are folded once instead of run on every batch).
    sparse_embedding_updates: lazy AdamW on the embedding rows a batch uses
      (`trainer.model.sparse_rows`).
  """
  label_names = list(label_names)
  metric_fn = _metric_fn_builder(label_names)

  def _build(features, mode):
    is_training = mode == tf.estimator.ModeKeys.TRAIN
    if schema.ENCODER_FEATURES in features:
      # Cached encoder layers (trainer.features.encoder_cache): training only.
      if not is_training:
        raise ValueError(f"Cached encoder features feed training only, not "
                         f"{mode}.")
      return model_lib.build_head_on_cached_features(
          bert_config, label_names, features, is_training, head)
    return model_lib.build_head(bert_config, label_names, features,
                                is_training, head,
                                use_one_hot_embeddings=use_tpu)

  def model_fn(features, labels, mode, params, config=None):  # pylint: disable=unused-argument
    is_training = mode == tf.estimator.ModeKeys.TRAIN
    checkpoint = None
    if constant_weights and not is_training and not use_tpu:
      checkpoint = constant_weights_lib.usable_checkpoint(
          getattr(config, "model_dir", None))
    with (constant_weights_lib.weights_as_constants(checkpoint) if checkpoint
          else contextlib.nullcontext()):
      built = _build(features, mode)
    outputs = built.outputs
    if checkpoint:  # nothing to restore or train
      trainable, scaffold_fn = [], None
      logging.info("%s with the weights of %s as constants.",
                   "Predicting" if mode == tf.estimator.ModeKeys.PREDICT
                   else "Evaluating", checkpoint)
    else:
      trainable, scaffold_fn = restore_and_select_trainable(
          init_checkpoint, freeze_bert, use_scaffold=use_tpu,
          student_layers=student_layers)

    if mode == tf.estimator.ModeKeys.PREDICT:
      export_outputs = None if tpu_estimator else {
          schema.SERVING_DEFAULT_SIGNATURE:
              tf.estimator.export.PredictOutput(dict(outputs))}
      return _spec(mode, tpu_estimator, scaffold_fn,
                   predictions=_predictions(outputs, features, tpu_estimator),
                   export_outputs=export_outputs)

    label_ids = features[schema.LABEL_IDS]
    loss, loss_values, loss_weights = built.loss_fn(label_ids)

    if mode == tf.estimator.ModeKeys.TRAIN:
      loss_weight = tf.reduce_sum(loss_weights)
      if distill is not None and schema.TEACHER_LOG_PROBS in features:
        # CRF heads' emissions are their potentials at word starts, which is
        # where distill_mask looks: one call for every head.
        distilled = distill_loss.distilled_loss(loss, built.emissions,
                                                features, distill)
        # Tag-less windows have no gold weight; the KL positions count all.
        loss, loss_weight = distilled.loss, distilled.weight
        if not use_tpu:
          tf1.summary.scalar("distill/gold_loss", distilled.gold)
          tf1.summary.scalar("distill/kl", distilled.kl)
      train_op, lr = optimization.create_train_op(
          loss, trainable, learning_rate, num_train_steps, num_warmup_steps,
          use_amp=use_amp, accumulation_steps=accumulation_steps,
          loss_weight=loss_weight, cross_shard_sum=use_tpu,
          num_shards=num_tpu_shards,
          sparse_embedding_updates=sparse_embedding_updates)
      if not use_tpu:  # summaries on a TPU need a host_call
        tf1.summary.scalar("learning_rate", lr)
      logged_loss, spec_loss = replica_mean_loss(loss)
      if logged_loss is not loss:
        # Every replica runs its part of the mean's all-reduce in each step;
        # the progress hook fetches only the first replica's.
        train_op = tf.group(train_op, logged_loss)
      hooks = [hooks_lib.ProgressHook(
          logged_loss, num_train_steps,
          (params or {}).get("train_batch_size", 0))]
      return _spec(mode, tpu_estimator, scaffold_fn, loss=spec_loss,
                   train_op=train_op, training_hooks=hooks)

    metric_args = [features[schema.EXAMPLE_INDEX],
                   features[schema.WORD_POSITIONS],
                   features[schema.SCORE_MASK], label_ids,
                   outputs[schema.OUTPUT_LABEL_IDS], loss_values, loss_weights]
    return _spec(mode, tpu_estimator, scaffold_fn, loss=loss,
                 eval_metrics=(metric_fn, metric_args))

  return model_fn
