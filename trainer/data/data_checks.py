"""Checks on tokens and tags that only make sense over a whole file.

- Word-position suffix digits: some Chinese social-media corpora (Weibo NER)
  write each character with the index of its position in the word, `中0 国1`.
  Read as they are, such tokens are two-symbol words the vocabulary lacks.
  `check_token_suffix_digits` finds the layout (most CJK tokens end in one
  ASCII digit) and refuses it unless the run asks to strip the digit.
- Mixed tag schemes: a file whose entities end sometimes with E-/S- (BIOES,
  BMES) and sometimes with B-/I- (BIO), or that writes both I- and M- inside
  tags, is read with conlleval rules, which may not be what its author meant.
  `check_mixed_tag_schemes` records one warning per file.

Pure Python: never imports TensorFlow.
"""

from typing import Iterable, Optional, Sequence

from trainer.data import data_warnings
from trainer.data import tag_schemes
from trainer.data import word_splitting
from trainer.data.formats.reader_common import Sentence

STRIP_TOKEN_SUFFIX_DIGIT_FLAG = "--strip_token_suffix_digit"
_ASCII_DIGITS = "0123456789"


def has_suffix_digit(token: str) -> bool:
  """True for one CJK character followed by one ASCII digit.

  Example: '中0' -> True, '中' -> False, 'A1' -> False, '中０' -> False.
  """
  return (len(token) == 2 and token[1] in _ASCII_DIGITS and
          word_splitting.is_chinese_char(ord(token[0])))


def strip_suffix_digit(token: str) -> str:
  """Removes a word-position digit: '中0' -> '中'; other tokens unchanged."""
  return token[0] if has_suffix_digit(token) else token


def suffix_digit_layout_line(
    token_rows: Iterable[tuple[int, Sequence[str]]]) -> Optional[int]:
  """Finds the word-position suffix layout in a file's tokens.

  Args:
    token_rows: (line number, tokens on that line) for every token line.

  Returns:
    The first line holding a suffixed token when more than half of the tokens
    that start with a CJK character are `has_suffix_digit`, else None.

  Example: [(1, ['中0']), (2, ['国1']), (3, ['人'])] -> 1
  """
  cjk_tokens = suffixed = 0
  first_line = None
  for number, tokens in token_rows:
    for token in tokens:
      if not word_splitting.is_chinese_char(ord(token[0])):
        continue
      cjk_tokens += 1
      if has_suffix_digit(token):
        suffixed += 1
        if first_line is None:
          first_line = number
  if suffixed * 2 > cjk_tokens:
    return first_line
  return None


def check_token_suffix_digits(token_rows: Sequence[tuple[int, Sequence[str]]],
                              path: str, strip: bool) -> None:
  """Refuses the word-position suffix layout unless `strip` is set.

  Raises:
    ValueError: naming file:line of the first suffixed token and the flag
      that strips the digit, when the layout is found and `strip` is False.
  """
  if strip:
    return
  line = suffix_digit_layout_line(token_rows)
  if line is None:
    return
  example = next(token for number, tokens in token_rows if number == line
                 for token in tokens if has_suffix_digit(token))
  raise ValueError(
      f"{path}:{line}: token {example!r} is a CJK character followed by a "
      f"digit, and most CJK tokens of this file are: this looks like a "
      f"word-position suffix layout ('中0 国1'). Pass "
      f"{STRIP_TOKEN_SUFFIX_DIGIT_FLAG} to remove the digit, or fix the "
      f"file.")


def _token_source(sentence: Sentence, index: int,
                  one_token_per_line: bool) -> str:
  """'path:line' of token `index` of `sentence`.

  Example: Sentence source 'a.txt:7', index 2 -> 'a.txt:9' when
  `one_token_per_line` (CoNLL), else 'a.txt:7'.
  """
  if not one_token_per_line:
    return sentence.source
  path, _, line = sentence.source.rpartition(":")
  return f"{path}:{int(line) + index}"


class _StyleCounts:
  """How often each style occurs in a file, and where it first occurs."""

  def __init__(self) -> None:
    self.counts = {"closed": 0, "open": 0, "I": 0, "M": 0}
    self.first: dict[str, str] = {}

  def add(self, style: str, source: str) -> None:
    self.counts[style] += 1
    self.first.setdefault(style, source)

  def rarer_first(self, style_a: str, style_b: str) -> str:
    """Where the less frequent of two styles first occurs (ties: style_a)."""
    rarer = style_b if self.counts[style_b] < self.counts[style_a] else style_a
    return self.first[rarer]


def _entity_styles(sentences: Sequence[Sentence],
                   one_token_per_line: bool) -> _StyleCounts:
  """Counts entities by how they end, and inside tags by prefix.

  Styles: 'closed' entities end with E-/S- (BIOES, BMES), 'open' ones with
  B-/I-/M- (BIO); 'I' and 'M' count inside tags.
  """
  styles = _StyleCounts()
  for sentence in sentences:
    if sentence.tags is None:
      continue
    for _, _, end in tag_schemes.get_entities(sentence.tags):
      prefix, _ = tag_schemes.split_tag(sentence.tags[end - 1])
      styles.add("closed" if prefix in ("E", "S") else "open",
                 _token_source(sentence, end - 1, one_token_per_line))
    for index, tag in enumerate(sentence.tags):
      prefix, _ = tag_schemes.split_tag(tag)
      if prefix in ("I", "M"):
        styles.add(prefix, _token_source(sentence, index, one_token_per_line))
  return styles


def check_mixed_tag_schemes(sentences: Sequence[Sentence], path: str,
                            warnings: data_warnings.DataWarnings,
                            one_token_per_line: bool) -> None:
  """Records one warning if a file mixes BIO with BIOES/BMES, or I- with M-.

  The warning's source is where the rarer of the two mixed styles first
  occurs, as that is more likely the mistake. IOB1 and IOB2 mixed in one file
  are not told apart (their tags look alike).

  Args:
    sentences: the file's sentences (unlabelled ones are ignored).
    path: the file, for the message.
    warnings: where the warning goes.
    one_token_per_line: True for CoNLL files, whose token i of a sentence
      starting at line L sits on line L + i; else the sentence line is used.

  Example: CoNLL lines 1-2 'a B-X', 'b E-X', line 4 'c S-Y', lines 6-7
    'd B-Z', 'e I-Z' -> one warning at 'path:7': "path mixes tag schemes: 2
    entities end with E-/S- (BIOES/BMES) and 1 with B-/I-/M- (BIO); ..."
  """
  styles = _entity_styles(sentences, one_token_per_line)
  counts = styles.counts
  parts, places = [], []
  if counts["closed"] and counts["open"]:
    parts.append(f"{counts['closed']} entities end with E-/S- (BIOES/BMES) "
                 f"and {counts['open']} with B-/I-/M- (BIO)")
    places.append(styles.rarer_first("closed", "open"))
  if counts["I"] and counts["M"]:
    parts.append(f"{counts['I']} inside tags are I- (BIO/BIOES) and "
                 f"{counts['M']} are M- (BMES)")
    places.append(styles.rarer_first("I", "M"))
  if not parts:
    return
  warnings.add(
      data_warnings.MIXED_TAG_SCHEMES, places[0],
      f"{path} mixes tag schemes: {'; '.join(parts)}; first of the rarer "
      f"kind at {', '.join(places)}. Entities are read with conlleval rules; "
      f"check that the tags are what you meant.", counts=dict(counts))
