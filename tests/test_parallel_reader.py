"""Tests for trainer.data.formats.parallel_reader."""

import os

import pytest

from tests.reader_fixtures import data_path
from tests.reader_fixtures import write
from trainer.data.formats import parallel_reader
from trainer.data.data_warnings import DataWarnings
from trainer.data.formats.reader_common import Sentence


def test_read_parallel_fixture_by_convention():
  path = data_path("source.txt")
  assert parallel_reader.read_parallel(path) == [
      Sentence(("中", "国", "人"), ("B-LOC", "I-LOC", "O"), f"{path}:2"),
      Sentence(("北", "京"), ("B-LOC", "I-LOC"), f"{path}:4"),
  ]


@pytest.mark.parametrize("tokens_name, tags_name", [
    ("train.src", "train.tgt"),
    ("train.tokens", "train.tags"),
])
def test_read_parallel_suffix_conventions(tmp_path, tokens_name, tags_name):
  path = write(tmp_path, tokens_name, "a b\n")
  write(tmp_path, tags_name, "B-X I-X\n")
  assert parallel_reader.read_parallel(path) == [
      Sentence(("a", "b"), ("B-X", "I-X"), f"{path}:1")]


def test_read_parallel_explicit_tags_path(tmp_path):
  path = write(tmp_path, "words.txt", "a b\nc\n")
  tags_path = write(tmp_path, "labels.txt", "O O\nS-X\n")
  assert parallel_reader.read_parallel(path, tags_path) == [
      Sentence(("a", "b"), ("O", "O"), f"{path}:1"),
      Sentence(("c",), ("S-X",), f"{path}:2"),
  ]


@pytest.mark.parametrize("tokens, tags, message", [
    ("a b\nc d e\n", "O O\nO O\n",
     r"source\.txt:2 has 3 tokens but .*target\.txt:2 has 2 tags"),
    # One side empty is a mismatch, not a skipped line.
    ("a\n\n", "O\nO\n", r"source\.txt:2 has 0 tokens"),
    ("a\nb\n", "O\n", r"source\.txt has 2 lines but .*target\.txt has 1"),
])
def test_read_parallel_count_mismatches(tmp_path, tokens, tags, message):
  path = write(tmp_path, "source.txt", tokens)
  write(tmp_path, "target.txt", tags)
  with pytest.raises(ValueError, match=message):
    parallel_reader.read_parallel(path)


def test_read_parallel_first_error_in_file_order(tmp_path):
  # A bad tag on line 1 is reported before a count mismatch on line 2.
  path = write(tmp_path, "source.txt", "a b\nc d e\n")
  write(tmp_path, "target.txt", "O LOC\nO O\n")
  with pytest.raises(ValueError,
                     match=r"target\.txt:1 token 1: invalid tag 'LOC'"):
    parallel_reader.read_parallel(path)


def test_read_parallel_without_partner(tmp_path):
  path = write(tmp_path, "words.txt", "a\n")
  with pytest.raises(ValueError, match=r"words\.txt: no tags file"):
    parallel_reader.read_parallel(path)


@pytest.mark.parametrize("path, expected", [
    (os.path.join("d", "source.txt"), os.path.join("d", "target.txt")),
    ("d/train.src", "d/train.tgt"),
    ("a.tokens", "a.tags"),
    ("train.txt", None),
    ("my_source.txt", None),
])
def test_parallel_partner(path, expected):
  assert parallel_reader.parallel_partner(path) == expected


def test_word_position_suffix_layout(tmp_path):
  path = write(tmp_path, "source.txt", "-DOCSTART-\n我0 爱1 A\n中0 国1\n")
  write(tmp_path, "target.txt", "-DOCSTART-\nO O O\nB-LOC I-LOC\n")
  with pytest.raises(ValueError, match=r"source\.txt:2: token '我0'.*"
                     r"--strip_token_suffix_digit"):
    parallel_reader.read_parallel(path)
  assert parallel_reader.read_parallel(path, strip_token_suffix_digit=True) == [
      Sentence(("我", "爱", "A"), ("O", "O", "O"), f"{path}:2"),
      Sentence(("中", "国"), ("B-LOC", "I-LOC"), f"{path}:3"),
  ]


def test_mixed_tag_schemes_warning_names_the_sentence_line(tmp_path):
  path = write(tmp_path, "source.txt", "a b\nc\nd e\n")
  write(tmp_path, "target.txt", "B-X E-X\nS-Y\nB-Z I-Z\n")
  warnings = DataWarnings()
  parallel_reader.read_parallel(path, warnings=warnings)
  assert [(record.kind, record.source) for record in warnings] == [
      ("mixed_tag_schemes", f"{path}:3")]
