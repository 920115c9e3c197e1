"""Finds the train, dev and test files of a data folder by their names.

Corpora ship under many names. Three rules, tried in order for each split:

1. A conventional exact name (`SPLIT_FILE_NAMES`), first existing wins:
   `train.txt`, `example.dev`, `source.txt` (with its `target.txt`),
   `test.char.bmes`, ...
2. `<name>.<split word>`: `corpus_conll.train`, `weiboNER_2nd_conll.dev`.
3. A tag-scheme extension (`.bio`, `.bioes`, `.iob`, ...) with the split
   word as one part of the name: `msra_train.bio`, `dev.char.bmes`.

Rules 2 and 3 must match one file: two candidates are an error, never a
guess. When a split the run needs is missing, the error lists the folder.

Pure Python: never imports TensorFlow.
"""

import os
import re
from typing import Optional, Sequence

from trainer.data.formats import parallel_reader

# Rule 1: conventional file names per split; the first existing one wins.
SPLIT_FILE_NAMES = {
    "train": ("train.txt", "train.conll", "train.tsv", "train.jsonl",
              "train.json", "example.train", "train.char.bmes",
              parallel_reader.PARALLEL_SOURCE_NAME, "train.src"),
    "dev": ("dev.txt", "dev.conll", "dev.tsv", "dev.jsonl", "dev.json",
            "valid.txt", "validation.txt", "example.dev", "eval.txt",
            "dev.char.bmes"),
    "test": ("test.txt", "test.conll", "test.tsv", "test.jsonl", "test.json",
             "example.test", "test.char.bmes"),
}

# Rules 2 and 3: the words that name each split.
SPLIT_WORDS = {
    "train": ("train",),
    "dev": ("dev", "valid", "validation", "eval"),
    "test": ("test",),
}

# Rule 3: extensions that name a tag scheme.
TAG_SCHEME_EXTENSIONS = (".bio", ".bioes", ".iobes", ".iob", ".iob2",
                         ".bmes")

# The flag (and `NerConfig` field) that names each split's file explicitly;
# messages write it as `--<flag>`.
SPLIT_FLAGS = {"train": "train_file", "dev": "eval_file",
               "test": "predict_file"}

# How many folder entries an error message lists.
_LISTED_ENTRIES = 20


def _exact_match(data_dir: str, split: str) -> Optional[str]:
  """Rule 1; parallel tokens files count only with their tags partner."""
  for name in SPLIT_FILE_NAMES[split]:
    candidate = os.path.join(data_dir, name)
    partner = parallel_reader.parallel_partner(candidate)
    if os.path.isfile(candidate) and (partner is None or
                                      os.path.isfile(partner)):
      return candidate
  return None


def _name_parts(name: str) -> list[str]:
  """Lower-cased alphanumeric parts: 'MSRA_train-v2.bio' -> [msra, train, v2,
  bio]."""
  return [part for part in re.split(r"[^0-9a-z]+", name.lower()) if part]


def _pattern_split(name: str) -> Optional[str]:
  """The split a file name names by rule 2 or 3, or None.

  Example: 'corpus_conll.train' -> 'train', 'msra_dev.bio' -> 'dev',
  'train_dev.bio' -> None (names two splits), 'notes.txt' -> None.
  """
  lower = name.lower()
  for split, words in SPLIT_WORDS.items():
    if any(lower.endswith(f".{word}") for word in words):
      return split
  if not lower.endswith(TAG_SCHEME_EXTENSIONS):
    return None
  parts = set(_name_parts(name))
  named = [split for split, words in SPLIT_WORDS.items()
           if parts.intersection(words)]
  return named[0] if len(named) == 1 else None


def _pattern_matches(data_dir: str) -> dict[str, list[str]]:
  """Files of `data_dir` matched by rules 2 and 3, per split, sorted."""
  matches = {split: [] for split in SPLIT_FILE_NAMES}
  for name in sorted(os.listdir(data_dir)):
    path = os.path.join(data_dir, name)
    split = _pattern_split(name)
    if split is not None and os.path.isfile(path):
      matches[split].append(path)
  return matches


def describe_folder(data_dir: str) -> str:
  """Lists a folder's entries for an error message, folders marked '/'.

  Example: 'README.md, data.csv, raw/' or 'nothing'.
  """
  names = sorted(os.listdir(data_dir))
  shown = [name + ("/" if os.path.isdir(os.path.join(data_dir, name)) else "")
           for name in names[:_LISTED_ENTRIES]]
  if not shown:
    return "nothing"
  more = len(names) - len(shown)
  return ", ".join(shown) + (f" and {more} more" if more else "")


def missing_split_message(data_dir: str, split: str) -> str:
  """Says that `split` has no file in `data_dir`, what it holds, what would do.

  Example: "No train file in 'd': it holds README.md, a.csv. Recognised
  names: train.txt, ..., <name>.train, *train*.bio/.bioes/...; or pass
  --train_file."
  """
  words = SPLIT_WORDS[split]
  return (
      f"No {split} file in {data_dir!r}: it holds {describe_folder(data_dir)}."
      f" Recognised names: {', '.join(SPLIT_FILE_NAMES[split])}, "
      f"{', '.join(f'<name>.{word}' for word in words)}, or a name with "
      f"{'/'.join(words)} as one part and an extension "
      f"{'/'.join(TAG_SCHEME_EXTENSIONS)}; or pass --{SPLIT_FLAGS[split]}.")


def find_split_files(data_dir: str, required_splits: Sequence[str] = ()
                    ) -> dict[str, Optional[str]]:
  """Finds the train, dev and test files of `data_dir` by name.

  Example: a dir with train.txt, source.txt, target.txt and example.dev ->
      {'train': 'dir/train.txt', 'dev': 'dir/example.dev', 'test': None}
    a dir with corpus.train, corpus.dev, corpus.test ->
      {'train': 'dir/corpus.train', 'dev': 'dir/corpus.dev',
       'test': 'dir/corpus.test'}

  Args:
    data_dir: the folder.
    required_splits: splits that must be found, e.g. ('train',).

  Raises:
    ValueError: if `data_dir` is not a directory, rules 2-3 match several
      files for one split, or a required split has no file (the message lists
      what the folder holds).
  """
  if not os.path.isdir(data_dir):
    raise ValueError(f"data_dir {data_dir!r} is not a directory.")
  patterns = _pattern_matches(data_dir)
  found = {}
  for split in SPLIT_FILE_NAMES:
    found[split] = _exact_match(data_dir, split)
    if found[split] is None and len(patterns[split]) > 1:
      raise ValueError(
          f"Several {split} files in {data_dir!r}: "
          f"{', '.join(os.path.basename(p) for p in patterns[split])}; pass "
          f"--{SPLIT_FLAGS[split]} to choose one.")
    if found[split] is None and patterns[split]:
      found[split] = patterns[split][0]
  for split in required_splits:
    if found[split] is None:
      raise ValueError(missing_split_message(data_dir, split))
  return found
