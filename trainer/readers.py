"""Readers that turn NER files into `Sentence`s.

Formats (`FORMATS`):
  conll     one token per line, token = first column, tag = last column,
            blank lines between sentences, `-DOCSTART-` lines skipped.
  parallel  a tokens file and a tags file, one sentence per line each
            (e.g. MSRA `source.txt` / `target.txt`).
  jsonl     CLUENER2020: one JSON object per line, character-level entities.
  text      one unlabelled sentence per line (for prediction).
  auto      pick one of the above with `detect_format`.

Every reader reports bad input as a ValueError naming file:line, the offending
text and what was allowed. Sentences with zero tokens never appear; the blank
or empty lines they would come from are skipped but still counted, so every
`source` carries the true line number.

Pure Python: never imports TensorFlow.
"""

import codecs
import dataclasses
import json
import os
import unicodedata
from typing import Callable, Optional, Sequence

from trainer import schema
from trainer import tag_schemes

FORMATS = ("auto", "conll", "parallel", "jsonl", "text")

DOCSTART = "-DOCSTART-"

# (tokens-file suffix, tags-file suffix) pairs for the parallel format.
PARALLEL_SUFFIXES = ((".src", ".tgt"), (".tokens", ".tags"))
PARALLEL_SOURCE_NAME = "source.txt"
PARALLEL_TARGET_NAME = "target.txt"

JSONL_EXTENSIONS = (".jsonl", ".json")

# Conventional file names per split; the first existing one wins.
SPLIT_FILE_NAMES = {
    "train": ("train.txt", "train.conll", "train.tsv", "train.jsonl",
              "train.json", "example.train", PARALLEL_SOURCE_NAME,
              "train.src"),
    "dev": ("dev.txt", "dev.conll", "dev.tsv", "dev.jsonl", "dev.json",
            "valid.txt", "validation.txt", "example.dev", "eval.txt"),
    "test": ("test.txt", "test.conll", "test.tsv", "test.jsonl", "test.json",
             "example.test"),
}

# How many non-blank lines `detect_format` looks at.
_DETECT_LINES = 200

WordSplitter = Callable[[str], Sequence[str]]


@dataclasses.dataclass(frozen=True)
class Sentence:
  """One sentence of tokens, with tags when the data is labelled.

  Attributes:
    tokens: the words (or characters, for Chinese data), at least one.
    tags: one tag per token, or None for unlabelled data.
    source: "path:line" of the sentence's first line.
    text: the original text (jsonl and text formats), else None.
    char_spans: per token (start, end_exclusive) offsets into `text`, or None
      when `text` is None. `text[start:end] == token` for every token.
  """
  tokens: tuple[str, ...]
  tags: Optional[tuple[str, ...]]
  source: str
  text: Optional[str] = None
  char_spans: Optional[tuple[tuple[int, int], ...]] = None


def _read_lines(path: str) -> list[str]:
  """Reads a UTF-8 file as lines without line endings.

  A leading BOM is dropped, CRLF and LF both end a line, and a missing final
  newline is fine. Only '\\n' splits lines: `str.splitlines` would also split
  on characters such as U+2028 that can occur inside tokens.

  Example: b'\\xef\\xbb\\xbfa O\\r\\n\\r\\nb O' -> ['a O', '', 'b O']

  Raises:
    ValueError: if the file is not valid UTF-8 (names file, line, byte offset).
  """
  with open(path, "rb") as file:
    data = file.read()
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
  lines = text.split("\n")
  if lines and lines[-1] == "":
    lines.pop()  # the final newline ends the last line, it starts no new one
  return [line[:-1] if line.endswith("\r") else line for line in lines]


def _check_not_empty(sentences: list[Sentence], path: str) -> list[Sentence]:
  if not sentences:
    raise ValueError(f"{path}: contains no sentences (every line is blank or "
                     f"a {DOCSTART} marker).")
  return sentences


def _looks_like_tag(text: str) -> bool:
  try:
    tag_schemes.validate_tag(text)
  except ValueError:
    return False
  return True


