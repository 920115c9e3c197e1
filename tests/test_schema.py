"""Tests for trainer.schema: piece predicates and the name tables."""


import pytest

from tests.import_checks import assert_imports_without_tensorflow
from trainer import schema


@pytest.mark.parametrize("piece, expected", [
    ("[CLS]", True), ("[SEP]", True), ("[PAD]", True), ("[UNK]", True),
    ("[MASK]", True), ("[unused7]", True), ("[x]", True),
    ("[]", False),  # too short to be a bracketed control piece
    ("[", False), ("[CLS", False), ("CLS]", False), ("john", False),
    ("##s", False), ("的", False),
])
def test_is_special_piece(piece, expected):
  assert schema.is_special_piece(piece) is expected


@pytest.mark.parametrize("piece, expected", [
    ("the", True), ("的", True), ("#", True), ("[", True), ("[]", True),
    ("##s", False), ("##", False), ("[CLS]", False), ("[unused0]", False),
])
def test_is_ordinary_piece(piece, expected):
  assert schema.is_ordinary_piece(piece) is expected


def test_padding_values_cover_every_sequence_feature():
  assert set(schema.PADDING_VALUES) == set(schema.SEQUENCE_FEATURE_KEYS)
  assert schema.PADDING_VALUES == {
      "input_ids": 0, "input_mask": 0, "segment_ids": 0, "label_ids": -1,
      "word_positions": -1, "score_mask": 0}


def test_feature_key_tables():
  assert schema.MODEL_INPUT_KEYS == ("input_ids", "input_mask",
                                     "segment_ids")
  assert set(schema.MODEL_INPUT_KEYS) < set(schema.SEQUENCE_FEATURE_KEYS)
  assert len(set(schema.SEQUENCE_FEATURE_KEYS)) == 6
  assert schema.SCALAR_FEATURE_KEYS == ("example_index", "window_index")
  assert not set(schema.SCALAR_FEATURE_KEYS) & set(
      schema.SEQUENCE_FEATURE_KEYS)


def test_special_tokens_and_signatures():
  assert schema.SPECIAL_TOKENS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                   "[MASK]")
  assert all(schema.is_special_piece(t) for t in schema.SPECIAL_TOKENS)
  assert schema.SIGNATURES == ("serving_default", "predict_examples",
                               "predict_text")
  assert schema.MAX_GRPC_MESSAGE_BYTES == 67108864
  assert (schema.DEFAULT_GRPC_PORT, schema.DEFAULT_REST_PORT) == (8500, 8501)


def test_schema_does_not_import_tensorflow():
  assert_imports_without_tensorflow("trainer.schema")
