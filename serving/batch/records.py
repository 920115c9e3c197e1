"""What the batch tagger reads and writes: source records and dead letters.

Pure Python (no Beam, no TensorFlow), so every rule here is tested without
either. `python -m serving.batch` (`serving.batch.pipeline`) reads each
matching file with `read_file`, tags the `SourceRecord`s and writes
`output_record`s; whatever cannot be read or tagged becomes a `DeadLetter`
with its file, line and reason. Nothing is dropped: every line of a text or
JSON-lines file is a record or a dead letter, except blank lines, which
`read_file` counts (`FileReport.blank_lines`) and which hold nothing to tag.

Formats (`FORMATS`):

    text   one text per line               {"text": line}
    jsonl  one JSON object per line; its   the object, every field kept
           `text` field is tagged
    conll  one token per line (first       {"tokens": [...], "text": "EU rejects"}
           column; other columns ignored),  tagged as the given tokens
           sentences end at a blank line or
           -DOCSTART-

Example (jsonl, file "in.jsonl", line 3 holds {"id": 7, "text": "张三在北京"}):

    SourceRecord(file="in.jsonl", line=3, fields={"id": 7, "text": "张三在北京"},
                 text="张三在北京", words=None)
    -> output_record(record, entities=[{"type": "LOC", "text": "北京",
                                        "start": 3, "end": 5, "score": 0.98}])
    == {"id": 7, "text": "张三在北京", "entities": [...],
        "source": {"file": "in.jsonl", "line": 3}}
"""

import dataclasses
import json
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

FORMATS = ("text", "jsonl", "conll")
DEFAULT_TEXT_FIELD = "text"
# Fields the tagger adds to every output record (an input field of the same
# name is replaced: re-tagging an earlier output gives fresh entities).
ENTITIES_FIELD = "entities"
SOURCE_FIELD = "source"
TAGS_FIELD = "tags"  # CoNLL records only: one predicted tag per token
DEFAULT_MAX_TEXT_CHARS = 100_000
# A dead letter quotes at most this many characters of the bad input.
QUOTE_CHARS = 200
_DOCSTART = "-DOCSTART-"


@dataclasses.dataclass(frozen=True)
class SourceRecord:
  """One record to tag.

  Attributes:
    file: the source file (as matched: a local path or gs://...).
    line: 1-based line of the record (a CoNLL sentence's first token line).
    fields: the record's own fields, written back with the entities.
    text: the text to split into words and tag (text and jsonl), or None.
    words: the tokens to tag as given (conll), or None.
  """
  file: str
  line: int
  fields: Dict[str, Any]
  text: Optional[str] = None
  words: Optional[Tuple[str, ...]] = None


@dataclasses.dataclass(frozen=True)
class DeadLetter:
  """A record that could not be read or tagged, and why."""
  file: str
  line: int
  reason: str
  content: str = ""

  def to_json(self) -> Dict[str, Any]:
    """The dead-letter line: {"file", "line", "reason", "content"}."""
    return {"file": self.file, "line": self.line, "reason": self.reason,
            "content": self.content}


@dataclasses.dataclass
class FileReport:
  """What `read_file` found in one file besides records and dead letters."""
  blank_lines: int = 0


def _quote(text: str) -> str:
  return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "..."


def decode_lines(data: Iterable[bytes], path: str
                 ) -> Iterator[Tuple[int, Union[str, DeadLetter]]]:
  """(line number, text or DeadLetter) of each line of a file's bytes.

  A line that is not UTF-8 becomes a dead letter; the others go on. A BOM at
  the start of the file and the line ending are removed.

  Example: [b"ab\\n", b"\\xff\\n"] -> (1, "ab"), (2, DeadLetter(path, 2,
      "not valid UTF-8 at byte 0 of the line; ...", "\\\\xff"))
  """
  for number, raw in enumerate(data, start=1):
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
      raw = raw[3:]
    raw = raw.rstrip(b"\n").rstrip(b"\r")
    try:
      yield number, raw.decode("utf-8")
    except UnicodeDecodeError as error:
      yield number, DeadLetter(
          path, number, f"not valid UTF-8 at byte {error.start} of the line; "
          "the tagger reads UTF-8", _quote(raw.decode("utf-8", "replace")))


def text_record(path: str, number: int, line: str, max_text_chars: int
                ) -> Union[SourceRecord, DeadLetter]:
  """A text-format line as a record, or a dead letter when too long."""
  if len(line) > max_text_chars:
    return DeadLetter(path, number, f"text has {len(line)} characters, over "
                      f"--max_text_chars={max_text_chars}", _quote(line))
  return SourceRecord(path, number, {DEFAULT_TEXT_FIELD: line}, text=line)


