"""Tests for trainer.data.readers: format detection, dispatch and re-exports.

Each format's reader has its own test file (test_conll_reader.py, ...).
"""

import logging
import os

import pytest

from tests.import_checks import assert_imports_without_tensorflow
from tests.reader_fixtures import data_path
from tests.reader_fixtures import REPO_ROOT
from tests.reader_fixtures import write
from trainer.data.formats import conll_reader
from trainer.data import data_files
from trainer.data.formats import jsonl_reader
from trainer.data.formats import parallel_reader
from trainer.data import readers
from trainer.data.formats import text_reader
from trainer.data.data_warnings import DataWarnings
from trainer.data.formats.reader_common import Sentence

SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")


@pytest.mark.parametrize("name, content, expected", [
    ("a.jsonl", '{"text": "a"}\n', "jsonl"),
    ("a.json", '{"text": "a"}\n', "jsonl"),
    ("a.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n", "conll"),
    ("a.txt", "厦 B-LOC\n门 I-LOC\n", "conll"),
    ("train.char.bmes", "高 B-NAME\n勇 E-NAME\n", "conll"),
    # One bad tag in a conll file: still conll, so the reader reports it.
    ("a.txt", "a O\nb O\nc X-Y\n", "conll"),
    ("a.txt", "John lives in Paris\nHello world\n", "text"),
    ("a.txt", "Hello\n", "text"),
    ("source.txt", "a\n", "text"),  # no target.txt next to it
])
def test_detect_format(tmp_path, name, content, expected):
  assert readers.detect_format(write(tmp_path, name, content)) == expected


def test_detect_format_parallel():
  assert readers.detect_format(data_path("source.txt")) == "parallel"


@pytest.mark.parametrize("name, data_format, reader", [
    ("english.conll", "auto", conll_reader.read_conll),
    ("chinese_chars.txt", "conll", conll_reader.read_conll),
    ("source.txt", "auto", parallel_reader.read_parallel),
    ("cluener.jsonl", "auto", jsonl_reader.read_jsonl),
    ("raw.txt", "auto", text_reader.read_text),
    ("english.conll", "text", text_reader.read_text),
])
def test_read_sentences_dispatches_to_the_format_reader(name, data_format,
                                                        reader):
  path = data_path(name)
  assert readers.read_sentences(path, data_format) == reader(path)


def test_read_sentences_explicit_tags_path_means_parallel(tmp_path):
  path = write(tmp_path, "words.txt", "a b\nc\n")
  tags_path = write(tmp_path, "labels.txt", "O O\nS-X\n")
  assert readers.read_sentences(path, tags_path=tags_path) == [
      Sentence(("a", "b"), ("O", "O"), f"{path}:1"),
      Sentence(("c",), ("S-X",), f"{path}:2"),
  ]


def test_read_sentences_word_splitter_for_text():
  sentences = readers.read_sentences(data_path("raw.txt"), "text",
                                     word_splitter=str.split)
  assert sentences[0].tokens == ("John", "lives", "in", "北京,", "OK.")


def test_read_sentences_passes_overlapping_spans_and_warnings(tmp_path):
  path = write(tmp_path, "a.json", '{"text": "abc", "label": {"X": {"ab": '
               '[[0, 1]]}, "Y": {"abc": [[0, 2]]}}}\n')
  warnings = DataWarnings()
  assert readers.read_sentences(path, warnings=warnings)[0].tags == (
      "B-Y", "I-Y", "I-Y")
  assert warnings.format_lines() == [
      f"{path}:1: overlapping_span: dropped X 'ab' at [0, 1]: overlaps kept "
      f"Y 'abc' at [0, 2] (--overlapping_spans=keep_longest)"]
  assert readers.read_sentences(path, overlapping_spans="keep_first",
                                warnings=DataWarnings())[0].tags == (
                                    "B-X", "I-X", "O")
  with pytest.raises(ValueError, match=r"Y 'abc' at \[0, 2\] overlaps X"):
    readers.read_sentences(path, overlapping_spans="error")


@pytest.mark.parametrize("name, content", [
    ("a.txt", "中0 B-X\n国1 I-X\n"),
    ("source.txt", "中0 国1\n"),
])
def test_read_sentences_passes_strip_token_suffix_digit(tmp_path, name,
                                                        content):
  path = write(tmp_path, name, content)
  write(tmp_path, "target.txt", "B-X I-X\n")
  with pytest.raises(ValueError, match=r"--strip_token_suffix_digit"):
    readers.read_sentences(path)
  assert readers.read_sentences(
      path, strip_token_suffix_digit=True)[0].tokens == ("中", "国")


def test_read_sentences_collects_mixed_schemes_or_logs_them(tmp_path,
                                                            caplog):
  path = write(tmp_path, "a.txt", "a S-X\n\nb B-Y\n")
  warnings = DataWarnings()
  readers.read_sentences(path, warnings=warnings)
  assert warnings.counts() == {"mixed_tag_schemes": 1}
  with caplog.at_level(logging.WARNING):
    readers.read_sentences(path)
  assert [record.getMessage()[:50] for record in caplog.records] == [
      "Data warning: 1 mixed_tag_schemes warning, first a"]


def test_read_sentences_unknown_format():
  with pytest.raises(ValueError, match=r"'csv'; allowed: auto, conll, "
                     r"parallel, jsonl, text"):
    readers.read_sentences(data_path("english.conll"), "csv")


def test_read_sentences_missing_file(tmp_path):
  with pytest.raises(ValueError, match=r"nope\.txt: no such file"):
    readers.read_sentences(str(tmp_path / "nope.txt"))


def test_pure_modules_do_not_import_tensorflow():
  assert_imports_without_tensorflow(
      "trainer.data.readers, trainer.data.formats.reader_common, "
      "trainer.data.formats.conll_reader, trainer.data.formats.parallel_reader, "
      "trainer.data.formats.jsonl_reader, trainer.data.formats.text_reader, "
      "trainer.data.word_splitting, trainer.data.data_files, "
      "trainer.data.data_checks, trainer.data.data_warnings, "
      "trainer.data.tag_schemes, trainer.data.labels, "
      "trainer.evaluation.metrics, trainer.schema")


# --- real data --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(SHARED_DATA),
                    reason="../shared/data is absent")
@pytest.mark.parametrize("relative_path, data_format, sentences, tokens", [
    ("conll2003/test.txt", "conll", 3453, 46435),
    ("people_daily_ner/example.dev", "conll", 2318, 109870),
    ("msra_pd_partial_source_target/source.txt", "parallel", 18683, 871138),
])
def test_real_data_counts(relative_path, data_format, sentences, tokens):
  path = os.path.join(SHARED_DATA, relative_path)
  assert readers.detect_format(path) == data_format
  warnings = DataWarnings()
  read = readers.read_sentences(path, warnings=warnings)
  assert (len(read), sum(len(s.tokens) for s in read)) == (sentences, tokens)
  assert all(len(s.tags) == len(s.tokens) for s in read)
  assert len(warnings) == 0  # all three are clean BIO


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(SHARED_DATA),
                    reason="../shared/data is absent")
def test_real_people_daily_folder_lacks_train_and_says_what_it_holds():
  folder = os.path.join(SHARED_DATA, "people_daily_ner")
  found = data_files.find_split_files(folder)
  assert (found["train"], os.path.basename(found["dev"]),
          os.path.basename(found["test"])) == (None, "example.dev",
                                               "example.test")
  with pytest.raises(ValueError, match=r"it holds README\.md, example\.dev, "
                     r"example\.test\."):
    data_files.find_split_files(folder, required_splits=("train",))
