"""Reader for CLUENER2020-style JSON lines with character-offset entities.

Each line is `{"text": ..., "label": {TYPE: {MENTION: [[start, end]]}}}` with
inclusive character offsets, and optionally `"doc_id": ...` (a string or an
integer naming the record's document, for document context). Every
non-whitespace character becomes a token with an IOB2 tag. BIO cannot hold
nested or overlapping entities, so `overlapping_spans` says what to do with
them: 'error' refuses the file, 'keep_longest' (the default) keeps the longer
span and 'keep_first' the one written first; every dropped span goes to the
`DataWarnings` collector.

Pure Python: never imports TensorFlow.
"""

import dataclasses
import json
from typing import Optional

from trainer.data import data_warnings
from trainer.data.formats import reader_common
from trainer import schema
from trainer.data import tag_schemes
from trainer.data.formats.reader_common import Sentence

JSONL_EXTENSIONS = (".jsonl", ".json")

OVERLAPPING_SPANS_CHOICES = ("error", "keep_longest", "keep_first")
DEFAULT_OVERLAPPING_SPANS = "keep_longest"
OVERLAPPING_SPANS_FLAG = "--overlapping_spans"

LABEL_KEY = "label"
# Optional: the record's document (consecutive records with one id are one
# document for `--context_pieces`); becomes `Sentence.document_id`.
DOC_ID_KEY = "doc_id"


@dataclasses.dataclass(frozen=True)
class Mention:
  """One labelled span of a record; `start` and `end` are inclusive."""
  entity_type: str
  text: str
  start: int
  end: int

  def describe(self) -> str:
    return f"{self.entity_type} {self.text!r} at [{self.start}, {self.end}]"

  def overlaps(self, other: "Mention") -> bool:
    return self.start <= other.end and other.start <= self.end


def _check_offsets(text: str, entity_type: str, mention: str, offsets: object,
                   where: str) -> Mention:
  """Validates one [start, end] pair of `mention` and returns it."""
  if (not isinstance(offsets, list) or len(offsets) != 2 or
      not all(isinstance(o, int) and not isinstance(o, bool)
              for o in offsets) or
      not 0 <= offsets[0] <= offsets[1] < len(text)):
    raise ValueError(
        f"{where}: offsets {offsets!r} of {entity_type} {mention!r} must be "
        f"[start, end] with 0 <= start <= end < {len(text)} (inclusive "
        f"character offsets).")
  start, end = offsets
  if text[start:end + 1] != mention:
    raise ValueError(
        f"{where}: {entity_type} mention {mention!r} at [{start}, {end}] does "
        f"not match the text there, {text[start:end + 1]!r} (offsets are "
        f"inclusive).")
  if not mention.strip():
    raise ValueError(f"{where}: {entity_type} mention {mention!r} at "
                     f"[{start}, {end}] has no non-space character.")
  return Mention(entity_type, mention, start, end)


def parse_mentions(text: str, label: object, where: str) -> list[Mention]:
  """Validates a CLUENER `label` object and lists its mentions in file order.

  Example:
    text '叶老桂博士', label {'name': {'叶老桂': [[0, 2]]}}
        -> [Mention('name', '叶老桂', 0, 2)]

  Raises:
    ValueError: for a malformed label, an invalid type, bad offsets or a
      mention that does not match the text, naming `where`.
  """
  if not label:
    return []
  if not isinstance(label, dict):
    raise ValueError(f"{where}: 'label' must be an object "
                     f"{{type: {{mention: [[start, end], ...]}}}}, got "
                     f"{label!r}.")
  mentions = []
  for entity_type, by_mention in label.items():
    if not isinstance(by_mention, dict):
      raise ValueError(f"{where}: label[{entity_type!r}] must be an object "
                       f"{{mention: [[start, end], ...]}}, got "
                       f"{by_mention!r}.")
    tag_schemes.validate_tag("B-" + entity_type, source=where)
    for mention, offsets_list in by_mention.items():
      if not isinstance(offsets_list, list):
        raise ValueError(f"{where}: offsets of {mention!r} must be a list of "
                         f"[start, end] pairs, got {offsets_list!r}.")
      mentions.extend(
          _check_offsets(text, entity_type, mention, offsets, where)
          for offsets in offsets_list)
  return mentions


