"""trainer.training.model_fn: checkpoint restore, the two spec kinds, eval
metric ops.
"""

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny_bert import save_random_bert
from trainer.training import hooks
from trainer.evaluation import metrics
from trainer.model import heads
from trainer.training import model_fn as model_fn_lib
from trainer import schema
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

LABELS = ["O", "B-LOC", "I-LOC"]
TINY_BERT = dict(vocab_size=20, hidden_size=32, num_hidden_layers=1,
                 num_attention_heads=2, intermediate_size=37,
                 max_position_embeddings=16)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  """A 'pre-trained' tiny BERT checkpoint (Google's layout) and its values."""
  return save_random_bert(
      str(tmp_path_factory.mktemp("ckpt") / "bert_model.ckpt"), TINY_BERT)


def _bert_and_head():
  """BERT variables plus one head variable in the default graph."""
  ids = tf1.placeholder(tf.int32, [None, None])
  modeling.BertModel(modeling.BertConfig(**TINY_BERT), False, ids)
  with tf1.variable_scope(heads.HEAD_SCOPE):
    return tf1.get_variable("output_bias", [3])


def _names(variables):
  return [v.op.name for v in variables]


def _embedding_after_init():
  embedding, = [v for v in tf1.global_variables()
                if v.op.name == "bert/embeddings/word_embeddings"]
  with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    return session.run(embedding)


@pytest.mark.parametrize("freeze", [True, False])
def test_restore_and_select_trainable(checkpoint, freeze):
  saved = tf.train.load_checkpoint(checkpoint).get_tensor(
      "bert/embeddings/word_embeddings")
  with tf.Graph().as_default():
    _bert_and_head()
    trainable, scaffold_fn = model_fn_lib.restore_and_select_trainable(
        checkpoint, freeze_bert=freeze)
    everything = _names(tf1.trainable_variables())
    restored = _embedding_after_init()
  assert scaffold_fn is None
  np.testing.assert_array_equal(restored, saved)  # initialised in the graph
  if freeze:
    assert _names(trainable) == ["ner_head/output_bias"]
  else:
    assert _names(trainable) == everything
    assert len(everything) > 1 and "ner_head/output_bias" in everything


def test_restore_in_scaffold_waits_for_the_scaffold(checkpoint):
  saved = tf.train.load_checkpoint(checkpoint).get_tensor(
      "bert/embeddings/word_embeddings")
  with tf.Graph().as_default():
    _bert_and_head()
    trainable, scaffold_fn = model_fn_lib.restore_and_select_trainable(
        checkpoint, freeze_bert=True, use_scaffold=True)
    before = _embedding_after_init()
    scaffold = scaffold_fn()
    after = _embedding_after_init()
  assert _names(trainable) == ["ner_head/output_bias"]
  assert isinstance(scaffold, tf1.train.Scaffold)
  assert not np.array_equal(before, saved)
  np.testing.assert_array_equal(after, saved)


def test_restore_without_checkpoint_trains_everything():
  with tf.Graph().as_default():
    _bert_and_head()
    trainable, scaffold_fn = model_fn_lib.restore_and_select_trainable(
        None, freeze_bert=True)
    assert _names(trainable) == _names(tf1.trainable_variables())
    assert len(trainable) > 1
  assert scaffold_fn is None


def test_freezing_a_fully_restored_graph_is_an_error(checkpoint):
  with tf.Graph().as_default():
    ids = tf1.placeholder(tf.int32, [None, None])
    modeling.BertModel(modeling.BertConfig(**TINY_BERT), False, ids)
    with pytest.raises(ValueError, match=r"every variable was restored from "
                       r".*bert_model\.ckpt.*--nofreeze_bert"):
      model_fn_lib.restore_and_select_trainable(checkpoint, freeze_bert=True)


@pytest.mark.parametrize("head", ["softmax", "bilstm_crf"])
def test_frozen_graph_has_no_gradient_into_bert(checkpoint, head):
  for freeze, expect_bert_gradients in ((True, False), (False, True)):
    model_fn = model_fn_lib.model_fn_builder(
        modeling.BertConfig(**TINY_BERT), LABELS, checkpoint, 1e-3, 10, 1,
        freeze, head=heads.HeadConfig(kind=head, lstm_units=4))
    with tf.Graph().as_default() as graph:
      features = {key: tf.ones([2, 5], tf.int32) for key in (
          schema.INPUT_IDS, schema.INPUT_MASK, schema.SEGMENT_IDS,
          schema.LABEL_IDS, schema.WORD_POSITIONS, schema.SCORE_MASK)}
      spec = model_fn(features, None, tf.estimator.ModeKeys.TRAIN, {})
      gradient_ops = [op.name for op in graph.get_operations()
                      if op.name.startswith("gradients/")]
    assert isinstance(spec, tf.estimator.EstimatorSpec)
    assert [type(hook) for hook in spec.training_hooks] == [
        hooks.ProgressHook]
    assert gradient_ops  # the head does get gradients
    into_bert = [name for name in gradient_ops
                 if name.startswith("gradients/bert/")]
    assert bool(into_bert) == expect_bert_gradients, into_bert[:3]


