"""Tests for trainer.data.word_splitting."""

import pytest

from trainer.data import word_splitting


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
  assert word_splitting.default_word_splitter(text) == expected


@pytest.mark.parametrize("character, expected", [
    ("中", True), ("㐀", True), ("\U00020000", True), ("豈", True),
    ("a", False), ("ｶ", False), ("，", False), ("ㄅ", False),
])
def test_is_chinese_char(character, expected):
  assert word_splitting.is_chinese_char(ord(character)) is expected


@pytest.mark.parametrize("character, expected", [
    (",", True), ("$", True), ("~", True), ("“", True), ("。", True),
    ("a", False), ("中", False), (" ", False),
])
def test_is_punctuation(character, expected):
  assert word_splitting.is_punctuation(character) is expected


def test_token_char_spans():
  assert word_splitting.token_char_spans(
      "北京, OK", ["北", "京", ",", "OK"]) == ((0, 1), (1, 2), (2, 3), (4, 6))
  # Repeated words are found in order, not at their first occurrence.
  assert word_splitting.token_char_spans("a a", ["a", "a"]) == ((0, 1),
                                                                 (2, 3))


@pytest.mark.parametrize("tokens, message", [
    (["b", "a"], r"p:3: word 1 'a' .* after offset 2"),
    (["a", ""], r"p:3: word 1 '' "),
])
def test_token_char_spans_refuses_non_substrings(tokens, message):
  with pytest.raises(ValueError, match=message):
    word_splitting.token_char_spans("ab", tokens, "p:3")
