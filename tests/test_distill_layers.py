"""trainer.distill.layers: which source layers a student keeps (pure Python)."""

import pytest

from tests.import_checks import assert_imports_without_tensorflow
from trainer.distill import layers
from trainer.errors import UserError

SOURCE = "ckpt/bert_config.json"


def test_imports_without_tensorflow():
  assert_imports_without_tensorflow("trainer.distill.layers")


@pytest.mark.parametrize("k, n, expected", [
    (3, 6, [1, 3, 5]),
    (2, 6, [2, 5]),
    (4, 12, [2, 5, 8, 11]),
    (1, 6, [5]),
    (6, 6, [0, 1, 2, 3, 4, 5]),
    (1, 1, [0]),
    # (i + 1) * n / k = 1.5, 3, 4.5, 6: halves round up (Python's round()
    # would give 4.5 -> 4 and [1, 2, 3, 5]).
    (4, 6, [1, 2, 4, 5]),
    # 2.5, 5, 7.5, 10, 12.5, 15, 17.5, 20 -> 3, 5, 8, 10, 13, 15, 18, 20.
    (8, 20, [2, 4, 7, 9, 12, 14, 17, 19]),
    (3, 12, [3, 7, 11]),
    (5, 12, [1, 4, 6, 9, 11]),  # 2.4, 4.8, 7.2, 9.6, 12
])
def test_even_layers(k, n, expected):
  assert layers.even_layers(k, n) == expected


def test_even_layers_matches_half_up_rounding_for_every_k_and_n():
  for n in range(1, 25):
    for k in range(1, n + 1):
      chosen = layers.even_layers(k, n)
      exact = [(i + 1) * n / k for i in range(k)]
      assert chosen == [int(value + 0.5) - 1 for value in exact], (k, n)
      assert chosen[-1] == n - 1
      assert chosen == sorted(set(chosen))


@pytest.mark.parametrize("k, n", [(0, 6), (7, 6), (-1, 6)])
def test_even_layers_refuses_counts_outside_the_model(k, n):
  with pytest.raises(ValueError, match=f"Cannot choose {k} of {n} layers."):
    layers.even_layers(k, n)


@pytest.mark.parametrize("spec, expected", [
    ("3", [1, 3, 5]),
    (" 2 ", [2, 5]),
    ("6", [0, 1, 2, 3, 4, 5]),
    ("1,3,5", [1, 3, 5]),
    ("0, 5", [0, 5]),
    ("4", [1, 2, 4, 5]),
    (None, None),
    ("", None),
])
def test_resolve_student_layers_evenly(spec, expected):
  assert layers.resolve_student_layers(spec, 6, SOURCE, "even") == expected


@pytest.mark.parametrize("spec, expected", [
    ("3", [0, 1, 2]),
    (" 2 ", [0, 1]),
    ("6", [0, 1, 2, 3, 4, 5]),
    ("1,3,5", [1, 3, 5]),  # indices are taken as they are
    (None, None),
])
def test_resolve_student_layers_keeps_the_bottom_layers_by_default(
    spec, expected):
  assert layers.resolve_student_layers(spec, 6, SOURCE) == expected
  assert layers.resolve_student_layers(spec, 6, SOURCE, "bottom") == expected


def test_bottom_layers():
  assert layers.bottom_layers(3, 6) == [0, 1, 2]
  assert layers.bottom_layers(1, 1) == [0]
  for k, n in ((0, 6), (7, 6)):
    with pytest.raises(ValueError, match=f"Cannot choose {k} of {n} layers"):
      layers.bottom_layers(k, n)


def test_resolve_student_layers_refuses_a_count_above_the_source():
  with pytest.raises(UserError) as refused:
    layers.resolve_student_layers("7", 6, SOURCE)
  assert str(refused.value) == (
      "--student_layers=7 asks for 7 layers, but the source model has 6 "
      "(ckpt/bert_config.json); pass a count from 1 to 6.")


def test_resolve_student_layers_refuses_an_index_past_the_source():
  with pytest.raises(UserError) as refused:
    layers.resolve_student_layers("1,3,6", 6, SOURCE)
  assert str(refused.value) == (
      "--student_layers=1,3,6 names layer 6, but the source model has 6 "
      "layers (ckpt/bert_config.json): indices are 0..5.")


@pytest.mark.parametrize("spec", ["0", "5,3", "a"])
def test_resolve_student_layers_keeps_the_option_checks(spec):
  with pytest.raises(UserError, match=f"--student_layers={spec}"):
    layers.resolve_student_layers(spec, 6, SOURCE)


