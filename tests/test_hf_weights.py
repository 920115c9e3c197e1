"""Tests for trainer.convert.hf_weights: HF config and names -> bert.modeling.

Pure NumPy: the checkpoint round trip is in test_convert_checkpoint.py.
"""


import ml_dtypes
import numpy as np
import pytest

from tests.import_checks import assert_imports_without_tensorflow
from tests import hf_fixtures
from trainer.convert import hf_weights
from trainer.convert.hf_weights import WeightSpec


def test_bert_config_from_hf_keeps_exactly_the_bert_keys():
  config = dict(hf_fixtures.TINY_HF_CONFIG, hidden_act="gelu_new")
  assert hf_weights.bert_config_from_hf(config) == {
      "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 24, "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
      "max_position_embeddings": 32, "type_vocab_size": 2,
      "initializer_range": 0.02}


@pytest.mark.parametrize("change, message", [
    ({"model_type": "roberta"}, r"model_type 'roberta'; only 'bert'"),
    ({"position_embedding_type": "relative_key"},
     r"position_embedding_type 'relative_key'"),
    ({"hidden_act": "silu"}, r"hidden_act 'silu'.*allowed: gelu, gelu_fast"),
    ({"num_attention_heads": 3},
     r"hidden_size 16 is not a multiple of num_attention_heads 3"),
    ({"vocab_size": None}, r"lacks vocab_size, needed for bert_config\.json"),
])
def test_bert_config_from_hf_refuses(change, message):
  config = dict(hf_fixtures.TINY_HF_CONFIG, **change)
  config = {key: value for key, value in config.items() if value is not None}
  with pytest.raises(ValueError, match=message):
    hf_weights.bert_config_from_hf(config)


def test_expected_weights_names_shapes_and_order():
  config = hf_weights.bert_config_from_hf(hf_fixtures.TINY_HF_CONFIG)
  specs = hf_weights.expected_weights(config)
  assert len(specs) == 5 + 16 * 2 + 2
  assert specs[0] == WeightSpec("bert/embeddings/word_embeddings", (30, 16),
                                ("embeddings.word_embeddings.weight",), False)
  assert specs[3] == WeightSpec(
      "bert/embeddings/LayerNorm/gamma", (16,),
      ("embeddings.LayerNorm.weight", "embeddings.LayerNorm.gamma"), False)
  assert specs[15] == WeightSpec(
      "bert/encoder/layer_0/intermediate/dense/kernel", (16, 24),
      ("encoder.layer.0.intermediate.dense.weight",), True)
  assert [spec.tf_name for spec in specs[-2:]] == [
      "bert/pooler/dense/kernel", "bert/pooler/dense/bias"]


def test_index_encoder_names():
  assert hf_weights.index_encoder_names([
      "cls.predictions.bias", "bert.pooler.dense.bias",
      "bert.embeddings.position_ids", "encoder.layer.0.output.dense.bias"]) == (
          {"pooler.dense.bias": "bert.pooler.dense.bias",
           "encoder.layer.0.output.dense.bias":
               "encoder.layer.0.output.dense.bias"},
          ["cls.predictions.bias"], ["bert.embeddings.position_ids"])
  with pytest.raises(ValueError, match=r"'bert\.pooler\.dense\.bias' and "
                     r"'pooler\.dense\.bias' both map to 'pooler\.dense\.bias'"):
    hf_weights.index_encoder_names(["pooler.dense.bias",
                                    "bert.pooler.dense.bias"])


def test_to_tf_array_transposes_and_casts():
  spec = WeightSpec("k", (2, 3), ("w",), True)
  hf_array = np.arange(6, dtype=np.float16).reshape(3, 2)
  converted = hf_weights.to_tf_array("w", hf_array, spec)
  assert converted.dtype == np.float32
  assert converted.flags["C_CONTIGUOUS"]
  np.testing.assert_array_equal(converted, [[0, 2, 4], [1, 3, 5]])
  bfloat = hf_weights.to_tf_array(
      "b", np.array([1.5, -2.0], ml_dtypes.bfloat16),
      WeightSpec("b", (2,), ("b",), False))
  np.testing.assert_array_equal(bfloat, np.array([1.5, -2.0], np.float32))


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 3), np.float32),
     r"'w' has shape \[2, 3\] but config.json implies \[3, 2\] \(for k "
     r"\[2, 3\]\)"),
    (np.zeros((3, 2), np.int64), r"'w' has dtype int64; expected one of"),
])
def test_to_tf_array_refuses(array, message):
  with pytest.raises(ValueError, match=message):
    hf_weights.to_tf_array("w", array, WeightSpec("k", (2, 3), ("w",), True))


def test_map_weights_report_and_values():
  weights = hf_fixtures.tiny_hf_weights(seed=3, with_pooler=False)
  weights["cls.predictions.bias"] = np.zeros([30], np.float32)
  config = hf_weights.bert_config_from_hf(hf_fixtures.TINY_HF_CONFIG)
  tf_weights, report = hf_weights.map_weights(weights, config,
                                              allow_missing_pooler=True)
  assert report == {"skipped_heads": ["cls.predictions.bias"],
                    "skipped_buffers": ["bert.embeddings.position_ids"],
                    "zero_filled": ["bert/pooler/dense/kernel",
                                    "bert/pooler/dense/bias"]}
  assert list(tf_weights) == [spec.tf_name for spec in
                              hf_weights.expected_weights(config)]
  np.testing.assert_array_equal(
      tf_weights["bert/encoder/layer_1/attention/self/value/kernel"],
      weights["bert.encoder.layer.1.attention.self.value.weight"].T)
  assert not tf_weights["bert/pooler/dense/kernel"].any()


def test_map_weights_missing_and_unknown():
  config = hf_weights.bert_config_from_hf(hf_fixtures.TINY_HF_CONFIG)
  weights = hf_fixtures.tiny_hf_weights(with_pooler=False)
  with pytest.raises(ValueError, match=r"Missing BERT weights: "
                     r"pooler\.dense\.weight \(for bert/pooler/dense/kernel\), "
                     r"pooler\.dense\.bias \(for bert/pooler/dense/bias\)\. "
                     r"Pass --allow_missing_pooler"):
    hf_weights.map_weights(weights, config)
  weights = hf_fixtures.tiny_hf_weights()
  weights["bert.extra.weight"] = np.zeros([2], np.float32)
  with pytest.raises(ValueError, match=r"Unknown weights \(not part of a "
                     r"2-layer .*\): bert\.extra\.weight\."):
    hf_weights.map_weights(weights, config)


def test_hf_weights_does_not_import_tensorflow():
  assert_imports_without_tensorflow(
      "trainer.convert.hf_weights, trainer.convert.hf_model_files")