def read_conll(path: str) -> list[Sentence]:
  """Reads the CoNLL column format.

  The token is the first column and the tag the last, split on any whitespace
  (so `TOKEN POS CHUNK NER` and the Chinese `字 TAG` both work). A line holding
  `-DOCSTART-` ends the current sentence and is skipped. If no line has a
  second column the file is read as unlabelled (tags None); otherwise every
  token line must have at least two columns.

  Example:
    'EU NNP B-NP B-ORG\\nrejects VBZ B-VP O\\n\\n' ->
        [Sentence(tokens=('EU', 'rejects'), tags=('B-ORG', 'O'),
                  source='path:1')]

  Raises:
    ValueError: for a one-column line in a labelled file, an invalid tag, or
      a file with no sentences, naming file:line.
  """
  lines = _read_lines(path)
  token_lines = [(number, line.split())
                 for number, line in enumerate(lines, start=1)
                 if line.strip() and line.split()[0] != DOCSTART]
  labelled = any(len(columns) >= 2 for _, columns in token_lines)

  sentences = []
  tokens, tags, first_line = [], [], None

  def flush():
    if tokens:
      sentences.append(Sentence(tokens=tuple(tokens),
                                tags=tuple(tags) if labelled else None,
                                source=f"{path}:{first_line}"))
    tokens.clear()
    tags.clear()

  for number, line in enumerate(lines, start=1):
    columns = line.split()
    if not columns or columns[0] == DOCSTART:
      flush()
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
    tokens.append(columns[0])
  flush()
  return _check_not_empty(sentences, path)


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


