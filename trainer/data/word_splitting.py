"""Raw text to words, the way BERT's BasicTokenizer splits it, with offsets.

`default_word_splitter` cuts a line into words (every CJK character and every
punctuation character alone, other text on whitespace) without changing case
or characters, so `token_char_spans` can find every word in the original line.
The text reader, the prediction writer and the serving client all use these,
so a sentence is split the same way at training and at serving time.

Pure Python: never imports TensorFlow.
"""

import unicodedata
from typing import Callable, Sequence

# line -> words; every word must be a substring of the line, in order.
WordSplitter = Callable[[str], Sequence[str]]


def is_chinese_char(codepoint: int) -> bool:
  """CJK ideograph test; the ranges of BERT's `_is_chinese_char`.

  Example: ord('中') -> True, ord('a') -> False, ord('ｶ') -> False.
  """
  return (0x4E00 <= codepoint <= 0x9FFF or 0x3400 <= codepoint <= 0x4DBF or
          0x20000 <= codepoint <= 0x2A6DF or 0x2A700 <= codepoint <= 0x2B73F or
          0x2B740 <= codepoint <= 0x2B81F or 0x2B820 <= codepoint <= 0x2CEAF or
          0xF900 <= codepoint <= 0xFAFF or 0x2F800 <= codepoint <= 0x2FA1F)


def is_punctuation(character: str) -> bool:
  """BERT's `tokenization._is_punctuation`: ASCII symbols count too ('$').

  Example: ',' -> True, '$' -> True, '“' -> True, 'a' -> False.
  """
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
    elif is_chinese_char(ord(character)) or is_punctuation(character):
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