def resolve_overlaps(mentions: list[Mention], overlapping_spans: str,
                     where: str, warnings: data_warnings.DataWarnings
                    ) -> list[Mention]:
  """Keeps a set of non-overlapping mentions, recording every dropped one.

  'keep_longest' considers longer spans first (ties: file order), so a span
  nested in another is dropped; 'keep_first' considers them in file order.
  A span is kept when it overlaps no span kept before it.

  Example (keep_longest): [company '银行' [2, 3], book '浙商银行' [0, 3]]
      -> [book '浙商银行' [0, 3]], and one warning: "dropped company '银行'
         at [2, 3]: overlaps kept book '浙商银行' at [0, 3] ..."

  Raises:
    ValueError: with 'error', at the first mention (in file order) that
      overlaps an earlier one.
  """
  order = list(range(len(mentions)))
  if overlapping_spans == "keep_longest":
    order.sort(key=lambda i: (mentions[i].start - mentions[i].end, i))
  kept: dict[int, Mention] = {}
  dropped: list[tuple[int, Mention, Mention]] = []
  for index in order:
    mention = mentions[index]
    rival = next((other for other in kept.values()
                  if other.overlaps(mention)), None)
    if rival is None:
      kept[index] = mention
      continue
    if overlapping_spans == "error":
      raise ValueError(
          f"{where}: {mention.describe()} overlaps {rival.describe()}; nested "
          f"or overlapping entities are not supported. Pass "
          f"{OVERLAPPING_SPANS_FLAG}=keep_longest or keep_first to keep one "
          f"of them.")
    dropped.append((index, mention, rival))
  for _, mention, rival in sorted(dropped, key=lambda item: item[0]):
    warnings.add(
        data_warnings.OVERLAPPING_SPAN, where,
        f"dropped {mention.describe()}: overlaps kept {rival.describe()} "
        f"({OVERLAPPING_SPANS_FLAG}={overlapping_spans})",
        type=mention.entity_type, text=mention.text, start=mention.start,
        end=mention.end, kept=rival.describe())
  return [kept[index] for index in sorted(kept)]


def character_tags(text: str, mentions: list[Mention]) -> list[str]:
  """One IOB2 tag per character of `text` for non-overlapping mentions.

  Whitespace is no token, so the first non-space character of a mention
  carries its B- tag.

  Example: ('叶老桂博士', [Mention('name', '叶老桂', 0, 2)])
      -> ['B-name', 'I-name', 'I-name', 'O', 'O']
  """
  tags = [schema.OUTSIDE_TAG] * len(text)
  for mention in mentions:
    inside = False
    for position in range(mention.start, mention.end + 1):
      if text[position].isspace():
        continue
      tags[position] = ("I-" if inside else "B-") + mention.entity_type
      inside = True
  return tags


def _parse_record(line: str, where: str) -> dict:
  """Parses one JSON line into a dict with a string 'text' free of NULs."""
  try:
    record = json.loads(line)
  except json.JSONDecodeError as error:
    raise ValueError(f"{where}: invalid JSON ({error}); expected one object "
                     f"like {{\"text\": ..., \"label\": ...}} per line.") \
        from None
  if not isinstance(record, dict) or not isinstance(record.get("text"), str):
    raise ValueError(f"{where}: expected an object with a string 'text' "
                     f"field, got {line[:80]!r}.")
  if "\x00" in record["text"]:
    raise ValueError(f"{where}: 'text' holds a NUL character (\\u0000) at "
                     f"offset {record['text'].index(chr(0))}; text data never "
                     f"holds one.")
  document_id = record.get(DOC_ID_KEY)
  if DOC_ID_KEY in record and (not isinstance(document_id, (str, int))
                               or isinstance(document_id, bool)):
    raise ValueError(f"{where}: {DOC_ID_KEY!r} must be a string or an "
                     f"integer naming the record's document, got "
                     f"{document_id!r}.")
  return record


