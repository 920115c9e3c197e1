"""trainer.model.constant_weights: eval/predict graphs with constant weights.

A tiny BERT with a softmax or BiLSTM-CRF head is saved as a full checkpoint
(head included) in a model dir; the PREDICT and EVAL graphs of
`model_fn_builder(constant_weights=True)` must hold no weight variables and
give the float32 outputs (ids exactly, floats to 1e-6) of the variables graph restored from the
same checkpoint.
"""

import numpy as np
import pytest
import tensorflow as tf

from trainer.model import constant_weights
from trainer.model import heads
from trainer.training import model_fn as model_fn_lib
from trainer import schema
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

LABELS = ["O", "B-LOC", "I-LOC"]
TINY_BERT = dict(vocab_size=20, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=37,
                 max_position_embeddings=16)
# Two windows: "[CLS] w w ##p w [SEP]" and a shorter, padded one.
INPUT_IDS = [[2, 5, 7, 18, 9, 3], [2, 11, 12, 3, 0, 0]]
INPUT_MASK = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
WORD_POSITIONS = [[-1, 0, 1, -1, 2, -1], [-1, 0, 1, -1, -1, -1]]
LABEL_IDS = [[-1, 1, 2, -1, 0, -1], [-1, 0, 1, -1, -1, -1]]


def _features():
  values = {schema.INPUT_IDS: INPUT_IDS, schema.INPUT_MASK: INPUT_MASK,
            schema.SEGMENT_IDS: np.zeros([2, 6], np.int32),
            schema.WORD_POSITIONS: WORD_POSITIONS,
            schema.SCORE_MASK: INPUT_MASK, schema.LABEL_IDS: LABEL_IDS}
  features = {key: tf.constant(value, tf.int32)
              for key, value in values.items()}
  features[schema.EXAMPLE_INDEX] = tf.constant([0, 1], tf.int32)
  return features


def _head(kind):
  return heads.HeadConfig(kind=kind, lstm_units=4,
                          continuation_ids=(0, 2, 3, 18))


def _save_model_dir(path, kind):
  """Random BERT + head weights saved as <path>/model.ckpt-7."""
  with tf.Graph().as_default():
    tf1.train.get_or_create_global_step()
    heads.build_head(modeling.BertConfig(**TINY_BERT), LABELS, _features(),
                     head=_head(kind))
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      return tf1.train.Saver().save(session, str(path / "model.ckpt"),
                                    global_step=7)


def _run(kind, model_dir, checkpoint, use_constants, mode):
  """(fetched outputs, trainable variable names) of one graph."""
  model_fn = model_fn_lib.model_fn_builder(
      modeling.BertConfig(**TINY_BERT), LABELS,
      None if use_constants else checkpoint, 1e-3, 10, 1, False,
      head=_head(kind), constant_weights=use_constants)
  with tf.Graph().as_default():
    tf1.train.get_or_create_global_step()
    spec = model_fn(_features(), None, mode, {},
                    config=tf.estimator.RunConfig(model_dir=str(model_dir)))
    fetches = (spec.predictions if mode == tf.estimator.ModeKeys.PREDICT
               else {"loss": spec.loss})
    fetches = {key: value for key, value in fetches.items()
               if value.dtype != tf.string}
    names = [v.op.name for v in tf1.trainable_variables()]
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      return session.run(fetches), names


@pytest.mark.parametrize("kind", ["softmax", "bilstm_crf"])
@pytest.mark.parametrize("mode", [tf.estimator.ModeKeys.PREDICT,
                                  tf.estimator.ModeKeys.EVAL])
def test_constant_weights_give_the_variables_outputs(tmp_path, kind, mode):
  checkpoint = _save_model_dir(tmp_path, kind)
  with_variables, variable_names = _run(kind, tmp_path, checkpoint, False,
                                        mode)
  with_constants, constant_names = _run(kind, tmp_path, checkpoint, True,
                                        mode)
  assert constant_names == []  # every weight came from the checkpoint
  assert "bert/embeddings/word_embeddings" in variable_names
  assert sorted(with_constants) == sorted(with_variables)
  for key, value in with_variables.items():
    if value.dtype.kind == "f":  # grappler may fold constants in another order
      np.testing.assert_allclose(with_constants[key], value, rtol=1e-6,
                                 atol=1e-7, err_msg=key)
    else:
      np.testing.assert_array_equal(with_constants[key], value, err_msg=key)


def test_without_a_checkpoint_the_graph_keeps_its_variables(tmp_path):
  outputs, names = _run("softmax", tmp_path, None, True,
                        tf.estimator.ModeKeys.PREDICT)
  assert "bert/embeddings/word_embeddings" in names
  assert outputs[schema.OUTPUT_LABEL_IDS].shape == (2, 6)


def test_training_graphs_keep_their_variables(tmp_path):
  checkpoint = _save_model_dir(tmp_path, "softmax")
  model_fn = model_fn_lib.model_fn_builder(
      modeling.BertConfig(**TINY_BERT), LABELS, checkpoint, 1e-3, 10, 1,
      False, head=_head("softmax"), constant_weights=True)
  with tf.Graph().as_default():
    model_fn(_features(), None, tf.estimator.ModeKeys.TRAIN, {},
             config=tf.estimator.RunConfig(model_dir=str(tmp_path)))
    assert "bert/embeddings/word_embeddings" in [
        v.op.name for v in tf1.trainable_variables()]


def test_usable_checkpoint(tmp_path):
  assert constant_weights.usable_checkpoint(None) is None
  assert constant_weights.usable_checkpoint(str(tmp_path)) is None
  checkpoint = _save_model_dir(tmp_path, "softmax")
  assert constant_weights.usable_checkpoint(str(tmp_path)) == checkpoint
  size = constant_weights.checkpoint_bytes(checkpoint)
  reader = tf.train.load_checkpoint(checkpoint)
  assert size == 4 * sum(
      int(np.prod(reader.get_variable_to_shape_map()[name]))
      for name, dtype in reader.get_variable_to_dtype_map().items()
      if dtype == tf.float32)
  # Too big for a graph: built with variables instead.
  assert constant_weights.usable_checkpoint(str(tmp_path), size - 1) is None
  assert constant_weights.usable_checkpoint(str(tmp_path), size) == checkpoint


def test_a_checkpoint_of_another_model_is_named(tmp_path):
  checkpoint = _save_model_dir(tmp_path, "softmax")
  wider = dict(TINY_BERT, intermediate_size=40)
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match=r"model\.ckpt-7 holds "
                       r"bert/encoder/layer_0/intermediate/dense/kernel with "
                       r"shape \[32, 37\], but the model builds it with "
                       r"\[32, 40\]"):
      with constant_weights.weights_as_constants(checkpoint):
        heads.build_head(modeling.BertConfig(**wider), LABELS, _features(),
                         head=_head("softmax"))
