"""Tests for trainer.data.formats.jsonl_reader (CLUENER2020 JSON lines)."""

import json
import re
import logging

import pytest

from tests.reader_fixtures import data_path
from tests.reader_fixtures import write
from trainer.data.formats import jsonl_reader
from trainer.data.data_warnings import DataWarnings
from trainer.data.formats.jsonl_reader import Mention
from trainer.data.formats.reader_common import Sentence


def _jsonl(tmp_path, *records):
  """Writes records (dicts, or raw strings for bad lines) one per line."""
  lines = [record if isinstance(record, str)
           else json.dumps(record, ensure_ascii=False) for record in records]
  return write(tmp_path, "data.jsonl", "\n".join(lines) + "\n")


def test_read_jsonl_fixture():
  path = data_path("cluener.jsonl")
  sentences = jsonl_reader.read_jsonl(path)
  text = "浙商银行企业信贷部叶老桂博士则从另一个角度"
  assert sentences[0] == Sentence(
      tokens=tuple(text),
      tags=("B-company", "I-company", "I-company", "I-company",
            "O", "O", "O", "O", "O", "B-name", "I-name", "I-name")
      + ("O",) * 9,
      source=f"{path}:1", text=text,
      char_spans=tuple((i, i + 1) for i in range(len(text))))
  # Whitespace is not a token; spans still index the original text.
  assert sentences[1] == Sentence(
      tokens=("生", "生", "不", "息", "C", "S", "O", "L"),
      tags=("O",) * 4 + ("B-game", "I-game", "I-game", "I-game"),
      source=f"{path}:3", text="生生不息 CSOL",
      char_spans=((0, 1), (1, 2), (2, 3), (3, 4), (5, 6), (6, 7), (7, 8),
                  (8, 9)))
  # An empty label: all 'O'.
  assert sentences[2] == Sentence(
      tokens=("没", "有", "实", "体"), tags=("O",) * 4, source=f"{path}:4",
      text="没有实体", char_spans=((0, 1), (1, 2), (2, 3), (3, 4)))
  assert len(sentences) == 3


def test_read_jsonl_mention_with_space_inside(tmp_path):
  path = _jsonl(tmp_path, {"text": "New York",
                           "label": {"LOC": {"New York": [[0, 7]]}}})
  assert jsonl_reader.read_jsonl(path)[0].tags == ("B-LOC",) + ("I-LOC",) * 6


@pytest.mark.parametrize("line, message", [
    ('{"text": "abc", ', r"invalid JSON \(Expecting"),
    ('["abc"]', r"expected an object with a string 'text'"),
    ('{"text": "abcd", "label": {"X": {"bc": [[1, 1]]}}}',
     r"X mention 'bc' at \[1, 1\] does not match the text there, 'b'"),
    ('{"text": "abcd", "label": {"X": {"cd": [[2, 4]]}}}',
     r"offsets \[2, 4\] of X 'cd' must be \[start, end\] with 0 <= start <= "
     r"end < 4"),
    ('{"text": "abcd", "label": {"X": {"ab": [0, 1]}}}',
     r"offsets 0 of X 'ab' must be"),
    ('{"text": "abcd", "label": {"X": {"ab": [[0, true]]}}}',
     r"offsets \[0, True\] of X 'ab' must be"),
    ('{"text": "abcd", "label": {"X": {"ab": "0-1"}}}',
     r"offsets of 'ab' must be a list of \[start, end\] pairs"),
    ('{"text": "abcd", "label": {"X": [["ab"]]}}',
     r"label\['X'\] must be an object"),
    ('{"text": "abcd", "label": ["X"]}', r"'label' must be an object"),
    ('{"text": "a d", "label": {"X": {" ": [[1, 1]]}}}',
     r"X mention ' ' at \[1, 1\] has no non-space character"),
    ('{"text": "ab", "label": {"my type": {"a": [[0, 0]]}}}',
     r"invalid tag 'B-my type'"),
    ('{"text": "a\\u0000b", "label": {}}',
     r"'text' holds a NUL character \(\\u0000\) at offset 1"),
])
def test_read_jsonl_errors_name_file_and_line(tmp_path, line, message):
  path = write(tmp_path, "bad.jsonl",
               '{"text": "ok", "label": {}}\n\n' + line + "\n")
  with pytest.raises(ValueError, match=rf"bad\.jsonl:3: {message}"):
    jsonl_reader.read_jsonl(path)


