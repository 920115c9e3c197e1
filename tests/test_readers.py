"""Tests for trainer.readers."""

import os
import subprocess
import sys

import pytest

from trainer import readers
from trainer.readers import Sentence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(REPO_ROOT, "tests", "testdata")
SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")


def _testdata(name):
  return os.path.join(TESTDATA, name)


def _write(tmp_path, name, content):
  """Writes str (UTF-8) or bytes to tmp_path/name and returns the path."""
  path = tmp_path / name
  if isinstance(content, str):
    content = content.encode("utf-8")
  path.write_bytes(content)
  return str(path)


# --- conll ------------------------------------------------------------------


def test_read_conll_english_fixture():
  path = _testdata("english.conll")
  assert readers.read_sentences(path) == [
      Sentence(tokens=("EU", "rejects", "German", "call", "."),
               tags=("B-ORG", "O", "B-MISC", "O", "O"), source=f"{path}:3"),
      Sentence(tokens=("Peter", "Blackburn"), tags=("B-PER", "I-PER"),
               source=f"{path}:9"),
  ]


def test_read_conll_chinese_chars_space_and_tab():
  path = _testdata("chinese_chars.txt")
  assert readers.read_sentences(path, "conll") == [
      Sentence(("厦", "门", "是"), ("B-LOC", "I-LOC", "O"), f"{path}:1"),
      Sentence(("中", "央"), ("B-ORG", "I-ORG"), f"{path}:5"),
  ]


def test_read_conll_crlf_bom_blank_runs_no_final_newline(tmp_path):
  path = _write(tmp_path, "a.conll",
                b"\xef\xbb\xbfEU B-ORG\r\n\r\n\r\n\r\nrejects O\r\nit O")
  assert readers.read_conll(path) == [
      Sentence(("EU",), ("B-ORG",), f"{path}:1"),
      Sentence(("rejects", "it"), ("O", "O"), f"{path}:5"),
  ]


def test_read_conll_docstart_mid_file_ends_sentence(tmp_path):
  path = _write(tmp_path, "a.conll",
                "a O\n-DOCSTART- -X- O\n\nb B-X\n\n-DOCSTART- O\nc O\n")
  sentences = readers.read_conll(path)
  assert [(s.tokens, s.source) for s in sentences] == [
      (("a",), f"{path}:1"), (("b",), f"{path}:4"), (("c",), f"{path}:7")]


