"""Turns NER files into `Sentence`s: format detection and dispatch.

Formats (`FORMATS`), one reader module each:
  conll     `conll_reader`: one token per line, token = first column, tag =
            last column, blank lines between sentences, `-DOCSTART-` skipped.
  parallel  `parallel_reader`: a tokens file and a tags file, one sentence per
            line each (e.g. MSRA `source.txt` / `target.txt`).
  jsonl     `jsonl_reader`: CLUENER2020, one JSON object per line,
            character-level entities.
  text      `text_reader`: one unlabelled sentence per line (for prediction).
  auto      pick one of the above with `detect_format`.

Shared pieces live in `reader_common` (Sentence, line reading), file-wide
checks in `data_checks`, the warnings collector in `data_warnings`, raw-text
splitting in `word_splitting` and split-file discovery in `data_files`; this
module imports them from there.

Every reader reports bad input as a ValueError naming file:line, the offending
text and what was allowed. Sentences with zero tokens never appear; the blank
or empty lines they would come from are skipped but still counted, so every
`source` carries the true line number. Usable data that a reader had to change
(a dropped overlapping span) or doubts (mixed tag schemes) is recorded in a
`DataWarnings` collector; nothing is dropped silently.

Pure Python: never imports TensorFlow.
"""

import os
from typing import Optional

from trainer.data.formats import conll_reader
from trainer.data.formats import jsonl_reader
from trainer.data.formats import parallel_reader
from trainer.data.formats import reader_common
from trainer.data.formats import text_reader
from trainer.data.data_warnings import DataWarnings
from trainer.data.formats.jsonl_reader import DEFAULT_OVERLAPPING_SPANS
from trainer.data.formats.jsonl_reader import JSONL_EXTENSIONS
from trainer.data.formats.parallel_reader import parallel_partner
from trainer.data.formats.reader_common import DOCSTART
from trainer.data.formats.reader_common import Sentence
from trainer.data.word_splitting import WordSplitter

FORMATS = ("auto", "conll", "parallel", "jsonl", "text")

# How many non-blank lines `detect_format` looks at.
_DETECT_LINES = 200


def detect_format(path: str) -> str:
  """Guesses the data format of `path`.

  Rules, first match wins: `.jsonl`/`.json` -> 'jsonl'; a tokens file whose
  `parallel_partner` exists -> 'parallel'; if most of the first 200
  non-blank, non-`-DOCSTART-` lines have at least two columns and a last
  column that is a valid tag -> 'conll'; else 'text'. Majority, not all, so
  that one bad line in a CoNLL file is reported by the CoNLL reader with its
  line number instead of turning the whole file into text.

  Example: 'train.txt' holding 'EU B-ORG\\nrejects O\\n' -> 'conll'
  """
  if path.lower().endswith(JSONL_EXTENSIONS):
    return "jsonl"
  partner = parallel_partner(path)
  if partner is not None and os.path.exists(partner):
    return "parallel"
  looked_at = tag_like = 0
  for line in reader_common.read_lines(path):
    columns = line.split()
    if not columns or columns[0] == DOCSTART:
      continue
    looked_at += 1
    if len(columns) >= 2 and reader_common.looks_like_tag(columns[-1]):
      tag_like += 1
    if looked_at >= _DETECT_LINES:
      break
  if looked_at and tag_like * 2 > looked_at:
    return "conll"
  return "text"


def read_sentences(path: str, data_format: str = "auto",
                   word_splitter: Optional[WordSplitter] = None,
                   tags_path: Optional[str] = None, *,
                   overlapping_spans: str = DEFAULT_OVERLAPPING_SPANS,
                   strip_token_suffix_digit: bool = False,
                   warnings: Optional[DataWarnings] = None) -> list[Sentence]:
  """Reads `path` in `data_format` (one of `FORMATS`).

  Example:
    warnings = DataWarnings()
    sentences = read_sentences('train.json', warnings=warnings)
    for line in warnings.summary_lines(): log it
    write warnings.format_lines() to <output_dir>/data_warnings.txt

  Args:
    path: the data file (the tokens file for 'parallel').
    data_format: 'auto' picks with `detect_format` ('parallel' when
      `tags_path` is given).
    word_splitter: for 'text' only: line -> words; default
      `default_word_splitter`.
    tags_path: for 'parallel' only: the tags file, if not found by convention.
    overlapping_spans: for 'jsonl' only: 'error', 'keep_longest' or
      'keep_first' (see `jsonl_reader.resolve_overlaps`).
    strip_token_suffix_digit: for 'conll' and 'parallel': remove the
      word-position digit of tokens like '中0'; without it, a file whose CJK
      tokens mostly carry one is an error.
    warnings: collects dropped spans and mixed-tag-scheme notes; None logs
      a summary with Python's logging instead.

  Returns:
    The sentences in file order; never empty, no sentence without tokens.
    Tags are None when the file holds no labels (text to predict).

  Raises:
    ValueError: for an unknown format, a missing file, or bad content.
  """
  if data_format not in FORMATS:
    raise ValueError(f"Unknown data format {data_format!r}; allowed: "
                     f"{', '.join(FORMATS)}.")
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such file.")
  if data_format == "auto":
    data_format = "parallel" if tags_path else detect_format(path)
  if data_format == "conll":
    return conll_reader.read_conll(path, strip_token_suffix_digit, warnings)
  if data_format == "parallel":
    return parallel_reader.read_parallel(path, tags_path,
                                         strip_token_suffix_digit, warnings)
  if data_format == "jsonl":
    return jsonl_reader.read_jsonl(path, overlapping_spans, warnings)
  return text_reader.read_text(path, word_splitter)
