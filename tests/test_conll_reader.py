"""Tests for trainer.data.formats.conll_reader."""

import logging

import pytest

from tests.reader_fixtures import data_path
from tests.reader_fixtures import write
from trainer.data.formats import conll_reader
from trainer.data.data_warnings import DataWarnings
from trainer.data.formats.reader_common import Sentence


def test_read_conll_english_fixture():
  path = data_path("english.conll")
  # The file opens with -DOCSTART-: both sentences are in document 1.
  assert conll_reader.read_conll(path) == [
      Sentence(tokens=("EU", "rejects", "German", "call", "."),
               tags=("B-ORG", "O", "B-MISC", "O", "O"), source=f"{path}:3",
               document_id=1),
      Sentence(tokens=("Peter", "Blackburn"), tags=("B-PER", "I-PER"),
               source=f"{path}:9", document_id=1),
  ]


def test_read_conll_chinese_chars_space_and_tab():
  path = data_path("chinese_chars.txt")
  assert conll_reader.read_conll(path) == [
      Sentence(("厦", "门", "是"), ("B-LOC", "I-LOC", "O"), f"{path}:1"),
      Sentence(("中", "央"), ("B-ORG", "I-ORG"), f"{path}:5"),
  ]


def test_read_conll_crlf_bom_blank_runs_no_final_newline(tmp_path):
  path = write(tmp_path, "a.conll",
               b"\xef\xbb\xbfEU B-ORG\r\n\r\n\r\n\r\nrejects O\r\nit O")
  assert conll_reader.read_conll(path) == [
      Sentence(("EU",), ("B-ORG",), f"{path}:1"),
      Sentence(("rejects", "it"), ("O", "O"), f"{path}:5"),
  ]


def test_read_conll_docstart_mid_file_ends_sentence(tmp_path):
  path = write(tmp_path, "a.conll",
               "a O\n-DOCSTART- -X- O\n\nb B-X\n\n-DOCSTART- O\nc O\n")
  sentences = conll_reader.read_conll(path)
  assert [(s.tokens, s.source, s.document_id) for s in sentences] == [
      (("a",), f"{path}:1", 0), (("b",), f"{path}:4", 1),
      (("c",), f"{path}:7", 2)]


def test_read_conll_documents_count_docstart_lines(tmp_path):
  # Two markers in a row open an empty document: ids count markers, so the
  # next sentence is in document 2, not 1.
  path = write(tmp_path, "a.conll",
               "-DOCSTART- -X- -X- O\n\nEU B-ORG\n\nrejects O\n\n"
               "-DOCSTART- -X- -X- O\n\n-DOCSTART- -X- -X- O\n\n"
               "Peter B-PER\n")
  assert [(s.tokens, s.document_id) for s in conll_reader.read_conll(path)] == [
      (("EU",), 1), (("rejects",), 1), (("Peter",), 3)]


def test_read_conll_without_docstart_has_no_document_ids(tmp_path):
  path = write(tmp_path, "a.conll", "EU B-ORG\n\nrejects O\n")
  assert [s.document_id for s in conll_reader.read_conll(path)] == [None,
                                                                    None]


def test_read_conll_all_single_column_is_unlabelled(tmp_path):
  path = write(tmp_path, "a.conll", "EU\nrejects\n\nit\n")
  assert conll_reader.read_conll(path) == [
      Sentence(("EU", "rejects"), None, f"{path}:1"),
      Sentence(("it",), None, f"{path}:4"),
  ]


@pytest.mark.parametrize("content, line, message", [
    ("EU B-ORG\nrejects\n", 2, r"line 'rejects' has one column"),
    ("EU B-ORG\n\nrejects X-PER\n", 3, r"invalid tag 'X-PER' \(unknown prefix"),
    ("EU NNP PER\n", 1, r"invalid tag 'PER'"),
    ("EU B-\n", 1, r"invalid tag 'B-'"),
])
def test_read_conll_errors_name_file_and_line(tmp_path, content, line,
                                              message):
  path = write(tmp_path, "bad.conll", content)
  with pytest.raises(ValueError, match=rf"bad\.conll:{line}: {message}"):
    conll_reader.read_conll(path)


@pytest.mark.parametrize("content", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_read_conll_empty_file(tmp_path, content):
  path = write(tmp_path, "empty.conll", content)
  with pytest.raises(ValueError, match=r"empty\.conll: contains no sentences"):
    conll_reader.read_conll(path)


# Weibo NER writes each character with its position in the word.
SUFFIXED = "我0\tO\n\n中0\tB-GPE.NAM\n国1\tI-GPE.NAM\n人0\tO\nA\tO\n"


def test_word_position_suffix_layout_is_an_error_naming_the_flag(tmp_path):
  path = write(tmp_path, "weibo.train", SUFFIXED)
  with pytest.raises(ValueError, match=r"weibo\.train:1: token '我0' .*"
                     r"word-position suffix layout .*Pass "
                     r"--strip_token_suffix_digit"):
    conll_reader.read_conll(path)


def test_strip_token_suffix_digit_removes_the_digit(tmp_path):
  path = write(tmp_path, "weibo.train", SUFFIXED)
  assert conll_reader.read_conll(path, strip_token_suffix_digit=True) == [
      Sentence(("我",), ("O",), f"{path}:1"),
      Sentence(("中", "国", "人", "A"), ("B-GPE.NAM", "I-GPE.NAM", "O", "O"),
               f"{path}:3"),
  ]


def test_a_few_digit_tokens_are_not_the_suffix_layout(tmp_path):
  path = write(tmp_path, "a.txt", "第 O\n3 O\n中0 O\n国 B-X\n人 O\n")
  assert conll_reader.read_conll(path)[0].tokens == ("第", "3", "中0", "国",
                                                     "人")


MIXED = "a B-X\nb E-X\n\nc S-Y\n\nd B-Z\ne I-Z\n"


def test_mixed_tag_schemes_recorded_once_with_token_line(tmp_path):
  path = write(tmp_path, "mixed.txt", MIXED)
  warnings = DataWarnings()
  sentences = conll_reader.read_conll(path, warnings=warnings)
  assert len(sentences) == 3
  assert [(record.kind, record.source) for record in warnings] == [
      ("mixed_tag_schemes", f"{path}:7")]
  assert list(warnings)[0].message.startswith(
      f"{path} mixes tag schemes: 2 entities end with E-/S- (BIOES/BMES) and "
      f"1 with B-/I-/M- (BIO)")


def test_without_a_collector_the_warning_is_logged(tmp_path, caplog):
  path = write(tmp_path, "mixed.txt", MIXED)
  with caplog.at_level(logging.WARNING):
    conll_reader.read_conll(path)
  assert len(caplog.records) == 1
  assert caplog.records[0].getMessage().startswith(
      f"Data warning: 1 mixed_tag_schemes warning, first at {path}:7: ")
