"""Reader for the CoNLL column format: one token per line, tag last.

Pure Python: never imports TensorFlow.
"""

from typing import Optional

from trainer.data import data_checks
from trainer.data import data_warnings
from trainer.data.formats import reader_common
from trainer.data import tag_schemes
from trainer.data.formats.reader_common import DOCSTART
from trainer.data.formats.reader_common import Sentence


def _token_lines(lines: list[str]) -> list[tuple[int, list[str]]]:
  """(line number, columns) of every line that holds a token."""
  return [(number, line.split())
          for number, line in enumerate(lines, start=1)
          if line.strip() and line.split()[0] != DOCSTART]


def _marks_documents(lines: list[str]) -> bool:
  """True if any line is a `-DOCSTART-` marker."""
  return any(line.split()[:1] == [DOCSTART] for line in lines)


def _sentences(lines: list[str], path: str, labelled: bool,
               strip_token_suffix_digit: bool) -> list[Sentence]:
  """Groups token lines into sentences, validating tags of labelled files.

  Each sentence's `document_id` counts the `-DOCSTART-` lines before it (0
  before the first); None for every sentence of a file without one.
  """
  sentences = []
  tokens, tags, first_line = [], [], None
  document = 0 if _marks_documents(lines) else None

  def flush():
    if tokens:
      sentences.append(Sentence(tokens=tuple(tokens),
                                tags=tuple(tags) if labelled else None,
                                source=f"{path}:{first_line}",
                                document_id=document))
    tokens.clear()
    tags.clear()

  for number, line in enumerate(lines, start=1):
    columns = line.split()
    if not columns or columns[0] == DOCSTART:
      flush()
      if columns and document is not None:
        document += 1
      continue
    if labelled:
      if len(columns) < 2:
        raise ValueError(
            f"{path}:{number}: line {line!r} has one column but this CoNLL "
            f"file is labelled; expected 'TOKEN [OTHER COLUMNS] TAG'.")
      tag_schemes.validate_tag(columns[-1], source=f"{path}:{number}")
      tags.append(columns[-1])
    if not tokens:
      first_line = number
    token = columns[0]
    if strip_token_suffix_digit:
      token = data_checks.strip_suffix_digit(token)
    tokens.append(token)
  flush()
  return sentences


def read_conll(path: str, strip_token_suffix_digit: bool = False,
               warnings: Optional[data_warnings.DataWarnings] = None
              ) -> list[Sentence]:
  """Reads the CoNLL column format.

  The token is the first column and the tag the last, split on any whitespace
  (so `TOKEN POS CHUNK NER` and the Chinese `字 TAG` both work). A line holding
  `-DOCSTART-` ends the current sentence and the current document and is
  skipped: `document_id` counts those lines before the sentence (None in a
  file that has none). If no line has a second column the file is read as
  unlabelled text to predict (tags None); otherwise every token line must
  have at least two columns.

  Example:
    'EU NNP B-NP B-ORG\\nrejects VBZ B-VP O\\n\\n' ->
        [Sentence(tokens=('EU', 'rejects'), tags=('B-ORG', 'O'),
                  source='path:1')]
    '-DOCSTART- O\\n\\nEU B-ORG\\n\\n-DOCSTART- O\\n\\nit O\\n' ->
        [Sentence(('EU',), ('B-ORG',), 'path:3', document_id=1),
         Sentence(('it',), ('O',), 'path:7', document_id=2)]
    With strip_token_suffix_digit: '中0 B-LOC\\n国1 I-LOC\\n' ->
        [Sentence(tokens=('中', '国'), tags=('B-LOC', 'I-LOC'), ...)]

  Args:
    path: the file.
    strip_token_suffix_digit: remove a word-position digit after a CJK
      character ('中0' -> '中'); without it such a layout is an error.
    warnings: collects a mixed-tag-scheme warning; None logs it instead.

  Raises:
    ValueError: for a one-column line in a labelled file, an invalid tag, a
      word-position suffix layout without `strip_token_suffix_digit`, or a
      file with no sentences, naming file:line.
  """
  lines = reader_common.read_lines(path)
  token_lines = _token_lines(lines)
  data_checks.check_token_suffix_digits(
      [(number, columns[:1]) for number, columns in token_lines], path,
      strip_token_suffix_digit)
  labelled = any(len(columns) >= 2 for _, columns in token_lines)
  sentences = reader_common.check_not_empty(
      _sentences(lines, path, labelled, strip_token_suffix_digit), path)
  with data_warnings.collecting(warnings) as collector:
    data_checks.check_mixed_tag_schemes(sentences, path, collector,
                                        one_token_per_line=True)
  return sentences