# --- overlapping spans --------------------------------------------------------

# As in CLUENER2020 train.json: a company inside a book title.
NESTED = {"text": "《浙商银行年报》发布",
          "label": {"book": {"浙商银行年报": [[1, 6]]},
                    "company": {"浙商银行": [[1, 4]]}}}
BOOK_TAGS = ("O", "B-book") + ("I-book",) * 5 + ("O",) * 3


def test_nested_span_stopped_the_run_before_and_still_does_with_error(
    tmp_path):
  path = _jsonl(tmp_path, NESTED)
  with pytest.raises(ValueError, match=r"data\.jsonl:1: company '浙商银行' at "
                     r"\[1, 4\] overlaps book '浙商银行年报' at \[1, 6\]; nested "
                     r"or overlapping entities are not supported\. Pass "
                     r"--overlapping_spans=keep_longest or keep_first"):
    jsonl_reader.read_jsonl(path, overlapping_spans="error")


def test_keep_longest_is_the_default_and_records_the_dropped_span(tmp_path):
  path = _jsonl(tmp_path, {"text": "无", "label": {}}, NESTED)
  warnings = DataWarnings()
  sentences = jsonl_reader.read_jsonl(path, warnings=warnings)
  assert sentences[1].tags == BOOK_TAGS
  assert warnings.format_lines() == [
      f"{path}:2: overlapping_span: dropped company '浙商银行' at [1, 4]: "
      f"overlaps kept book '浙商银行年报' at [1, 6] "
      f"(--overlapping_spans=keep_longest)"]
  assert list(warnings)[0].details == {
      "type": "company", "text": "浙商银行", "start": 1, "end": 4,
      "kept": "book '浙商银行年报' at [1, 6]"}


def test_keep_longest_does_not_depend_on_label_order(tmp_path):
  reordered = {"text": NESTED["text"],
               "label": {"company": {"浙商银行": [[1, 4]]},
                         "book": {"浙商银行年报": [[1, 6]]}}}
  path = _jsonl(tmp_path, reordered)
  assert jsonl_reader.read_jsonl(path, warnings=DataWarnings())[0].tags == (
      BOOK_TAGS)
  warnings = DataWarnings()
  first = jsonl_reader.read_jsonl(path, "keep_first", warnings)[0]
  assert first.tags == (("O", "B-company") + ("I-company",) * 3 +
                        ("O",) * 5)
  assert [record.details["type"] for record in warnings] == ["book"]


# A chain: A overlaps B, B overlaps C, A and C are apart.
CHAIN = {"text": "abcdef",
         "label": {"A": {"ab": [[0, 1]]}, "B": {"bcde": [[1, 4]]},
                   "C": {"ef": [[4, 5]]}}}


@pytest.mark.parametrize("policy, tags, dropped", [
    ("keep_longest", ("O", "B-B", "I-B", "I-B", "I-B", "O"), ["A", "C"]),
    ("keep_first", ("B-A", "I-A", "O", "O", "B-C", "I-C"), ["B"]),
])
def test_chain_of_overlaps(tmp_path, policy, tags, dropped):
  path = _jsonl(tmp_path, CHAIN)
  warnings = DataWarnings()
  assert jsonl_reader.read_jsonl(path, policy, warnings)[0].tags == tags
  assert [record.details["type"] for record in warnings] == dropped


def test_equal_length_crossing_spans_keep_the_first_written(tmp_path):
  path = _jsonl(tmp_path, {"text": "abcde",
                           "label": {"X": {"abc": [[0, 2]]},
                                     "Y": {"cde": [[2, 4]]}}})
  warnings = DataWarnings()
  assert jsonl_reader.read_jsonl(path, warnings=warnings)[0].tags == (
      "B-X", "I-X", "I-X", "O", "O")
  assert [record.details["type"] for record in warnings] == ["Y"]


def test_same_span_under_two_types_drops_the_second(tmp_path):
  path = _jsonl(tmp_path, {"text": "ab",
                           "label": {"X": {"ab": [[0, 1]]},
                                     "Y": {"ab": [[0, 1]]}}})
  warnings = DataWarnings()
  assert jsonl_reader.read_jsonl(path, warnings=warnings)[0].tags == (
      "B-X", "I-X")
  assert len(warnings) == 1


