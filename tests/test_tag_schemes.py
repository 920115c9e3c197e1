"""Tests for trainer.data.tag_schemes."""

import subprocess
import sys

import pytest

from trainer.data import tag_schemes


@pytest.mark.parametrize("name, expected", [
    ("IOB1", tag_schemes.IOB1),
    ("IOB2", tag_schemes.IOB2),
    ("BIO", tag_schemes.IOB2),
    ("bio", tag_schemes.IOB2),
    ("BIOES", tag_schemes.BIOES),
    ("IOBES", tag_schemes.BIOES),
    ("BMES", tag_schemes.BMES),
])
def test_get_scheme(name, expected):
  assert tag_schemes.get_scheme(name) is expected


def test_get_scheme_unknown_lists_allowed():
  with pytest.raises(ValueError, match=r"'XYZ'.*IOB1, IOB2, BIO, BIOES"):
    tag_schemes.get_scheme("XYZ")


def test_scheme_prefixes_are_data():
  assert set(tag_schemes.BIOES.prefixes) == {"B", "I", "O", "E", "S"}
  assert set(tag_schemes.BMES.prefixes) == {"B", "M", "E", "S", "O"}
  assert tag_schemes.BMES.inside_prefixes == ("M",)
  # Transition rules too: which prefixes continue, open, must be closed.
  assert tag_schemes.IOB1.continuing_prefixes == ("B",)
  assert tag_schemes.IOB2.continuing_prefixes == ("I",)
  assert tag_schemes.BMES.continuing_prefixes == ("M", "E")
  assert tag_schemes.BMES.open_prefixes == ("B", "M")
  assert tag_schemes.BIOES.explicit_end and not tag_schemes.IOB2.explicit_end
  with pytest.raises(AttributeError):
    tag_schemes.IOB2.name = "changed"  # frozen


@pytest.mark.parametrize("tag, expected", [
    ("B-PER", ("B", "PER")),
    ("I-LOC", ("I", "LOC")),
    ("O", ("O", None)),
    ("B-GPE-X", ("B", "GPE-X")),
    ("PER", ("PER", None)),
    ("B-", ("B", "")),
    ("B_PER", ("B_PER", None)),
])
def test_split_tag(tag, expected):
  assert tag_schemes.split_tag(tag) == expected


@pytest.mark.parametrize("tags, scheme", [
    (["O", "B-PER", "I-PER"], None),
    (["B-X", "M-X", "E-X", "S-Y", "O"], None),
    (["B-X", "M-X", "E-X", "S-Y", "O"], tag_schemes.BMES),
    (["B-X", "I-X", "E-X", "S-Y", "O"], tag_schemes.BIOES),
    (["I-X", "B-X"], tag_schemes.IOB1),
    (["B-GPE-X"], tag_schemes.IOB2),
    ([], None),
])
def test_validate_tags_accepts(tags, scheme):
  assert tag_schemes.validate_tags(tags, scheme, source="f.txt:3") is None


@pytest.mark.parametrize("tags, scheme, message", [
    (["O", "X-PER"], None, r"f\.txt:3 token 1: invalid tag 'X-PER' \(unknown "
     r"prefix 'X'\).*B, I, M, E, S"),
    (["PER"], None, r"f\.txt:3 token 0: invalid tag 'PER'"),
    (["B-"], None, r"'B-' \(prefix 'B' needs an entity type"),
    (["B"], None, r"'B' \(prefix 'B' needs an entity type"),
    (["O-PER"], None, r"'O-PER' \(the outside tag must be exactly 'O'\)"),
    (["o"], None, r"unknown prefix 'o'"),
    ([""], None, r"non-empty"),
    (["M-LOC"], tag_schemes.BIOES, r"'M-LOC'.*B, I, E, S \(BIOES\)"),
    (["E-LOC"], tag_schemes.IOB2, r"'E-LOC'.*B, I \(IOB2\)"),
])
def test_validate_tags_rejects(tags, scheme, message):
  with pytest.raises(ValueError, match=message):
    tag_schemes.validate_tags(tags, scheme, source="f.txt:3")


def test_validate_tag_names_source():
  with pytest.raises(ValueError, match=r"^a\.conll:7: invalid tag 'X-PER'"):
    tag_schemes.validate_tag("X-PER", source="a.conll:7")


@pytest.mark.parametrize("sequences, expected", [
    ([["B-PER", "I-PER", "O"], ["O", "B-LOC"]], "IOB2"),
    ([["O", "O"]], "IOB2"),
    ([], "IOB2"),
    ([["I-PER", "I-PER", "O"]], "IOB1"),
    ([["B-PER", "I-PER", "I-LOC"]], "IOB1"),
    ([["O", "I-PER", "B-PER"]], "IOB1"),
    ([["B-PER", "E-PER", "O"]], "BIOES"),
    ([["S-PER"]], "BIOES"),
    ([["B-PER", "M-PER", "E-PER"], ["S-LOC"]], "BMES"),
])
def test_detect_scheme(sequences, expected):
  assert tag_schemes.detect_scheme(sequences) == expected


