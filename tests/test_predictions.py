"""Tests for trainer.evaluation.predictions (pure Python)."""

import io
import json

import pytest

from trainer.data import word_splitting
from trainer.evaluation import predictions
from trainer.data.formats.reader_common import Sentence


@pytest.mark.parametrize("tokens, text, spans", [
    (["北", "京", "有", "4", "2", "人"], "北京有42人",
     [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]),
    (["EU", "rejects", "it", "."], "EU rejects it .",
     [(0, 2), (3, 10), (11, 13), (14, 15)]),
    (["Peter"], "Peter", [(0, 5)]),
])
def test_join_tokens(tokens, text, spans):
  assert predictions.join_tokens(tokens) == (text, spans)


@pytest.mark.parametrize("symbol", ["$", "~", ",", "“"])
def test_join_tokens_uses_the_word_splitter_punctuation_rule(symbol):
  # `word_splitting.is_punctuation` (BERT's rule, ASCII symbols included)
  # decides, so '$' and ',' join alike: no space between two of them.
  assert word_splitting.is_punctuation(symbol)
  assert predictions.join_tokens(["Price", symbol, symbol]) == (
      f"Price {symbol}{symbol}", [(0, 5), (6, 7), (7, 8)])
  assert predictions.join_tokens(["Price", "a", "a"]) == (
      "Price a a", [(0, 5), (6, 7), (8, 9)])


def test_sentence_record_entities_and_spans():
  sentence = Sentence(tokens=("John", "lives", "in", "New", "York"),
                      tags=None, source="f.txt:3")
  record = predictions.sentence_record(
      sentence, ["B-PER", "O", "O", "B-LOC", "I-LOC"],
      [0.9, 1.0, 1.0, 0.8, 0.6])
  assert record["text"] == "John lives in New York"
  assert record["entities"] == [
      {"type": "PER", "text": "John", "start": 0, "end": 1, "char_start": 0,
       "char_end": 4, "score": 0.9},
      {"type": "LOC", "text": "New York", "start": 3, "end": 5,
       "char_start": 14, "char_end": 22, "score": 0.7}]


def test_sentence_record_uses_original_text_offsets():
  sentence = Sentence(tokens=("叶", "老", "桂", "好"), tags=None,
                      source="x.jsonl:1", text="叶老桂 好",
                      char_spans=((0, 1), (1, 2), (2, 3), (4, 5)))
  record = predictions.sentence_record(
      sentence, ["B-PER", "I-PER", "I-PER", "B-PER"], [1, 1, 1, 0.5])
  assert [(e["text"], e["char_start"], e["char_end"])
          for e in record["entities"]] == [("叶老桂", 0, 3), ("好", 4, 5)]


def test_write_predictions_counts_and_formats(tmp_path):
  sentences = [Sentence(("EU", "rejects"), ("B-ORG", "O"), "a:1"),
               Sentence(("北", "京"), None, "b:1")]
  conll, jsonl = tmp_path / "p.conll", tmp_path / "p.jsonl"
  with open(conll, "w", encoding="utf-8") as conll_writer, \
      open(jsonl, "w", encoding="utf-8") as jsonl_writer:
    counts = predictions.write_predictions(
        sentences, [["B-ORG", "B-PER"], ["B-LOC", "I-LOC"]],
        [[0.5, 0.25], [1.0, 1.0]], conll_writer, jsonl_writer)
  assert counts == (2, 4)
  assert conll.read_text(encoding="utf-8") == (
      "EU B-ORG B-ORG\nrejects O B-PER\n\n北 B-LOC\n京 I-LOC\n\n")
  records = [json.loads(line) for line in
             jsonl.read_text(encoding="utf-8").splitlines()]
  assert records[1]["entities"][0]["text"] == "北京"
  assert records[0]["scores"] == [0.5, 0.25]


def test_write_predictions_rejects_missing_tags(tmp_path):
  with pytest.raises(ValueError, match="a:1: 2 tokens but 1 predicted tags"):
    predictions.write_predictions(
        [Sentence(("EU", "rejects"), None, "a:1")], [["O"]], [[1.0]],
        io.StringIO(), io.StringIO())
