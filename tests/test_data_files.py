"""Tests for trainer.data.data_files: split files found by name."""

import os

import pytest

from tests.reader_fixtures import write
from trainer.data import data_files
from trainer.data.sample_data import sample_data_dir


def _folder(tmp_path, *names):
  for name in names:
    write(tmp_path, name, "a O\n")
  return str(tmp_path)


def _found(tmp_path, *names):
  """find_split_files on a folder of `names`, as base names (or None)."""
  found = data_files.find_split_files(_folder(tmp_path, *names))
  return {split: path and os.path.basename(path)
          for split, path in found.items()}


def test_exact_names_first_existing_wins(tmp_path):
  assert _found(tmp_path, "train.txt", "train.jsonl", "valid.txt",
                "example.dev") == {"train": "train.txt", "dev": "valid.txt",
                                   "test": None}


def test_parallel_tokens_file_needs_its_partner(tmp_path):
  write(tmp_path, "source.txt", "a\n")
  assert data_files.find_split_files(str(tmp_path))["train"] is None
  write(tmp_path, "target.txt", "O\n")
  assert data_files.find_split_files(str(tmp_path))["train"] == str(
      tmp_path / "source.txt")


@pytest.mark.parametrize("names, expected", [
    # Lattice-LSTM style (Resume, Weibo, MSRA): BMES tags.
    (("train.char.bmes", "dev.char.bmes", "test.char.bmes"),
     ("train.char.bmes", "dev.char.bmes", "test.char.bmes")),
    # <name>.<split>
    (("corpus_conll.train", "corpus_conll.dev", "corpus_conll.test"),
     ("corpus_conll.train", "corpus_conll.dev", "corpus_conll.test")),
    (("weiboNER_2nd_conll.train", "weiboNER_2nd_conll.valid", "notes.md"),
     ("weiboNER_2nd_conll.train", "weiboNER_2nd_conll.valid", None)),
    # Tag-scheme extensions with the split word as one part of the name.
    (("msra_train.bio", "msra-dev.bioes", "Test.IOB"),
     ("msra_train.bio", "msra-dev.bioes", "Test.IOB")),
    # An exact name wins over a pattern.
    (("train.txt", "other.train", "x_test.bio", "test.txt"),
     ("train.txt", None, "test.txt")),
    # Names that only contain a split word do not count.
    (("trained.bio", "contest.bio", "train_dev.bio", "train.csv"),
     (None, None, None)),
])
def test_common_corpus_names(tmp_path, names, expected):
  assert _found(tmp_path, *names) == dict(zip(("train", "dev", "test"),
                                              expected))


def test_a_folder_named_like_a_split_is_not_a_file(tmp_path):
  os.makedirs(str(tmp_path / "corpus.train"))
  assert _found(tmp_path)["train"] is None


def test_split_flags_name_the_config_fields():
  # The one table of split -> flag; run_inputs reads the config through it.
  assert data_files.SPLIT_FLAGS == {"train": "train_file", "dev": "eval_file",
                                    "test": "predict_file"}


def test_two_pattern_matches_are_an_error(tmp_path):
  with pytest.raises(ValueError, match=r"Several train files in .*: a\.train, "
                     r"b_train\.bio; pass --train_file to choose one\."):
    _found(tmp_path, "a.train", "b_train.bio")


def test_required_split_missing_lists_the_folder(tmp_path):
  folder = _folder(tmp_path, "README.md", "corpus.csv")
  os.makedirs(os.path.join(folder, "raw"))
  with pytest.raises(ValueError) as error:
    data_files.find_split_files(folder, required_splits=("train",))
  message = str(error.value)
  assert message.startswith(
      f"No train file in {folder!r}: it holds README.md, corpus.csv, raw/. "
      f"Recognised names: train.txt, train.conll, ")
  assert message.endswith(
      "<name>.train, or a name with train as one part and an extension "
      ".bio/.bioes/.iobes/.iob/.iob2/.bmes; or pass --train_file.")
  # Not required: a missing split is None.
  assert data_files.find_split_files(folder)["train"] is None


def test_describe_folder_shortens_long_listings(tmp_path):
  for index in range(25):
    write(tmp_path, f"f{index:02d}", "")
  described = data_files.describe_folder(str(tmp_path))
  assert described.startswith("f00, f01, ")
  assert described.endswith("f19 and 5 more")
  empty = tmp_path / "empty"
  empty.mkdir()
  assert data_files.describe_folder(str(empty)) == "nothing"


def test_sample_data_keeps_its_files():
  found = data_files.find_split_files(sample_data_dir())
  assert {split: os.path.basename(path) for split, path in found.items()} == {
      "train": "train.txt", "dev": "dev.txt", "test": "test.txt"}


def test_missing_dir(tmp_path):
  with pytest.raises(ValueError, match=r"nope' is not a directory"):
    data_files.find_split_files(str(tmp_path / "nope"))