def test_entity_types_of():
  assert model_fn_lib.entity_types_of(
      ["O", "B-PER", "I-LOC", "B-LOC", "S-GPE-X"]) == ["GPE-X", "LOC", "PER"]
  assert model_fn_lib.entity_types_of(["O"]) == []


def _metric_fn(values):
  return {"mean": tf1.metrics.mean(values)}


def test_spec_builds_estimator_specs():
  with tf.Graph().as_default():
    loss = tf.constant(2.0)
    train_op = tf.no_op()
    train = model_fn_lib._spec(tf.estimator.ModeKeys.TRAIN, False,
                               loss=loss, train_op=train_op,
                               training_hooks=[])
    evaluate = model_fn_lib._spec(
        tf.estimator.ModeKeys.EVAL, False, loss=loss,
        eval_metrics=(_metric_fn, [tf.constant([1.0, 3.0])]))
    predict = model_fn_lib._spec(
        tf.estimator.ModeKeys.PREDICT, False,
        predictions={"ids": tf.constant([1])},
        export_outputs={"serving_default": tf.estimator.export.PredictOutput(
            {"ids": tf.constant([1])})})
    with tf1.Session() as session:
      session.run(tf1.local_variables_initializer())
      value, update = evaluate.eval_metric_ops["mean"]
      session.run(update)
      mean = session.run(value)
  for spec in (train, evaluate, predict):
    assert isinstance(spec, tf.estimator.EstimatorSpec)
  assert train.train_op is train_op and train.loss is loss
  # An EstimatorSpec gets metric ops: metric_fn was called on the tensors.
  assert mean == 2.0
  assert list(predict.export_outputs) == ["serving_default"]


def test_spec_builds_tpu_estimator_specs():
  def scaffold_fn():
    return tf1.train.Scaffold()

  with tf.Graph().as_default():
    loss = tf.constant(2.0)
    metric_args = [tf.constant([1.0, 3.0])]
    train = model_fn_lib._spec(tf.estimator.ModeKeys.TRAIN, True,
                               scaffold_fn, loss=loss, train_op=tf.no_op(),
                               training_hooks=[])
    evaluate = model_fn_lib._spec(tf.estimator.ModeKeys.EVAL, True,
                                  scaffold_fn, loss=loss,
                                  eval_metrics=(_metric_fn, metric_args))
    predict = model_fn_lib._spec(tf.estimator.ModeKeys.PREDICT, True,
                                 scaffold_fn,
                                 predictions={"ids": tf.constant([1])})
  for spec in (train, evaluate, predict):
    assert isinstance(spec, tf1.estimator.tpu.TPUEstimatorSpec)
    assert spec.scaffold_fn is scaffold_fn
  # TPUEstimator calls metric_fn itself, on the host.
  assert evaluate.eval_metrics == (_metric_fn, metric_args)
  assert train.loss is loss and predict.predictions is not None


def test_entity_metric_ops_score_merged_windows():
  accumulator = metrics.EntityMetricAccumulator(LABELS)
  with tf.Graph().as_default():
    batch = {schema.EXAMPLE_INDEX: tf.constant([0, -1]),
             schema.WORD_POSITIONS: tf.constant([[-1, 0, 1, -1]] * 2),
             schema.SCORE_MASK: tf.constant([[0, 1, 1, 0]] * 2),
             schema.LABEL_IDS: tf.constant([[-1, 1, 2, -1]] * 2)}
    pred_ids = tf.constant([[0, 1, 0, 0]] * 2)
    ops = model_fn_lib.entity_metric_ops(accumulator, ["LOC"], batch,
                                         pred_ids)
    with tf1.Session() as session:
      session.run(ops["entity_f1"][1])
      values = session.run({name: value for name, (value, _) in ops.items()})
  assert sorted(values) == sorted(
      ["entity_precision", "entity_recall", "entity_f1",
       "entity_LOC_precision", "entity_LOC_recall", "entity_LOC_f1"])
  # Gold B-LOC I-LOC, predicted B-LOC O: the one predicted entity is wrong.
  assert values["entity_precision"] == 0.0
  assert values["entity_LOC_recall"] == 0.0


def _tiny_features():
  return {schema.INPUT_IDS: tf.constant([[2, 5, 6, 3]]),
          schema.INPUT_MASK: tf.ones([1, 4], tf.int32),
          schema.SEGMENT_IDS: tf.zeros([1, 4], tf.int32),
          schema.LABEL_IDS: tf.constant([[-1, 1, 2, -1]]),
          schema.EXAMPLE_INDEX: tf.constant([0]),
          schema.WORD_POSITIONS: tf.constant([[-1, 0, 1, -1]]),
          schema.SCORE_MASK: tf.constant([[0, 1, 1, 0]])}