def read_parallel(path: str, tags_path: Optional[str] = None) -> list[Sentence]:
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

  Raises:
    ValueError: if no tags file is given or found, the files have different
      line counts, a line pair has different token counts, or a tag is
      invalid; messages name both files and the line.
  """
  if tags_path is None:
    tags_path = parallel_partner(path)
    if tags_path is None or not os.path.exists(tags_path):
      raise ValueError(
          f"{path}: no tags file for the parallel format; expected "
          f"{tags_path or 'a partner file'} (conventions: source.txt/"
          f"target.txt, X.src/X.tgt, X.tokens/X.tags) or pass tags_path.")
  token_lines = _read_lines(path)
  tag_lines = _read_lines(tags_path)
  if len(token_lines) != len(tag_lines):
    raise ValueError(
        f"{path} has {len(token_lines)} lines but {tags_path} has "
        f"{len(tag_lines)}; the parallel format needs one tag line per "
        f"sentence line.")
  sentences = []
  for number, (token_line, tag_line) in enumerate(
      zip(token_lines, tag_lines), start=1):
    tokens, tags = token_line.split(), tag_line.split()
    if tokens == [DOCSTART] and tags in ([DOCSTART], [schema.OUTSIDE_TAG]):
      continue
    if len(tokens) != len(tags):
      raise ValueError(
          f"{path}:{number} has {len(tokens)} tokens but {tags_path}:{number} "
          f"has {len(tags)} tags; they must be equal.")
    if not tokens:
      continue
    tag_schemes.validate_tags(tags, source=f"{tags_path}:{number}")
    sentences.append(Sentence(tokens=tuple(tokens), tags=tuple(tags),
                              source=f"{path}:{number}"))
  return _check_not_empty(sentences, path)


def _jsonl_character_tags(text: str, label: object,
                          where: str) -> list[str]:
  """Turns a CLUENER `label` object into one IOB2 tag per character of text.

  Example:
    text '叶老桂博士', label {'name': {'叶老桂': [[0, 2]]}}
        -> ['B-name', 'I-name', 'I-name', 'O', 'O']
  """
  tags = [schema.OUTSIDE_TAG] * len(text)
  owners = [None] * len(text)  # which entity claimed each character
  if not label:
    return tags
  if not isinstance(label, dict):
    raise ValueError(f"{where}: 'label' must be an object "
                     f"{{type: {{mention: [[start, end], ...]}}}}, got "
                     f"{label!r}.")
  for entity_type, mentions in label.items():
    if not isinstance(mentions, dict):
      raise ValueError(f"{where}: label[{entity_type!r}] must be an object "
                       f"{{mention: [[start, end], ...]}}, got {mentions!r}.")
    tag_schemes.validate_tag("B-" + entity_type, source=where)
    for mention, offsets_list in mentions.items():
      if not isinstance(offsets_list, list):
        raise ValueError(f"{where}: offsets of {mention!r} must be a list of "
                         f"[start, end] pairs, got {offsets_list!r}.")
      for offsets in offsets_list:
        if (not isinstance(offsets, list) or len(offsets) != 2 or
            not all(isinstance(o, int) and not isinstance(o, bool)
                    for o in offsets) or
            not 0 <= offsets[0] <= offsets[1] < len(text)):
          raise ValueError(
              f"{where}: offsets {offsets!r} of {entity_type} {mention!r} "
              f"must be [start, end] with 0 <= start <= end < "
              f"{len(text)} (inclusive character offsets).")
        start, end = offsets
        if text[start:end + 1] != mention:
          raise ValueError(
              f"{where}: {entity_type} mention {mention!r} at [{start}, "
              f"{end}] does not match the text there, "
              f"{text[start:end + 1]!r} (offsets are inclusive).")
        if not mention.strip():
          raise ValueError(f"{where}: {entity_type} mention {mention!r} at "
                           f"[{start}, {end}] has no non-space character.")
        for position in range(start, end + 1):
          if owners[position] is not None:
            raise ValueError(
                f"{where}: {entity_type} {mention!r} at [{start}, {end}] "
                f"overlaps {owners[position]}; nested or overlapping "
                f"entities are not supported.")
          owners[position] = f"{entity_type} {mention!r} at [{start}, {end}]"
        # Whitespace characters are not tokens, so the first non-space
        # character of the mention carries the B- tag.
        inside = False
        for position in range(start, end + 1):
          if text[position].isspace():
            continue
          tags[position] = ("I-" if inside else "B-") + entity_type
          inside = True
  return tags


def read_jsonl(path: str) -> list[Sentence]:
  """Reads CLUENER2020-style JSON lines into character-level sentences.

  Each line is `{"text": ..., "label": {TYPE: {MENTION: [[start, end]]}}}`
  with inclusive character offsets. Every non-whitespace character becomes a
  token with IOB2 tags; a missing or empty `label` means all 'O'. Blank lines,
  and lines whose text has no non-whitespace character and no label, are
  skipped (they hold no token).

  Example:
    {"text": "叶老桂 说", "label": {"name": {"叶老桂": [[0, 2]]}}}
        -> Sentence(tokens=('叶', '老', '桂', '说'),
                    tags=('B-name', 'I-name', 'I-name', 'O'),
                    text='叶老桂 说',
                    char_spans=((0, 1), (1, 2), (2, 3), (4, 5)))

  Raises:
    ValueError: for invalid JSON, a missing text, bad offsets, a mention that
      does not match the text, or overlapping entities, naming file:line.
  """
  sentences = []
  for number, line in enumerate(_read_lines(path), start=1):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    try:
      record = json.loads(line)
    except json.JSONDecodeError as error:
      raise ValueError(f"{where}: invalid JSON ({error}); expected one object "
                       f"like {{\"text\": ..., \"label\": ...}} per line.") \
          from None
    if not isinstance(record, dict) or not isinstance(record.get("text"),
                                                      str):
      raise ValueError(f"{where}: expected an object with a string 'text' "
                       f"field, got {line[:80]!r}.")
    text = record["text"]
    character_tags = _jsonl_character_tags(text, record.get("label"), where)
    positions = [i for i, character in enumerate(text)
                 if not character.isspace()]
    if not positions:
      continue
    sentences.append(Sentence(
        tokens=tuple(text[i] for i in positions),
        tags=tuple(character_tags[i] for i in positions),
        source=where, text=text,
        char_spans=tuple((i, i + 1) for i in positions)))
  return _check_not_empty(sentences, path)


def is_chinese_char(codepoint: int) -> bool:
  """CJK ideograph test; the ranges of BERT's `_is_chinese_char`."""
  return (0x4E00 <= codepoint <= 0x9FFF or 0x3400 <= codepoint <= 0x4DBF or
          0x20000 <= codepoint <= 0x2A6DF or 0x2A700 <= codepoint <= 0x2B73F or
          0x2B740 <= codepoint <= 0x2B81F or 0x2B820 <= codepoint <= 0x2CEAF or
          0xF900 <= codepoint <= 0xFAFF or 0x2F800 <= codepoint <= 0x2FA1F)


def _is_punctuation(character: str) -> bool:
  """BERT's `tokenization._is_punctuation`: ASCII symbols count too ('$')."""
  codepoint = ord(character)
  if (33 <= codepoint <= 47 or 58 <= codepoint <= 64 or
      91 <= codepoint <= 96 or 123 <= codepoint <= 126):
    return True
  return unicodedata.category(character).startswith("P")


def default_word_splitter(text: str) -> list[str]:
  """Splits raw text into words like BERT's BasicTokenizer, keeping case.

  Every CJK character and every punctuation character is its own word; other
  text is split on whitespace.

  Example: 'John lives in 北京, OK.' ->
      ['John', 'lives', 'in', '北', '京', ',', 'OK', '.']
  """
  words = []
  current = []
  for character in text:
    if character.isspace():
      if current:
        words.append("".join(current))
        current = []
    elif is_chinese_char(ord(character)) or _is_punctuation(character):
      if current:
        words.append("".join(current))
        current = []
      words.append(character)
    else:
      current.append(character)
  if current:
    words.append("".join(current))
  return words


