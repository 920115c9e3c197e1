"""Texts to model inputs and model outputs to records, without a server."""

import numpy as np
import pytest

from serving.client import request_codec
from trainer.features import windows as windows_lib
from serving.client.errors import PredictionError

VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4,
         "张": 5, "三": 6, "去": 7, "北": 8, "京": 9, "ok": 10, "##s": 11}
LABELS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]


class DictTokenizer:
  """Whole words from VOCAB ("oks" -> ok ##s), else [UNK]."""

  def tokenize_word(self, word):
    word = word.lower()
    if word in VOCAB:
      return [word]
    if word.endswith("s") and word[:-1] in VOCAB:
      return [word[:-1], "##s"]
    return ["[UNK]"]

  def convert_tokens_to_ids(self, pieces):
    return [VOCAB[piece] for piece in pieces]


def test_sentences_from_texts_split_like_the_trainer():
  sentences = request_codec.sentences_from_texts(["张三 去北京, OKs", "", "  "])
  assert sentences[0].tokens == ("张", "三", "去", "北", "京", ",", "OKs")
  assert sentences[0].char_spans == ((0, 1), (1, 2), (3, 4), (4, 5), (5, 6),
                                     (6, 7), (8, 11))
  assert sentences[0].source == "text 0"
  assert sentences[1].tokens == () and sentences[2].tokens == ()
  with pytest.raises(ValueError, match="Text 0 is bytes, not str: b'x'"):
    request_codec.sentences_from_texts([b"x"])


def test_window_inputs_pad_like_the_input_pipeline():
  sentences = request_codec.sentences_from_texts(["张三 OKs", "", "北"])
  windows = request_codec.build_windows(sentences, DictTokenizer(), 8, 2)
  assert [w.example_index for w in windows] == [0, 2]
  inputs = request_codec.window_inputs(windows, "serving_default")
  assert inputs["input_ids"].tolist() == [[2, 5, 6, 10, 11, 3],
                                          [2, 8, 3, 0, 0, 0]]
  assert inputs["input_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
  assert inputs["segment_ids"].tolist() == [[0] * 6] * 2
  assert inputs["input_ids"].dtype == np.int32

  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  examples = request_codec.window_inputs(windows,
                                         "predict_examples")["examples"]
  parsed = example_pb2.Example.FromString(examples[0]).features.feature
  assert list(parsed["input_ids"].int64_list.value) == [2, 5, 6, 10, 11, 3]
  assert list(parsed["word_positions"].int64_list.value) == [-1, 0, 1, 2, -1,
                                                             -1]
  with pytest.raises(ValueError, match="not 'predict_text'"):
    request_codec.window_inputs(windows, "predict_text")


def test_text_inputs_are_utf8_bytes():
  inputs = request_codec.text_inputs(["北京", ""])
  assert list(inputs) == ["text"]
  assert inputs["text"].dtype == object
  assert inputs["text"].tolist() == ["北京".encode("utf-8"), b""]


def test_records_from_window_outputs_give_char_offsets():
  texts = ["张三去北京", "", "OKs 北京"]
  sentences = request_codec.sentences_from_texts(texts)
  windows = request_codec.build_windows(sentences, DictTokenizer(), 5, 1)
  # Long first sentence: 5 words, 3 per window -> several windows.
  assert len([w for w in windows if w.example_index == 0]) == 3
  label = {"张": 2, "三": 4, "去": 0, "北": 1, "京": 3, "ok": 0}
  id_to_piece = {i: p for p, i in VOCAB.items()}
  rows = []
  for window in windows:
    rows.append([label.get(id_to_piece[i], 0) for i in window.input_ids])
  length = max(len(row) for row in rows)
  outputs = {"label_ids": np.array([r + [0] * (length - len(r)) for r in rows]),
             "scores": np.full([len(rows), length], 0.5)}
  merged = request_codec.window_outputs_for_merge(windows, outputs)
  records = request_codec.records_from_window_outputs(sentences, merged,
                                                      LABELS)
  assert records[0]["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
  assert [request_codec.entities_from_record(r) for r in records] == [
      [{"type": "PER", "text": "张三", "start": 0, "end": 2, "score": 0.5},
       {"type": "LOC", "text": "北京", "start": 3, "end": 5, "score": 0.5}],
      [],
      [{"type": "LOC", "text": "北京", "start": 4, "end": 6, "score": 0.5}]]
  with pytest.raises(PredictionError,
                     match="INTERNAL: sent 5 windows, got 1 rows back"):
    request_codec.window_outputs_for_merge(windows, {
        "label_ids": np.zeros([1, 3]), "scores": np.zeros([1, 3])})


def test_records_from_text_outputs_skip_whitespace():
  texts = ["张三 北京", ""]
  outputs = {"tags": np.array([[b"B-PER", b"I-PER", b"", b"B-LOC", b"I-LOC"],
                               [b""] * 5], object),
             "scores": np.array([[0.9, 0.7, 0.0, 1.0, 1.0], [0.0] * 5]),
             "lengths": np.array([5, 0])}
  records = request_codec.records_from_text_outputs(texts, outputs)
  assert records[0]["tokens"] == ["张", "三", "北", "京"]
  assert request_codec.entities_from_record(records[0]) == [
      {"type": "PER", "text": "张三", "start": 0, "end": 2, "score": 0.8},
      {"type": "LOC", "text": "北京", "start": 3, "end": 5, "score": 1.0}]
  assert records[1]["entities"] == []
  outputs["lengths"] = np.array([4, 0])
  with pytest.raises(PredictionError,
                     match="text 0 has 5 characters but the server counted 4"):
    request_codec.records_from_text_outputs(texts, outputs)


def test_length_batches_minimize_padding_plus_overhead():
  # The docstring's example: 2x8 + 2x37 + 2x10 = 110 beats one request
  # (4x37 + 10 = 158) and every other cut.
  assert request_codec.length_batches([3, 37, 8, 33], 4, 10) == [
      [0, 2], [3, 1]]
  assert request_codec.length_batches([3, 37, 8, 33], 4, 100) == [
      [0, 2, 3, 1]]
  # None keeps the request order, batch_size at a time.
  assert request_codec.length_batches([3, 37, 8, 33, 5], 2, None) == [
      [0, 1], [2, 3], [4]]
  # batch_size caps every request even when one would be cheaper.
  assert request_codec.length_batches([5] * 5, 2, 1000) == [
      [0], [1, 2], [3, 4]]
  # Equal lengths: fewest requests; no overhead: one request per length.
  assert request_codec.length_batches([9, 4, 9, 4], 4, 0) == [
      [1, 3], [0, 2]]
  assert request_codec.length_batches([], 4, 10) == []
  assert request_codec.length_batches([], 4, None) == []


def test_length_batches_use_every_index_once_and_never_cost_more():
  lengths = [(index * 37) % 61 + 3 for index in range(200)]
  for overhead in (0, 16, 64, 1000):
    groups = request_codec.length_batches(lengths, 32, overhead)
    assert sorted(i for group in groups for i in group) == list(range(200))
    assert max(len(group) for group in groups) <= 32
    cost = sum(len(group) * max(lengths[i] for i in group) + overhead
               for group in groups)
    in_order = sum(len(group) * max(lengths[i] for i in group) + overhead
                   for group in request_codec.length_batches(
                       lengths, 32, None))
    assert cost <= in_order


def test_merge_reuses_the_trainer_function():
  # The codec merges with the trainer's function, not a copy of it.
  assert request_codec.features_lib.merge_window_outputs is \
      windows_lib.merge_window_outputs

