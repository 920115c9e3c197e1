"""Tests for trainer.data.labels."""

import pytest

from trainer.data import labels
from trainer import schema
from trainer.data.formats.reader_common import Sentence


def _sentence(tags, source="train.txt:1"):
  return Sentence(tokens=tuple(f"w{i}" for i in range(len(tags))),
                  tags=tuple(tags), source=source)


@pytest.mark.parametrize("tag_lists, expected", [
    ([["I-PER", "O"], ["B-LOC", "B-PER"]], ["O", "B-LOC", "B-PER", "I-PER"]),
    ([["B-PER"]], ["O", "B-PER"]),  # 'O' is always present and first
    ([["O"]], ["O"]),
    ([["S-X", "E-X", "M-X", "B-X"]], ["O", "B-X", "E-X", "M-X", "S-X"]),
])
def test_build_label_list(tag_lists, expected):
  sentences = [_sentence(tags) for tags in tag_lists]
  assert labels.build_label_list([sentences]) == expected


def test_build_label_list_merges_lists_and_skips_unlabelled():
  unlabelled = Sentence(tokens=("a",), tags=None, source="raw.txt:1")
  assert labels.build_label_list(
      [[_sentence(["B-PER"])], [unlabelled, _sentence(["B-LOC"])]]) == [
          "O", "B-LOC", "B-PER"]


def test_build_label_list_needs_labelled_data():
  unlabelled = Sentence(tokens=("a",), tags=None, source="raw.txt:1")
  with pytest.raises(ValueError, match=r"none of the sentences has tags"):
    labels.build_label_list([[unlabelled]])


def test_labels_file_round_trip(tmp_path):
  path = str(tmp_path / schema.LABELS_FILENAME)
  labels.write_labels_file(["O", "B-PER", "I-PER"], path)
  with open(path, encoding="utf-8") as file:
    assert file.read() == "O\nB-PER\nI-PER\n"
  assert labels.read_labels_file(path) == ["O", "B-PER", "I-PER"]


def test_read_labels_file_ignores_blank_lines_keeps_order(tmp_path):
  path = tmp_path / "labels.txt"
  path.write_text("\nB-PER\r\n\n  O  \nI-PER", encoding="utf-8")
  assert labels.read_labels_file(str(path)) == ["B-PER", "O", "I-PER"]


@pytest.mark.parametrize("content, message", [
    ("O\nB-PER\n\nB-PER\n", r"labels\.txt:4: duplicate label 'B-PER' \(first "
     r"at .*labels\.txt:2\)"),
    ("B-PER\nI-PER\n", r"labels\.txt: the labels \['B-PER', 'I-PER'\] lack "
     r"the outside tag 'O'"),
    ("O\nPER\n", r"labels\.txt:2: invalid tag 'PER'"),
    ("\n\n", r"labels\.txt: contains no labels"),
])
def test_read_labels_file_errors(tmp_path, content, message):
  path = tmp_path / "labels.txt"
  path.write_text(content, encoding="utf-8")
  with pytest.raises(ValueError, match=message):
    labels.read_labels_file(str(path))


@pytest.mark.parametrize("label_list, message", [
    (["O", "O"], r"labels\[1\]: duplicate label 'O'"),
    (["B-X"], r"lack the outside tag 'O'"),
])
def test_write_labels_file_errors(tmp_path, label_list, message):
  with pytest.raises(ValueError, match=message):
    labels.write_labels_file(label_list, str(tmp_path / "labels.txt"))


def test_check_labels_known_accepts_known_and_unlabelled():
  sentences = [_sentence(["O", "B-PER"]),
               Sentence(tokens=("a",), tags=None, source="raw.txt:1")]
  assert labels.check_labels_known(sentences, ["O", "B-PER"]) is None


def test_check_labels_known_names_tag_source_and_fix():
  sentences = [_sentence(["O"]), _sentence(["O", "B-MISC"], "dev.txt:12")]
  with pytest.raises(ValueError, match=(
      r"^dev\.txt:12: tag 'B-MISC' of token 1 \('w1'\) is not a known label; "
      r"known: O, B-PER\. Add it to --labels_file or to the training data\.")):
    labels.check_labels_known(sentences, ["O", "B-PER"])


def test_check_labels_known_custom_hint():
  with pytest.raises(ValueError, match=r"Add it to labels\.txt"):
    labels.check_labels_known([_sentence(["B-X"])], ["O"],
                              labels_file_hint="labels.txt")


def test_label_map():
  assert labels.label_map(["O", "B-PER", "I-PER"]) == {
      "O": 0, "B-PER": 1, "I-PER": 2}