def token_char_spans(text: str, tokens: Sequence[str],
                     where: str = "") -> tuple[tuple[int, int], ...]:
  """Finds each token in `text`, in order, and returns its offsets.

  Example: ('北京, OK', ['北', '京', ',', 'OK']) -> ((0, 1), (1, 2), (2, 3), (4, 6))

  Raises:
    ValueError: if a token is empty or does not occur in order in `text` (a
      word splitter must return substrings of its input).
  """
  spans = []
  offset = 0
  for index, token in enumerate(tokens):
    start = text.find(token, offset) if token else -1
    if start < 0:
      raise ValueError(
          f"{where}: word {index} {token!r} from the word splitter is not a "
          f"substring of the line after offset {offset}; a splitter must "
          f"return the non-empty pieces of its input in order.")
    offset = start + len(token)
    spans.append((start, offset))
  return tuple(spans)


def read_text(path: str,
              word_splitter: Optional[WordSplitter] = None) -> list[Sentence]:
  """Reads one unlabelled sentence per line.

  Tokens come from `word_splitter(line)` or `default_word_splitter`; empty
  and whitespace-only lines are skipped but counted in line numbers.

  Example:
    'x\\n\\n北京 is big.\\n' -> [Sentence(('x',), None, 'p:1', 'x', ((0, 1),)),
        Sentence(('北', '京', 'is', 'big', '.'), None, 'p:3', '北京 is big.',
                 ((0, 1), (1, 2), (3, 5), (6, 9), (9, 10)))]
  """
  splitter = word_splitter or default_word_splitter
  sentences = []
  for number, line in enumerate(_read_lines(path), start=1):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    tokens = tuple(splitter(line))
    if not tokens:
      raise ValueError(f"{where}: the word splitter returned no words for "
                       f"the non-empty line {line[:80]!r}.")
    sentences.append(Sentence(tokens=tokens, tags=None, source=where,
                              text=line,
                              char_spans=token_char_spans(line, tokens,
                                                          where)))
  return _check_not_empty(sentences, path)


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
  for line in _read_lines(path):
    columns = line.split()
    if not columns or columns[0] == DOCSTART:
      continue
    looked_at += 1
    if len(columns) >= 2 and _looks_like_tag(columns[-1]):
      tag_like += 1
    if looked_at >= _DETECT_LINES:
      break
  if looked_at and tag_like * 2 > looked_at:
    return "conll"
  return "text"


def read_sentences(path: str, data_format: str = "auto",
                   word_splitter: Optional[WordSplitter] = None,
                   tags_path: Optional[str] = None) -> list[Sentence]:
  """Reads `path` in `data_format` (one of `FORMATS`).

  Args:
    path: the data file (the tokens file for 'parallel').
    data_format: 'auto' picks with `detect_format` ('parallel' when
      `tags_path` is given).
    word_splitter: for 'text' only: line -> words; default
      `default_word_splitter`.
    tags_path: for 'parallel' only: the tags file, if not found by convention.

  Returns:
    The sentences in file order; never empty, no sentence without tokens.

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
    return read_conll(path)
  if data_format == "parallel":
    return read_parallel(path, tags_path)
  if data_format == "jsonl":
    return read_jsonl(path)
  return read_text(path, word_splitter)


def find_split_files(data_dir: str) -> dict[str, Optional[str]]:
  """Finds the train, dev and test files of `data_dir` by conventional name.

  For each split the names in `SPLIT_FILE_NAMES` are tried in order and the
  first existing file wins. Parallel tokens files (`source.txt`, `train.src`)
  only count when their tags partner exists too.

  Example: a dir with train.txt, source.txt, target.txt and example.dev ->
      {'train': 'dir/train.txt', 'dev': 'dir/example.dev', 'test': None}

  Raises:
    ValueError: if `data_dir` is not a directory.
  """
  if not os.path.isdir(data_dir):
    raise ValueError(f"data_dir {data_dir!r} is not a directory.")
  found = {}
  for split, names in SPLIT_FILE_NAMES.items():
    found[split] = None
    for name in names:
      candidate = os.path.join(data_dir, name)
      partner = parallel_partner(candidate)
      if os.path.isfile(candidate) and (partner is None or
                                        os.path.isfile(partner)):
        found[split] = candidate
        break
  return found
