"""Tests for trainer.data.formats.text_reader."""

import pytest

from tests.reader_fixtures import data_path
from tests.reader_fixtures import write
from trainer.data.formats import text_reader
from trainer.data.formats.reader_common import Sentence


def test_read_text_fixture_keeps_true_line_numbers():
  path = data_path("raw.txt")
  assert text_reader.read_text(path) == [
      Sentence(tokens=("John", "lives", "in", "北", "京", ",", "OK", "."),
               tags=None, source=f"{path}:1", text="John lives in 北京, OK.",
               char_spans=((0, 4), (5, 10), (11, 13), (14, 15), (15, 16),
                           (16, 17), (18, 20), (20, 21))),
      Sentence(tokens=("Hello", "world"), tags=None, source=f"{path}:4",
               text="Hello world", char_spans=((0, 5), (6, 11))),
  ]


def test_read_text_custom_splitter():
  sentences = text_reader.read_text(data_path("raw.txt"),
                                    word_splitter=lambda line: line.split())
  assert sentences[0].tokens == ("John", "lives", "in", "北京,", "OK.")
  assert sentences[0].char_spans == ((0, 4), (5, 10), (11, 13), (14, 17),
                                     (18, 21))


def test_read_text_splitter_must_return_substrings(tmp_path):
  path = write(tmp_path, "a.txt", "\nHello World\n")
  with pytest.raises(ValueError, match=r"a\.txt:2: word 0 'hello'"):
    text_reader.read_text(path, lambda line: line.lower().split())


def test_read_text_splitter_returning_nothing(tmp_path):
  path = write(tmp_path, "a.txt", "ok\n...\n")
  with pytest.raises(ValueError, match=r"a\.txt:2: the word splitter "
                     r"returned no words for the non-empty line '\.\.\.'"):
    text_reader.read_text(path, lambda line: [w for w in line.split()
                                              if w != "..."])


def test_read_text_blank_file(tmp_path):
  path = write(tmp_path, "a.txt", "\n  \n")
  with pytest.raises(ValueError, match=r"a\.txt: contains no sentences"):
    text_reader.read_text(path)
