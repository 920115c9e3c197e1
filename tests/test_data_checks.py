"""Tests for trainer.data.data_checks: suffix-digit layout and mixed tag
schemes.
"""

import pytest

from trainer.data import data_checks
from trainer.data.data_warnings import DataWarnings
from trainer.data.formats.reader_common import Sentence


@pytest.mark.parametrize("token, expected", [
    ("中0", True), ("国9", True), ("中", False), ("中01", False),
    ("A1", False), ("中０", False),  # full-width digit is not ASCII
    ("0中", False), ("1", False),
])
def test_has_suffix_digit(token, expected):
  assert data_checks.has_suffix_digit(token) is expected


@pytest.mark.parametrize("token, expected", [
    ("中0", "中"), ("中", "中"), ("A1", "A1"), ("中01", "中01")])
def test_strip_suffix_digit(token, expected):
  assert data_checks.strip_suffix_digit(token) == expected


@pytest.mark.parametrize("rows, expected", [
    ([(1, ["中0"]), (2, ["国1"]), (4, ["人"])], 1),
    ([(3, ["A", "中", "国1"]), (5, ["人0", "民1", "B2"])], 3),
    # Only half of the CJK tokens: not the layout.
    ([(1, ["中0", "国"])], None),
    # Digits after Latin letters never count.
    ([(1, ["A1", "B2", "中"])], None),
    ([], None),
])
def test_suffix_digit_layout_line(rows, expected):
  assert data_checks.suffix_digit_layout_line(rows) == expected


def test_check_token_suffix_digits_names_file_line_and_flag():
  rows = [(2, ["我"]), (3, ["中0"]), (4, ["国1"])]
  with pytest.raises(ValueError, match=r"^d\.txt:3: token '中0' is a CJK "
                     r"character followed by a digit.*--strip_token_suffix_"
                     r"digit"):
    data_checks.check_token_suffix_digits(rows, "d.txt", strip=False)
  data_checks.check_token_suffix_digits(rows, "d.txt", strip=True)
  data_checks.check_token_suffix_digits([(1, ["中", "国"])], "d.txt",
                                        strip=False)


def _conll_sentences(*groups):
  """Sentences as read from CoNLL lines: groups separated by a blank line."""
  sentences, line = [], 1
  for tags in groups:
    sentences.append(Sentence(tuple("x" * len(tags)), tuple(tags),
                              f"p:{line}"))
    line += len(tags) + 1
  return sentences


def test_bio_and_bioes_mixed_in_conll_is_one_warning_at_rarer_kind():
  sentences = _conll_sentences(("B-X", "E-X"), ("S-Y",), ("B-Z", "I-Z"))
  warnings = DataWarnings()
  data_checks.check_mixed_tag_schemes(sentences, "p", warnings,
                                      one_token_per_line=True)
  assert warnings.format_lines() == [
      "p:7: mixed_tag_schemes: p mixes tag schemes: 2 entities end with "
      "E-/S- (BIOES/BMES) and 1 with B-/I-/M- (BIO); first of the rarer kind "
      "at p:7. Entities are read with conlleval rules; check that the tags "
      "are what you meant."]
  assert list(warnings)[0].details == {
      "counts": {"closed": 2, "open": 1, "I": 1, "M": 0}}


def test_i_and_m_inside_tags_mixed():
  sentences = _conll_sentences(("B-X", "M-X", "E-X"), ("B-Y", "I-Y", "E-Y"),
                               ("B-Z", "M-Z", "E-Z"))
  warnings = DataWarnings()
  data_checks.check_mixed_tag_schemes(sentences, "p", warnings,
                                      one_token_per_line=True)
  assert [record.source for record in warnings] == ["p:6"]
  assert ("1 inside tags are I- (BIO/BIOES) and 2 are M- (BMES)"
          in list(warnings)[0].message)


def test_both_mixes_are_one_warning_listing_both_places():
  # One token per line is False: places are sentence lines.
  sentences = [Sentence(("a", "b"), ("B-X", "M-X"), "s.txt:1"),
               Sentence(("a", "b"), ("B-X", "E-X"), "s.txt:2"),
               Sentence(("a", "b"), ("B-X", "I-X"), "s.txt:3"),
               Sentence(("a",), ("S-X",), "s.txt:4")]
  warnings = DataWarnings()
  data_checks.check_mixed_tag_schemes(sentences, "s.txt", warnings,
                                      one_token_per_line=False)
  assert len(warnings) == 1
  record = list(warnings)[0]
  # Ties (2 closed / 2 open, 1 I / 1 M) report the first-named kind:
  # 'closed' first at s.txt:2, 'I' first at s.txt:3.
  assert record.source == "s.txt:2"
  assert "first of the rarer kind at s.txt:2, s.txt:3." in record.message


@pytest.mark.parametrize("groups", [
    (("B-X", "I-X"), ("B-Y",), ("O", "O")),                       # BIO
    (("B-X", "I-X", "E-X"), ("S-Y",), ("O",)),                    # BIOES
    (("B-X", "M-X", "E-X"), ("S-Y",), ("B-Z", "E-Z")),            # BMES
    (("I-X", "I-X", "O", "I-Y"),),                                # IOB1
    (("O", "O"),),
])
def test_one_scheme_gives_no_warning(groups):
  warnings = DataWarnings()
  data_checks.check_mixed_tag_schemes(_conll_sentences(*groups), "p",
                                      warnings, one_token_per_line=True)
  assert len(warnings) == 0


def test_unlabelled_sentences_are_ignored():
  warnings = DataWarnings()
  data_checks.check_mixed_tag_schemes([Sentence(("a",), None, "p:1")], "p",
                                      warnings, one_token_per_line=True)
  assert len(warnings) == 0