def _check_labelling(labelled: bool, where: str,
                     first: Optional[tuple[bool, str]]) -> tuple[bool, str]:
  """Refuses a file whose records are partly labelled; returns `first`."""
  if first is None:
    return labelled, where
  first_labelled, first_where = first
  if labelled != first_labelled:
    has, lacks = (where, first_where) if labelled else (first_where, where)
    raise ValueError(
        f"{where}: records mix labelled and unlabelled data: {has} has a "
        f"{LABEL_KEY!r} key but {lacks} has none. A file is either labelled "
        f"(every record has {LABEL_KEY!r}, {{}} when it holds no entity) or "
        f"text to predict (no record has it).")
  return first


def _record_sentence(text: str, tags: Optional[list[str]], where: str,
                     document_id: reader_common.DocumentId
                     ) -> Optional[Sentence]:
  """One character-level sentence of a record; None when text is blank."""
  positions = [i for i, character in enumerate(text)
               if not character.isspace()]
  if not positions:
    return None
  return Sentence(
      tokens=tuple(text[i] for i in positions),
      tags=None if tags is None else tuple(tags[i] for i in positions),
      source=where, text=text,
      char_spans=tuple((i, i + 1) for i in positions),
      document_id=document_id)


def _read_records(path: str, overlapping_spans: str,
                  warnings: data_warnings.DataWarnings) -> list[Sentence]:
  """The loop of `read_jsonl`: one sentence per non-blank record."""
  sentences, first = [], None
  for number, line in enumerate(reader_common.read_lines(path), start=1):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    record = _parse_record(line, where)
    first = _check_labelling(LABEL_KEY in record, where, first)
    text = record["text"]
    mentions = resolve_overlaps(
        parse_mentions(text, record.get(LABEL_KEY), where), overlapping_spans,
        where, warnings)
    tags = character_tags(text, mentions) if first[0] else None
    sentence = _record_sentence(text, tags, where, record.get(DOC_ID_KEY))
    if sentence is not None:
      sentences.append(sentence)
  return sentences


def read_jsonl(path: str,
               overlapping_spans: str = DEFAULT_OVERLAPPING_SPANS,
               warnings: Optional[data_warnings.DataWarnings] = None
              ) -> list[Sentence]:
  """Reads CLUENER2020-style JSON lines into character-level sentences.

  A record with a `label` key (`{}` or null: no entity) is labelled; a file
  where no record has one is text to predict (tags None, as CLUENER's
  test.json). Blank lines, and records whose text has no non-whitespace
  character, are skipped. A record's optional `doc_id` (string or integer)
  becomes its sentence's `document_id` (None without one).

  Example:
    {"text": "叶老桂 说", "label": {"name": {"叶老桂": [[0, 2]]}}, "doc_id": "a"}
        -> Sentence(tokens=('叶', '老', '桂', '说'),
                    tags=('B-name', 'I-name', 'I-name', 'O'),
                    text='叶老桂 说',
                    char_spans=((0, 1), (1, 2), (2, 3), (4, 5)),
                    document_id='a')

  Args:
    path: the file.
    overlapping_spans: one of `OVERLAPPING_SPANS_CHOICES`; see
      `resolve_overlaps`.
    warnings: collects every dropped span; None logs a summary instead.

  Raises:
    ValueError: for invalid JSON, a missing text, bad offsets, a mention that
      does not match the text, overlapping entities with 'error', labelled and
      unlabelled records in one file, a `doc_id` that is neither a string nor
      an integer, naming file:line; or an unknown
      `overlapping_spans`.
  """
  if overlapping_spans not in OVERLAPPING_SPANS_CHOICES:
    raise ValueError(f"{OVERLAPPING_SPANS_FLAG} {overlapping_spans!r} is "
                     f"unknown; allowed: "
                     f"{', '.join(OVERLAPPING_SPANS_CHOICES)}.")
  with data_warnings.collecting(warnings) as collector:
    sentences = _read_records(path, overlapping_spans, collector)
  return reader_common.check_not_empty(sentences, path)