def test_read_conll_all_single_column_is_unlabelled(tmp_path):
  path = _write(tmp_path, "a.conll", "EU\nrejects\n\nit\n")
  assert readers.read_sentences(path, "conll") == [
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
  path = _write(tmp_path, "bad.conll", content)
  with pytest.raises(ValueError, match=rf"bad\.conll:{line}: {message}"):
    readers.read_sentences(path, "conll")


@pytest.mark.parametrize("content", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_read_conll_empty_file(tmp_path, content):
  path = _write(tmp_path, "empty.conll", content)
  with pytest.raises(ValueError, match=r"empty\.conll: contains no sentences"):
    readers.read_sentences(path, "conll")


@pytest.mark.parametrize("content, offset", [
    (b"a O\nb O\n\xe9t\xe9 O\n", 8),
    # Offsets count the BOM too: they are offsets into the file.
    (b"\xef\xbb\xbfa O\nb O\n\xe9t\xe9 O\n", 11),
])
def test_undecodable_utf8_names_file_line_and_offset(tmp_path, content,
                                                     offset):
  path = _write(tmp_path, "latin1.conll", content)
  with pytest.raises(ValueError, match=rf"latin1\.conll:3: not valid UTF-8 "
                     rf"at byte offset {offset} \(byte b'\\xe9'"):
    readers.read_sentences(path, "conll")


# --- parallel -----------------------------------------------------------------


def test_read_parallel_fixture_by_convention():
  path = _testdata("source.txt")
  expected = [
      Sentence(("中", "国", "人"), ("B-LOC", "I-LOC", "O"), f"{path}:2"),
      Sentence(("北", "京"), ("B-LOC", "I-LOC"), f"{path}:4"),
  ]
  assert readers.read_sentences(path) == expected
  assert readers.read_parallel(path) == expected


@pytest.mark.parametrize("tokens_name, tags_name", [
    ("train.src", "train.tgt"),
    ("train.tokens", "train.tags"),
])
def test_read_parallel_suffix_conventions(tmp_path, tokens_name, tags_name):
  path = _write(tmp_path, tokens_name, "a b\n")
  _write(tmp_path, tags_name, "B-X I-X\n")
  assert readers.read_sentences(path) == [
      Sentence(("a", "b"), ("B-X", "I-X"), f"{path}:1")]


def test_read_parallel_explicit_tags_path(tmp_path):
  path = _write(tmp_path, "words.txt", "a b\nc\n")
  tags_path = _write(tmp_path, "labels.txt", "O O\nS-X\n")
  assert readers.read_sentences(path, tags_path=tags_path) == [
      Sentence(("a", "b"), ("O", "O"), f"{path}:1"),
      Sentence(("c",), ("S-X",), f"{path}:2"),
  ]


def test_read_parallel_token_count_mismatch(tmp_path):
  path = _write(tmp_path, "source.txt", "a b\nc d e\n")
  _write(tmp_path, "target.txt", "O O\nO O\n")
  with pytest.raises(ValueError, match=r"source\.txt:2 has 3 tokens but "
                     r".*target\.txt:2 has 2 tags"):
    readers.read_sentences(path)


def test_read_parallel_one_side_empty_is_mismatch(tmp_path):
  path = _write(tmp_path, "source.txt", "a\n\n")
  _write(tmp_path, "target.txt", "O\nO\n")
  with pytest.raises(ValueError, match=r"source\.txt:2 has 0 tokens"):
    readers.read_sentences(path)


def test_read_parallel_line_count_mismatch(tmp_path):
  path = _write(tmp_path, "source.txt", "a\nb\n")
  _write(tmp_path, "target.txt", "O\n")
  with pytest.raises(ValueError, match=r"source\.txt has 2 lines but "
                     r".*target\.txt has 1"):
    readers.read_sentences(path, "parallel")


def test_read_parallel_bad_tag_names_tags_file(tmp_path):
  path = _write(tmp_path, "source.txt", "a b\n")
  _write(tmp_path, "target.txt", "O LOC\n")
  with pytest.raises(ValueError,
                     match=r"target\.txt:1 token 1: invalid tag 'LOC'"):
    readers.read_sentences(path)


def test_read_parallel_without_partner(tmp_path):
  path = _write(tmp_path, "words.txt", "a\n")
  with pytest.raises(ValueError, match=r"words\.txt: no tags file"):
    readers.read_sentences(path, "parallel")


@pytest.mark.parametrize("path, expected", [
    (os.path.join("d", "source.txt"), os.path.join("d", "target.txt")),
    ("d/train.src", "d/train.tgt"),
    ("a.tokens", "a.tags"),
    ("train.txt", None),
    ("my_source.txt", None),
])
def test_parallel_partner(path, expected):
  assert readers.parallel_partner(path) == expected


# --- jsonl ------------------------------------------------------------


def test_read_jsonl_fixture():
  path = _testdata("cluener.jsonl")
  sentences = readers.read_sentences(path)
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
  # No label: all 'O'.
  assert sentences[2] == Sentence(
      tokens=("没", "有", "实", "体"), tags=("O",) * 4, source=f"{path}:4",
      text="没有实体", char_spans=((0, 1), (1, 2), (2, 3), (3, 4)))
  assert len(sentences) == 3


def test_read_jsonl_mention_with_space_inside(tmp_path):
  path = _write(tmp_path, "a.jsonl",
                '{"text": "New York", '
                '"label": {"LOC": {"New York": [[0, 7]]}}}')
  assert readers.read_jsonl(path)[0].tags == ("B-LOC", "I-LOC", "I-LOC",
                                               "I-LOC", "I-LOC", "I-LOC",
                                               "I-LOC")


@pytest.mark.parametrize("line, message", [
    ('{"text": "abc", ', r"invalid JSON \(Expecting"),
    ('["abc"]', r"expected an object with a string 'text'"),
    ('{"text": "abcd", "label": {"X": {"bc": [[1, 1]]}}}',
     r"X mention 'bc' at \[1, 1\] does not match the text there, 'b'"),
    ('{"text": "abcd", "label": {"X": {"cd": [[2, 4]]}}}',
     r"offsets \[2, 4\] of X 'cd' must be \[start, end\] with 0 <= start <= "
     r"end < 4"),
    ('{"text": "abcd", "label": {"X": {"abc": [[0, 2]]}, '
     '"Y": {"cd": [[2, 3]]}}}',
     r"Y 'cd' at \[2, 3\] overlaps X 'abc' at \[0, 2\]"),
    ('{"text": "abcd", "label": {"X": {"ab": [0, 1]}}}',
     r"offsets 0 of X 'ab' must be"),
    ('{"text": "abcd", "label": ["X"]}', r"'label' must be an object"),
    ('{"text": "a d", "label": {"X": {" ": [[1, 1]]}}}',
     r"X mention ' ' at \[1, 1\] has no non-space character"),
    ('{"text": "ab", "label": {"my type": {"a": [[0, 0]]}}}',
     r"invalid tag 'B-my type'"),
])
def test_read_jsonl_errors_name_file_and_line(tmp_path, line, message):
  path = _write(tmp_path, "bad.jsonl", '{"text": "ok"}\n\n' + line + "\n")
  with pytest.raises(ValueError, match=rf"bad\.jsonl:3: {message}"):
    readers.read_sentences(path)


# --- text ---------------------------------------------------------------------


def test_read_text_fixture_keeps_true_line_numbers():
  path = _testdata("raw.txt")
  assert readers.read_sentences(path) == [
      Sentence(tokens=("John", "lives", "in", "北", "京", ",", "OK", "."),
               tags=None, source=f"{path}:1", text="John lives in 北京, OK.",
               char_spans=((0, 4), (5, 10), (11, 13), (14, 15), (15, 16),
                           (16, 17), (18, 20), (20, 21))),
      Sentence(tokens=("Hello", "world"), tags=None, source=f"{path}:4",
               text="Hello world", char_spans=((0, 5), (6, 11))),
  ]


def test_read_text_custom_splitter():
  path = _testdata("raw.txt")
  sentences = readers.read_sentences(path, "text",
                                     word_splitter=lambda line: line.split())
  assert sentences[0].tokens == ("John", "lives", "in", "北京,", "OK.")
  assert sentences[0].char_spans == ((0, 4), (5, 10), (11, 13), (14, 17),
                                     (18, 21))


def test_read_text_splitter_must_return_substrings(tmp_path):
  path = _write(tmp_path, "a.txt", "\nHello World\n")
  with pytest.raises(ValueError, match=r"a\.txt:2: word 0 'hello'"):
    readers.read_sentences(path, "text",
                           word_splitter=lambda line: line.lower().split())


@pytest.mark.parametrize("text, expected", [
    ("John lives in 北京, OK.", ["John", "lives", "in", "北", "京", ",", "OK",
                                 "."]),
    ("  multiple   spaces\t", ["multiple", "spaces"]),
    ("U.S.A.", ["U", ".", "S", ".", "A", "."]),
    ("$5", ["$", "5"]),
    ("中文“引号”", ["中", "文", "“", "引", "号", "”"]),
    ("Ünïcödé CASE", ["Ünïcödé", "CASE"]),
    ("ｶﾀｶﾅ", ["ｶﾀｶﾅ"]),  # half-width katakana is not in the CJK ranges
    ("", []),
])
def test_default_word_splitter(text, expected):
  assert readers.default_word_splitter(text) == expected


# --- auto, read_sentences, find_split_files -----------------------------------


@pytest.mark.parametrize("name, content, expected", [
    ("a.jsonl", '{"text": "a"}\n', "jsonl"),
    ("a.json", '{"text": "a"}\n', "jsonl"),
    ("a.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n", "conll"),
    ("a.txt", "厦 B-LOC\n门 I-LOC\n", "conll"),
    # One bad tag in a conll file: still conll, so the reader reports it.
    ("a.txt", "a O\nb O\nc X-Y\n", "conll"),
    ("a.txt", "John lives in Paris\nHello world\n", "text"),
    ("a.txt", "Hello\n", "text"),
    ("source.txt", "a\n", "text"),  # no target.txt next to it
])
def test_detect_format(tmp_path, name, content, expected):
  assert readers.detect_format(_write(tmp_path, name, content)) == expected


def test_detect_format_parallel():
  assert readers.detect_format(_testdata("source.txt")) == "parallel"


def test_read_sentences_unknown_format():
  with pytest.raises(ValueError, match=r"'csv'; allowed: auto, conll, "
                     r"parallel, jsonl, text"):
    readers.read_sentences(_testdata("english.conll"), "csv")


def test_read_sentences_missing_file(tmp_path):
  with pytest.raises(ValueError, match=r"nope\.txt: no such file"):
    readers.read_sentences(str(tmp_path / "nope.txt"))


def test_find_split_files(tmp_path):
  for name in ("train.txt", "train.jsonl", "valid.txt", "example.dev"):
    _write(tmp_path, name, "a O\n")
  assert readers.find_split_files(str(tmp_path)) == {
      "train": str(tmp_path / "train.txt"),
      "dev": str(tmp_path / "valid.txt"),
      "test": None,
  }


def test_find_split_files_parallel_needs_partner(tmp_path):
  _write(tmp_path, "source.txt", "a\n")
  assert readers.find_split_files(str(tmp_path))["train"] is None
  _write(tmp_path, "target.txt", "O\n")
  assert readers.find_split_files(str(tmp_path))["train"] == str(
      tmp_path / "source.txt")


def test_find_split_files_missing_dir(tmp_path):
  with pytest.raises(ValueError, match=r"nope' is not a directory"):
    readers.find_split_files(str(tmp_path / "nope"))


def test_pure_modules_do_not_import_tensorflow():
  code = ("import trainer.readers, trainer.tag_schemes, trainer.labels, "
          "trainer.metrics, trainer.schema, sys; "
          "assert 'tensorflow' not in sys.modules")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr


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
  read = readers.read_sentences(path)
  assert (len(read), sum(len(s.tokens) for s in read)) == (sentences, tokens)
  assert all(len(s.tags) == len(s.tokens) for s in read)