def test_without_a_collector_dropped_spans_are_logged(tmp_path, caplog):
  path = _jsonl(tmp_path, NESTED, NESTED)
  with caplog.at_level(logging.WARNING):
    jsonl_reader.read_jsonl(path)
  assert [record.getMessage() for record in caplog.records] == [
      f"Data warning: 2 overlapping_span warnings, first at {path}:1: "
      f"dropped company '浙商银行' at [1, 4]: overlaps kept book '浙商银行年报' "
      f"at [1, 6] (--overlapping_spans=keep_longest); also at {path}:2"]


def test_unknown_overlapping_spans_value(tmp_path):
  path = _jsonl(tmp_path, NESTED)
  with pytest.raises(ValueError, match=r"--overlapping_spans 'nested' is "
                     r"unknown; allowed: error, keep_longest, keep_first\."):
    jsonl_reader.read_jsonl(path, "nested")


def test_resolve_overlaps_returns_kept_mentions_in_file_order():
  mentions = [Mention("A", "ab", 0, 1), Mention("B", "cd", 2, 3),
              Mention("C", "abcd", 0, 3)]
  warnings = DataWarnings()
  assert jsonl_reader.resolve_overlaps(mentions, "keep_first", "p:1",
                                       warnings) == mentions[:2]
  assert jsonl_reader.resolve_overlaps(mentions, "keep_longest", "p:1",
                                       warnings) == mentions[2:]
  assert [record.details["type"] for record in warnings] == ["C", "A", "B"]


# --- unlabelled and mixed files ------------------------------------------------


def test_file_without_labels_is_text_to_predict(tmp_path):
  # CLUENER's test.json: an id and a text, no label.
  path = _jsonl(tmp_path, {"id": 0, "text": "四川敦煌学"},
                {"id": 1, "text": "尊重 科学"})
  assert jsonl_reader.read_jsonl(path) == [
      Sentence(tuple("四川敦煌学"), None, f"{path}:1", "四川敦煌学",
               tuple((i, i + 1) for i in range(5))),
      Sentence(("尊", "重", "科", "学"), None, f"{path}:2", "尊重 科学",
               ((0, 1), (1, 2), (3, 4), (4, 5))),
  ]


@pytest.mark.parametrize("records, line, has, lacks", [
    (({"text": "a", "label": {}}, "", {"text": "b"}), 3, 1, 3),
    (({"text": "a"}, {"text": "b", "label": None}), 2, 2, 1),
])
def test_labelled_and_unlabelled_records_in_one_file_is_an_error(
    tmp_path, records, line, has, lacks):
  path = _jsonl(tmp_path, *records)
  with pytest.raises(ValueError, match=rf"data\.jsonl:{line}: records mix "
                     rf"labelled and unlabelled data: .*data\.jsonl:{has} has "
                     rf"a 'label' key but .*data\.jsonl:{lacks} has none"):
    jsonl_reader.read_jsonl(path)


def test_doc_id_becomes_the_document_id(tmp_path):
  path = _jsonl(tmp_path,
                {"text": "张三", "label": {}, "doc_id": "news-1"},
                {"text": "李四", "label": {}, "doc_id": 7},
                {"text": "王五", "label": {}})
  assert [(s.tokens, s.document_id)
          for s in jsonl_reader.read_jsonl(path)] == [
              (("张", "三"), "news-1"), (("李", "四"), 7), (("王", "五"), None)]


def test_fixture_without_doc_id_has_no_document_ids():
  sentences = jsonl_reader.read_jsonl(data_path("cluener.jsonl"))
  assert {s.document_id for s in sentences} == {None}


@pytest.mark.parametrize("doc_id", [1.5, True, None, ["a"], {"id": 1}])
def test_doc_id_must_be_a_string_or_an_integer(tmp_path, doc_id):
  path = _jsonl(tmp_path, {"text": "张三", "label": {}},
                {"text": "李四", "label": {}, "doc_id": doc_id})
  with pytest.raises(ValueError, match=(
      rf"data\.jsonl:2: 'doc_id' must be a string or an integer naming the "
      rf"record's document, got {re.escape(repr(doc_id))}\.")):
    jsonl_reader.read_jsonl(path)
