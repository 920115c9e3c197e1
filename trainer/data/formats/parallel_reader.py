"""Reader for the parallel format: a tokens file and a line-aligned tags file.

MSRA ships `source.txt` (characters) and `target.txt` (tags), one sentence per
line each; other corpora use `X.src`/`X.tgt` or `X.tokens`/`X.tags`.

Pure Python: never imports TensorFlow.
"""

import os
from typing import Optional

from trainer.data import data_checks
from trainer.data import data_warnings
from trainer.data.formats import reader_common
from trainer import schema
from trainer.data import tag_schemes
from trainer.data.formats.reader_common import DOCSTART
from trainer.data.formats.reader_common import Sentence

# (tokens-file suffix, tags-file suffix) pairs for the parallel format.
PARALLEL_SUFFIXES = ((".src", ".tgt"), (".tokens", ".tags"))
PARALLEL_SOURCE_NAME = "source.txt"
PARALLEL_TARGET_NAME = "target.txt"


def parallel_partner(path: str) -> Optional[str]:
  """Returns the conventional tags file for a tokens file, existing or not.

  Example:
    'data/source.txt' -> 'data/target.txt'
    'data/train.src'  -> 'data/train.tgt'
    'a.tokens'        -> 'a.tags'
    'train.txt'       -> None
  """
  directory, name = os.path.split(path)
  if name == PARALLEL_SOURCE_NAME:
    return os.path.join(directory, PARALLEL_TARGET_NAME)
  for tokens_suffix, tags_suffix in PARALLEL_SUFFIXES:
    if name.endswith(tokens_suffix):
      return path[:-len(tokens_suffix)] + tags_suffix
  return None


def _resolve_tags_path(path: str, tags_path: Optional[str]) -> str:
  if tags_path is not None:
    return tags_path
  tags_path = parallel_partner(path)
  if tags_path is None or not os.path.exists(tags_path):
    raise ValueError(
        f"{path}: no tags file for the parallel format; expected "
        f"{tags_path or 'a partner file'} (conventions: source.txt/"
        f"target.txt, X.src/X.tgt, X.tokens/X.tags) or pass tags_path.")
  return tags_path


def _line_pairs(path: str, tags_path: str
               ) -> list[tuple[int, list[str], list[str]]]:
  """(line number, tokens, tags) of every line pair that holds a sentence.

  Raises:
    ValueError: for unequal line or token counts, or an invalid tag.
  """
  token_lines = reader_common.read_lines(path)
  tag_lines = reader_common.read_lines(tags_path)
  if len(token_lines) != len(tag_lines):
    raise ValueError(
        f"{path} has {len(token_lines)} lines but {tags_path} has "
        f"{len(tag_lines)}; the parallel format needs one tag line per "
        f"sentence line.")
  pairs = []
  for number, (token_line, tag_line) in enumerate(
      zip(token_lines, tag_lines), start=1):
    tokens, tags = token_line.split(), tag_line.split()
    if tokens == [DOCSTART] and tags in ([DOCSTART], [schema.OUTSIDE_TAG]):
      continue
    if len(tokens) != len(tags):
      raise ValueError(
          f"{path}:{number} has {len(tokens)} tokens but {tags_path}:{number} "
          f"has {len(tags)} tags; they must be equal.")
    if tokens:
      tag_schemes.validate_tags(tags, source=f"{tags_path}:{number}")
      pairs.append((number, tokens, tags))
  return pairs


def read_parallel(path: str, tags_path: Optional[str] = None,
                  strip_token_suffix_digit: bool = False,
                  warnings: Optional[data_warnings.DataWarnings] = None
                 ) -> list[Sentence]:
  """Reads a tokens file and its line-aligned tags file.

  Line N of `tags_path` holds the tags of line N of `path`, both split on
  whitespace (trailing spaces are fine). A line pair whose tokens are exactly
  `-DOCSTART-` (tags `-DOCSTART-` or `O`) is skipped, as is a pair where both
  lines are empty; skipped lines still count for line numbers.

  Example:
    source.txt '-DOCSTART-\\n中 国 \\n', target.txt '-DOCSTART-\\nB-LOC I-LOC\\n'
        -> [Sentence(tokens=('中', '国'), tags=('B-LOC', 'I-LOC'),
                     source='source.txt:2')]

  Args:
    path: the tokens file.
    tags_path: the tags file; default `parallel_partner(path)`.
    strip_token_suffix_digit: remove a word-position digit after a CJK
      character ('中0' -> '中'); without it such a layout is an error.
    warnings: collects a mixed-tag-scheme warning; None logs it instead.

  Raises:
    ValueError: if no tags file is given or found, the files have different
      line counts, a line pair has different token counts, a tag is invalid,
      or tokens carry word-position digits without
      `strip_token_suffix_digit`; messages name the file and the line.
  """
  tags_path = _resolve_tags_path(path, tags_path)
  pairs = _line_pairs(path, tags_path)
  data_checks.check_token_suffix_digits(
      [(number, tokens) for number, tokens, _ in pairs], path,
      strip_token_suffix_digit)
  sentences = []
  for number, tokens, tags in pairs:
    if strip_token_suffix_digit:
      tokens = [data_checks.strip_suffix_digit(token) for token in tokens]
    sentences.append(Sentence(tokens=tuple(tokens), tags=tuple(tags),
                              source=f"{path}:{number}"))
  reader_common.check_not_empty(sentences, path)
  with data_warnings.collecting(warnings) as collector:
    data_checks.check_mixed_tag_schemes(sentences, path, collector,
                                        one_token_per_line=False)
  return sentences