@pytest.mark.parametrize("tpu_estimator", [False, True])
def test_model_fn_predict_and_eval(tpu_estimator):
  model_fn = model_fn_lib.model_fn_builder(
      modeling.BertConfig(**TINY_BERT), LABELS, None, 1e-3, 10, 1, False,
      tpu_estimator=tpu_estimator)
  with tf.Graph().as_default():
    predict = model_fn(_tiny_features(), None,
                       tf.estimator.ModeKeys.PREDICT, {})
  keys = {schema.OUTPUT_LABEL_IDS, schema.OUTPUT_SCORES, schema.EXAMPLE_INDEX,
          schema.WORD_POSITIONS, schema.SCORE_MASK}
  if tpu_estimator:  # no strings on a TPU
    assert set(predict.predictions) == keys
  else:
    assert set(predict.predictions) == keys | {schema.OUTPUT_TAGS}
    assert set(predict.export_outputs[
        schema.SERVING_DEFAULT_SIGNATURE].outputs) == {
            schema.OUTPUT_TAGS, schema.OUTPUT_LABEL_IDS, schema.OUTPUT_SCORES}
  with tf.Graph().as_default():
    evaluate = model_fn(_tiny_features(), None, tf.estimator.ModeKeys.EVAL, {})
    if tpu_estimator:
      metric_fn, metric_args = evaluate.eval_metrics
      metric_ops = metric_fn(*metric_args)
    else:
      metric_ops = evaluate.eval_metric_ops
  assert sorted(metric_ops) == sorted(
      ["entity_precision", "entity_recall", "entity_f1",
       "entity_LOC_precision", "entity_LOC_recall", "entity_LOC_f1",
       "token_loss", "token_accuracy"])


def _cached_batch():
  """Two windows of cached word-start features (2 stored layers, H 32)."""
  return {schema.ENCODER_FEATURES: tf.ones([2, 3, 2, 32], tf.float16),
          schema.INPUT_MASK: tf.constant([[1, 1, 1], [1, 1, 0]]),
          schema.WORD_POSITIONS: tf.constant([[0, 1, 2], [0, 1, -1]]),
          schema.LABEL_IDS: tf.constant([[0, 1, 2], [1, 0, -1]])}


@pytest.mark.parametrize("head", ["softmax", "bilstm_crf"])
def test_cached_features_train_the_head_and_never_run_bert(checkpoint, head):
  model_fn = model_fn_lib.model_fn_builder(
      modeling.BertConfig(**TINY_BERT), LABELS, checkpoint, 1e-3, 10, 1, True,
      head=heads.HeadConfig(kind=head, lstm_units=4, bert_layers=(0,),
                            layer_combination="scalar_mix"))
  saved = tf.train.load_checkpoint(checkpoint).get_tensor(
      "bert/embeddings/word_embeddings")
  with tf.Graph().as_default() as graph:
    spec = model_fn(_cached_batch(), None, tf.estimator.ModeKeys.TRAIN, {})
    names = _names(tf1.global_variables())
    trainable = [name for name in _names(tf1.trainable_variables())
                 if name.startswith("bert/")]
    gradient_ops = [op.name for op in graph.get_operations()
                    if op.name.startswith("gradients/")]
    embedding, = [v for v in tf1.global_variables()
                  if v.op.name == "bert/embeddings/word_embeddings"]
    with tf1.train.MonitoredSession() as session:
      trace = tf1.RunMetadata()
      loss, _ = session.run(
          (spec.loss, spec.train_op), run_metadata=trace,
          options=tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE))
      embedding = session.run(embedding)
  executed = [node.node_name for device in trace.step_stats.dev_stats
              for node in device.node_stats]
  assert any(name.startswith("ner_head/") for name in executed)
  assert not [name for name in executed if name.startswith("bert/")]
  # Every BERT variable exists (restored from the checkpoint, saved with
  # the model), none trains, and no gradient flows into BERT.
  assert len([n for n in names if n.startswith("bert/")]) == 23
  assert "ner_head/scalar_mix/layer_weights" in names
  assert trainable  # created trainable, as BertModel does; not in var_list
  assert gradient_ops and not [n for n in gradient_ops
                               if n.startswith("gradients/bert/")]
  assert np.isfinite(loss) and loss > 0
  np.testing.assert_array_equal(embedding, saved)


def test_cached_features_are_for_training_only(checkpoint):
  model_fn = model_fn_lib.model_fn_builder(
      modeling.BertConfig(**TINY_BERT), LABELS, checkpoint, 1e-3, 10, 1, True,
      head=heads.HeadConfig(bert_layers=(-1,)))
  with tf.Graph().as_default(), pytest.raises(
      ValueError, match="Cached encoder features feed training only, not "
      "eval"):
    model_fn(_cached_batch(), None, tf.estimator.ModeKeys.EVAL, {})
