"""Tests for trainer.data.formats.reader_common: line reading, byte errors,
Sentence.
"""

import pytest

from tests.reader_fixtures import write
from trainer.data.formats import reader_common
from trainer.data import readers
from trainer.data.formats.reader_common import Sentence


def test_read_lines_bom_crlf_and_no_final_newline(tmp_path):
  path = write(tmp_path, "a.txt", b"\xef\xbb\xbfa O\r\n\r\nb O")
  assert reader_common.read_lines(path) == ["a O", "", "b O"]


def test_read_lines_splits_on_newline_only(tmp_path):
  # U+2028 (LINE SEPARATOR) and \x0b can sit inside a token.
  path = write(tmp_path, "a.txt", "a\u2028b O\nc\x0bd O\n")
  assert reader_common.read_lines(path) == ["a\u2028b O", "c\x0bd O"]


@pytest.mark.parametrize("content, offset", [
    (b"a O\nb O\n\xe9t\xe9 O\n", 8),
    # Offsets count the BOM too: they are offsets into the file.
    (b"\xef\xbb\xbfa O\nb O\n\xe9t\xe9 O\n", 11),
])
def test_undecodable_utf8_names_file_line_and_offset(tmp_path, content,
                                                     offset):
  path = write(tmp_path, "latin1.conll", content)
  with pytest.raises(ValueError, match=rf"latin1\.conll:3: not valid UTF-8 "
                     rf"at byte offset {offset} \(byte b'\\xe9'"):
    reader_common.read_lines(path)


@pytest.mark.parametrize("content, line, offset", [
    (b"a O\n\nb\x00c O\n", 3, 6),
    # UTF-16-LE without a BOM decodes as UTF-8 but is full of NUL bytes.
    ("EU B-ORG\n".encode("utf-16-le"), 1, 1),
])
def test_nul_byte_is_an_error_with_file_and_line(tmp_path, content, line,
                                                 offset):
  path = write(tmp_path, "nul.txt", content)
  with pytest.raises(ValueError, match=rf"nul\.txt:{line}: NUL byte \(\\x00\) "
                     rf"at byte offset {offset}; .*UTF-16"):
    reader_common.read_lines(path)


@pytest.mark.parametrize("name, data_format, content", [
    ("a.conll", "conll", b"a O\nb\x00 O\n"),
    ("a.jsonl", "jsonl", b'{"text": "a", "label": {}}\n{"text": "b\x00"}\n'),
    ("a.txt", "text", b"hello\nwor\x00ld\n"),
])
def test_every_format_refuses_nul_bytes(tmp_path, name, data_format, content):
  path = write(tmp_path, name, content)
  with pytest.raises(ValueError, match=rf"{name}:2: NUL byte"):
    readers.read_sentences(path, data_format)


def test_check_not_empty(tmp_path):
  sentence = Sentence(("a",), None, "p:1")
  assert reader_common.check_not_empty([sentence], "p") == [sentence]
  with pytest.raises(ValueError, match=r"^p: contains no sentences"):
    reader_common.check_not_empty([], "p")


@pytest.mark.parametrize("text, expected", [
    ("O", True), ("B-PER", True), ("M-LOC", True), ("S-X", True),
    ("PER", False), ("B-", False), ("X-PER", False), ("O-PER", False),
])
def test_looks_like_tag(text, expected):
  assert reader_common.looks_like_tag(text) is expected
