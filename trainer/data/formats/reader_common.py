"""What every NER file reader shares: the `Sentence` record and line reading.

`read_lines` is the only place that opens a data file: it decodes UTF-8, drops
a BOM, accepts CRLF and LF, and refuses undecodable bytes and NUL bytes with
file:line, so every reader gives the same errors for the same bad bytes.

Pure Python: never imports TensorFlow.
"""

import codecs
import dataclasses
from typing import Optional, Union

from trainer.data import tag_schemes

# A CoNLL document marker; the lines holding it are skipped.
DOCSTART = "-DOCSTART-"

# A sentence's document: an int (CoNLL: count of -DOCSTART- lines before it),
# a JSON-lines `doc_id` (str or int), or None (the file marks no documents).
DocumentId = Optional[Union[int, str]]


@dataclasses.dataclass(frozen=True)
class Sentence:
  """One sentence of tokens, with tags when the data is labelled.

  Attributes:
    tokens: the words (or characters, for Chinese data), at least one.
    tags: one tag per token, or None for unlabelled data (text to predict).
    source: "path:line" of the sentence's first line.
    text: the original text (jsonl and text formats), else None.
    char_spans: per token (start, end_exclusive) offsets into `text`, or None
      when `text` is None. `text[start:end] == token` for every token.
    document_id: the sentence's document, where the file marks documents
      (CoNLL `-DOCSTART-`, a JSON-lines `doc_id`), else None. Only document
      context (`trainer.features.context`) reads it: consecutive sentences with
      the same id are one document; None everywhere means file order.
  """
  tokens: tuple[str, ...]
  tags: Optional[tuple[str, ...]]
  source: str
  text: Optional[str] = None
  char_spans: Optional[tuple[tuple[int, int], ...]] = None
  document_id: DocumentId = None


def _decode_utf8(data: bytes, path: str) -> str:
  """Decodes file bytes, dropping a BOM; errors name file, line and offset."""
  # The BOM is stripped by hand, not with "utf-8-sig", so that error offsets
  # count from the start of the file.
  bom_length = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
  try:
    text = data[bom_length:].decode("utf-8")
  except UnicodeDecodeError as error:
    offset = bom_length + error.start
    line_number = data.count(b"\n", 0, offset) + 1
    raise ValueError(
        f"{path}:{line_number}: not valid UTF-8 at byte offset {offset} "
        f"(byte {data[offset:offset + 1]!r}: {error.reason}); "
        f"only UTF-8 input is supported.") from None
  nul_offset = data.find(b"\x00")
  if nul_offset >= 0:
    line_number = data.count(b"\n", 0, nul_offset) + 1
    raise ValueError(
        f"{path}:{line_number}: NUL byte (\\x00) at byte offset {nul_offset}; "
        f"text data never holds one (a UTF-16 file or a binary file?). Only "
        f"UTF-8 text is supported.")
  return text


def read_lines(path: str) -> list[str]:
  """Reads a UTF-8 file as lines without line endings.

  A leading BOM is dropped, CRLF and LF both end a line, and a missing final
  newline is fine. Only '\\n' splits lines: `str.splitlines` would also split
  on characters such as U+2028 that can occur inside tokens.

  Example: b'\\xef\\xbb\\xbfa O\\r\\n\\r\\nb O' -> ['a O', '', 'b O']

  Raises:
    ValueError: if the file is not valid UTF-8 or holds a NUL byte (names
      file, line and byte offset).
  """
  with open(path, "rb") as file:
    data = file.read()
  lines = _decode_utf8(data, path).split("\n")
  if lines and lines[-1] == "":
    lines.pop()  # the final newline ends the last line, it starts no new one
  return [line[:-1] if line.endswith("\r") else line for line in lines]


def check_not_empty(sentences: list[Sentence], path: str) -> list[Sentence]:
  """Returns `sentences`, or raises if a file gave none."""
  if not sentences:
    raise ValueError(f"{path}: contains no sentences (every line is blank or "
                     f"a {DOCSTART} marker).")
  return sentences


def looks_like_tag(text: str) -> bool:
  """True if `text` is a valid tag of some scheme ('O', 'B-PER', 'M-LOC')."""
  try:
    tag_schemes.validate_tag(text)
  except ValueError:
    return False
  return True
