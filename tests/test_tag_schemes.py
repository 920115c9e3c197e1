"""Tests for trainer.tag_schemes."""

import pytest

from trainer import tag_schemes


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