@pytest.mark.parametrize("spec, expected", [
    ("3", 3), ("0,5", 2), ("6", 6), (None, 6), ("", 6)])
def test_layer_count(spec, expected):
  assert layers.layer_count(spec, 6, SOURCE) == expected


def test_student_bert_config_copies_the_source_with_fewer_layers():
  source = {"hidden_size": 32, "num_hidden_layers": 6, "vocab_size": 20}
  assert layers.student_bert_config(source, [1, 3, 5]) == {
      "hidden_size": 32, "num_hidden_layers": 3, "vocab_size": 20}
  assert source["num_hidden_layers"] == 6  # not modified


def test_describe_config_change():
  assert layers.describe_config_change(
      {"num_hidden_layers": 3, "hidden_size": 32},
      {"num_hidden_layers": 2, "hidden_size": 32}) == (
          "num_hidden_layers 3 -> 2")
  assert layers.describe_config_change(
      {"num_hidden_layers": 3, "hidden_act": "gelu"},
      {"num_hidden_layers": 3, "hidden_act": "relu", "x": 1}) == (
          "hidden_act 'gelu' -> 'relu', x None -> 1")
  assert layers.describe_config_change(None, {"num_hidden_layers": 3}) == (
      "the file is not a JSON object")


@pytest.mark.parametrize("name, expected", [
    ("bert/encoder/layer_2/attention/self/query/kernel",
     "bert/encoder/layer_5/attention/self/query/kernel"),
    ("bert/encoder/layer_0/output/LayerNorm/gamma",
     "bert/encoder/layer_1/output/LayerNorm/gamma"),
    ("bert/encoder/layer_1/intermediate/dense/bias",
     "bert/encoder/layer_3/intermediate/dense/bias"),
    ("bert/embeddings/word_embeddings", "bert/embeddings/word_embeddings"),
    ("bert/pooler/dense/kernel", "bert/pooler/dense/kernel"),
    ("ner_head/output_weights", "ner_head/output_weights"),
    # Only the encoder's own layers are renumbered.
    ("bilstm/layer_0/kernel", "bilstm/layer_0/kernel"),
    ("bert/encoder/layer_norm_x", "bert/encoder/layer_norm_x"),
])
def test_source_variable_name(name, expected):
  assert layers.source_variable_name(name, [1, 3, 5]) == expected


def test_source_variable_name_refuses_a_layer_the_student_lacks():
  with pytest.raises(ValueError, match=(
      r"bert/encoder/layer_3/output/dense/bias is in student layer 3, but "
      r"the student has 3 layers \(\[1, 3, 5\]\).")):
    layers.source_variable_name("bert/encoder/layer_3/output/dense/bias",
                                [1, 3, 5])


def test_assignment_map():
  student = {
      "bert/embeddings/word_embeddings": [20, 32],
      "bert/encoder/layer_0/output/dense/bias": [32],
      "bert/encoder/layer_1/output/dense/bias": [32],
      "bert/encoder/layer_1/output/dense/kernel": [37, 32],
      "ner_head/output_bias": [5],
  }
  checkpoint = {
      "bert/embeddings/word_embeddings": (20, 32),
      "bert/encoder/layer_0/output/dense/bias": (32,),
      "bert/encoder/layer_1/output/dense/bias": (32,),
      "bert/encoder/layer_2/output/dense/bias": (32,),
      "bert/encoder/layer_2/output/dense/kernel": (37, 16),  # other shape
      "global_step": (),
  }
  assert layers.assignment_map(student, checkpoint, [0, 2]) == {
      "bert/embeddings/word_embeddings": "bert/embeddings/word_embeddings",
      "bert/encoder/layer_0/output/dense/bias":
          "bert/encoder/layer_0/output/dense/bias",
      "bert/encoder/layer_2/output/dense/bias":
          "bert/encoder/layer_1/output/dense/bias",
  }
  assert layers.assignment_map(student, checkpoint, [1, 2]) == {
      "bert/embeddings/word_embeddings": "bert/embeddings/word_embeddings",
      "bert/encoder/layer_1/output/dense/bias":
          "bert/encoder/layer_0/output/dense/bias",
      "bert/encoder/layer_2/output/dense/bias":
          "bert/encoder/layer_1/output/dense/bias",
  }
  assert layers.assignment_map(student, {}, [0, 1]) == {}