def json_record(path: str, number: int, line: str, text_field: str,
                max_text_chars: int) -> Union[SourceRecord, DeadLetter]:
  """A JSON-lines line as a record (all its fields kept), or a dead letter.

  Example: '{"id": 1, "text": "EU"}' -> SourceRecord(path, number,
      {"id": 1, "text": "EU"}, text="EU"); '{"id": 1}' -> DeadLetter(path,
      number, "no 'text' field (the object has: id); ...", '{"id": 1}')
  """
  try:
    value = json.loads(line)
  except ValueError as error:
    return DeadLetter(path, number, f"not valid JSON: {error}", _quote(line))
  if not isinstance(value, dict):
    return DeadLetter(path, number, "expected a JSON object with a "
                      f"{text_field!r} field, got a {type(value).__name__}",
                      _quote(line))
  if text_field not in value:
    return DeadLetter(
        path, number, f"no {text_field!r} field (the object has: "
        f"{', '.join(sorted(value)) or 'no fields'}); set --text_field to "
        "the field that holds the text", _quote(line))
  text = value[text_field]
  if not isinstance(text, str):
    return DeadLetter(path, number, f"field {text_field!r} is a "
                      f"{type(text).__name__}, expected a string", _quote(line))
  if len(text) > max_text_chars:
    return DeadLetter(path, number, f"text has {len(text)} characters, over "
                      f"--max_text_chars={max_text_chars}", _quote(line))
  return SourceRecord(path, number, value, text=text)


def conll_records(path: str,
                  lines: Iterable[Tuple[int, Union[str, DeadLetter]]],
                  report: FileReport) -> Iterator[Union[SourceRecord,
                                                        DeadLetter]]:
  """CoNLL sentences as records: tokens are each line's first column.

  A sentence holding a line that is not UTF-8 becomes one dead letter
  (with the line's reason), since its tokens are incomplete.

  Example: lines "EU B-ORG", "rejects O", "", "-DOCSTART- O", "it O" ->
      SourceRecord(path, 1, {"tokens": ["EU", "rejects"],
                             "text": "EU rejects"}, words=("EU", "rejects")),
      SourceRecord(path, 5, {"tokens": ["it"], "text": "it"}, words=("it",))
  """
  tokens: List[str] = []
  first_line = 0
  broken: Optional[DeadLetter] = None

  def sentence():
    if broken is not None:
      return broken
    return SourceRecord(path, first_line, {"tokens": list(tokens),
                                           "text": " ".join(tokens)},
                        words=tuple(tokens))

  for number, line in lines:
    columns = [] if isinstance(line, DeadLetter) else line.split()
    if isinstance(line, DeadLetter):
      broken = broken or line
      first_line = first_line or number
      continue
    if not columns or columns[0] == _DOCSTART:
      if not columns:
        report.blank_lines += 1
      if tokens or broken:
        yield sentence()
      tokens, first_line, broken = [], 0, None
      continue
    first_line = first_line or number
    tokens.append(columns[0])
  if tokens or broken:
    yield sentence()


def read_file(path: str, data: Iterable[bytes], data_format: str,
              text_field: str = DEFAULT_TEXT_FIELD,
              max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
              report: Optional[FileReport] = None
              ) -> Iterator[Union[SourceRecord, DeadLetter]]:
  """Every record (or dead letter) of one file, in file order.

  Args:
    path: the file's name, written into records and dead letters.
    data: the file's lines as bytes (a binary file object works).
    data_format: one of `FORMATS`.
    text_field: the JSON field holding the text (jsonl).
    max_text_chars: longer texts become dead letters.
    report: counts blank lines (optional).

  Raises:
    ValueError: for an unknown `data_format`.
  """
  if data_format not in FORMATS:
    raise ValueError(f"--format={data_format!r}; use one of "
                     f"{', '.join(FORMATS)}.")
  report = report if report is not None else FileReport()
  lines = decode_lines(data, path)
  if data_format == "conll":
    yield from conll_records(path, lines, report)
    return
  for number, line in lines:
    if isinstance(line, DeadLetter):
      yield line
    elif not line.strip():
      report.blank_lines += 1
    elif data_format == "text":
      yield text_record(path, number, line, max_text_chars)
    else:
      yield json_record(path, number, line, text_field, max_text_chars)


def failed_record(record: SourceRecord, reason: str) -> DeadLetter:
  """The dead letter of a record that could not be tagged (its fields as
  JSON, shortened, are the content)."""
  return DeadLetter(record.file, record.line, reason,
                    _quote(json.dumps(record.fields, ensure_ascii=False)))


def output_record(record: SourceRecord, entities: List[Dict[str, Any]],
                  tags: Optional[List[str]] = None) -> Dict[str, Any]:
  """The output line of a tagged record: its fields, entities and source.

  Args:
    record: the source record.
    entities: {type, text, start, end, score} per entity, as
      `serving.client.request_codec.entities_from_record` gives them
      (start/end: character offsets into the text).
    tags: one predicted tag per token (conll records), else None.
  """
  line = dict(record.fields)
  line[ENTITIES_FIELD] = entities
  if tags is not None:
    line[TAGS_FIELD] = tags
  line[SOURCE_FIELD] = {"file": record.file, "line": record.line}
  return line