@pytest.mark.parametrize("tags, expected", [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
    ([], []),
    (["O", "O"], []),
    # IOB1 and invalid IOB2: an I- after O or another type starts a chunk.
    (["O", "I-PER", "I-PER"], [("PER", 1, 3)]),
    (["I-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),
    (["I-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    # BIOES.
    (["B-LOC", "I-LOC", "E-LOC", "S-PER", "O"], [("LOC", 0, 3), ("PER", 3, 4)]),
    (["S-PER", "S-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    # BMES: M- is an inside tag.
    (["B-LOC", "M-LOC", "M-LOC", "E-LOC"], [("LOC", 0, 4)]),
    (["B-LOC", "E-LOC", "S-ORG"], [("LOC", 0, 2), ("ORG", 2, 3)]),
    # Types containing '-'.
    (["B-GPE-X", "I-GPE-X"], [("GPE-X", 0, 2)]),
])
def test_get_entities(tags, expected):
  assert tag_schemes.get_entities(tags) == expected


def test_get_entities_accepts_tuples():
  assert tag_schemes.get_entities(("B-PER", "I-PER")) == [("PER", 0, 2)]


@pytest.mark.parametrize("labels, scheme, expected", [
    (["O", "B-PER", "I-PER"], None, tag_schemes.IOB2),
    (["O"], None, tag_schemes.IOB2),
    ([], None, tag_schemes.IOB2),
    # A label list has no order: IOB1 is only known when named.
    (["O", "I-PER", "I-LOC"], None, tag_schemes.IOB2),
    (["O", "I-PER", "B-PER"], "IOB1", tag_schemes.IOB1),
    (["O", "B-PER", "E-PER"], None, tag_schemes.BIOES),
    (["O", "S-PER"], None, tag_schemes.BIOES),
    (["B-PER", "M-PER", "E-PER", "S-PER"], None, tag_schemes.BMES),
    (["O", "B-PER"], "bioes", tag_schemes.BIOES),
])
def test_scheme_of_labels(labels, scheme, expected):
  assert tag_schemes.scheme_of_labels(labels, scheme) is expected


def _table(rows):
  return [[cell == "1" for cell in row.split()] for row in rows]


def test_iob2_allowed_transitions_exact_table():
  rules = tag_schemes.allowed_transitions(
      ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"])
  #                           next: O B-LOC B-PER I-LOC I-PER
  assert rules.allowed == _table(["1 1 1 0 0",   # O
                                  "1 1 1 1 0",   # B-LOC
                                  "1 1 1 0 1",   # B-PER
                                  "1 1 1 1 0",   # I-LOC
                                  "1 1 1 0 1"])  # I-PER
  assert rules.start == [True, True, True, False, False]
  assert rules.end == [True] * 5


def test_bioes_allowed_transitions_exact_table():
  rules = tag_schemes.allowed_transitions(
      ["O", "B-X", "I-X", "E-X", "S-X", "B-Y", "E-Y"])
  #                           next: O B-X I-X E-X S-X B-Y E-Y
  assert rules.allowed == _table(["1 1 0 0 1 1 0",   # O
                                  "0 0 1 1 0 0 0",   # B-X
                                  "0 0 1 1 0 0 0",   # I-X
                                  "1 1 0 0 1 1 0",   # E-X
                                  "1 1 0 0 1 1 0",   # S-X
                                  "0 0 0 0 0 0 1",   # B-Y
                                  "1 1 0 0 1 1 0"])  # E-Y
  assert rules.start == _table(["1 1 0 0 1 1 0"])[0]
  assert rules.end == _table(["1 0 0 1 1 0 1"])[0]


def test_bmes_and_iob1_allowed_transitions_exact_tables():
  bmes = tag_schemes.allowed_transitions(["O", "B-X", "M-X", "E-X", "S-X"])
  assert bmes.allowed == _table(["1 1 0 0 1",
                                 "0 0 1 1 0",
                                 "0 0 1 1 0",
                                 "1 1 0 0 1",
                                 "1 1 0 0 1"])
  assert bmes.start == _table(["1 1 0 0 1"])[0]
  assert bmes.end == _table(["1 0 0 1 1"])[0]

  iob1 = tag_schemes.allowed_transitions(["O", "I-X", "B-X", "I-Y"],
                                         scheme="IOB1")
  assert iob1.allowed == _table(["1 1 0 1",
                                 "1 1 1 1",
                                 "1 1 1 1",
                                 "1 1 0 1"])
  assert iob1.start == _table(["1 1 0 1"])[0]
  assert iob1.end == [True] * 4


@pytest.mark.parametrize("labels, scheme, message", [
    (["O", "X-LOC"], None, r"label 1: invalid tag 'X-LOC' \(unknown prefix "
     r"'X'\)"),
    (["O", "B-LOC", "E-LOC"], "BIO",
     r"label 2: invalid tag 'E-LOC'.*\(IOB2\)"),
    (["O", "B-LOC"], "XYZ", r"Unknown tag scheme 'XYZ'"),
])
def test_allowed_transitions_rejects_bad_labels(labels, scheme, message):
  with pytest.raises(ValueError, match=message):
    tag_schemes.allowed_transitions(labels, scheme)


def test_tag_schemes_never_imports_tensorflow():
  code = ("import sys; from trainer.data import tag_schemes; "
          "tag_schemes.allowed_transitions(['O', 'B-X', 'I-X']); "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True)
