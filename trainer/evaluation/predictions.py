"""Writes per-word predictions as CoNLL and JSON lines (pure Python).

For each sentence the trainer has one predicted tag and one score per input
token (see `features.merge_window_outputs`). This module attaches entity
spans (from `tag_schemes.get_entities`, the one span function) with token
and character offsets.

Example: tokens ["John", "lives", "in", "New", "York"], tags
[B-PER, O, O, B-LOC, I-LOC], scores [0.9, 1, 1, 0.8, 0.6] give::

    {"tokens": [...], "tags": [...], "scores": [...],
     "text": "John lives in New York",
     "entities": [{"type": "PER", "text": "John", "start": 0, "end": 1,
                   "char_start": 0, "char_end": 4, "score": 0.9},
                  {"type": "LOC", "text": "New York", "start": 3, "end": 5,
                   "char_start": 14, "char_end": 22, "score": 0.7}]}

`end` and `char_end` are exclusive.
"""

import json
from typing import Any, Optional, Sequence, TextIO

from trainer.data import tag_schemes
from trainer.data.formats import reader_common
from trainer.data import word_splitting


def _is_cjk_or_punct(token: str) -> bool:
  # One CJK ideograph (the readers' BERT ranges), CJK symbol, full-width
  # form, or punctuation mark (the word splitter's rule, so a text splits and
  # joins alike): Chinese text puts no space around them.
  if len(token) != 1:
    return False
  codepoint = ord(token)
  return (word_splitting.is_chinese_char(codepoint)
          or 0x3000 <= codepoint <= 0x303F or 0xFF00 <= codepoint <= 0xFFEF
          or word_splitting.is_punctuation(token))


def join_tokens(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
  """Rebuilds a text from tokens; returns (text, [(char_start, char_end)]).

  Character-level sentences (every token one character, at least one of them
  CJK) are joined without spaces, as Chinese is written; otherwise tokens are
  joined with one space, except between two CJK characters or full-width
  punctuation marks.

  Examples:
    ["北", "京", "有", "4", "2", "人"] -> "北京有42人"
    ["EU", "rejects", "German", "call"] -> "EU rejects German call"
  """
  character_level = (all(len(token) == 1 for token in tokens)
                     and any(_is_cjk_or_punct(token) for token in tokens))
  pieces, spans, position = [], [], 0
  for index, token in enumerate(tokens):
    if index and not character_level and not (
        _is_cjk_or_punct(tokens[index - 1]) and _is_cjk_or_punct(token)):
      pieces.append(" ")
      position += 1
    spans.append((position, position + len(token)))
    pieces.append(token)
    position += len(token)
  return "".join(pieces), spans


def sentence_record(sentence: reader_common.Sentence, tags: Sequence[str],
                    scores: Sequence[float]) -> dict[str, Any]:
  """JSON-ready dict for one sentence (see the module docstring).

  Args:
    sentence: `reader_common.Sentence` (tokens, optional original text and
    spans). tags: list of str, one per token.
    scores: list of float, probability of each chosen tag.
  """
  if sentence.text is not None and sentence.char_spans is not None:
    text, spans = sentence.text, list(sentence.char_spans)
  else:
    text, spans = join_tokens(sentence.tokens)
  entities = []
  for entity_type, start, end in tag_schemes.get_entities(tags):
    char_start, char_end = spans[start][0], spans[end - 1][1]
    entities.append({
        "type": entity_type,
        "text": text[char_start:char_end],
        "start": start,
        "end": end,
        "char_start": char_start,
        "char_end": char_end,
        "score": round(sum(scores[start:end]) / (end - start), 6),
    })
  return {
      "source": sentence.source,
      "text": text,
      "tokens": list(sentence.tokens),
      "tags": list(tags),
      "scores": [round(float(s), 6) for s in scores],
      "entities": entities,
  }


def write_predictions(sentences: Sequence[reader_common.Sentence],
                      predicted_tags: Sequence[Sequence[str]],
                      predicted_scores: Sequence[Sequence[float]],
                      conll: TextIO, jsonl: Optional[TextIO]
                      ) -> tuple[int, int]:
  """Writes `predictions.conll` and `predictions.jsonl` to open text files.

  `jsonl` may be None (the dev split's eval_predictions.conll has no jsonl).

  The caller opens the files (the trainer uses `tf.io.gfile.GFile`, so
  gs:// output works; this module stays free of TensorFlow).

  CoNLL lines are ``token gold predicted`` (``token predicted`` when the input
  had no gold tags), a blank line after each sentence.

  Returns:
    (number of sentences, number of tokens) written.

  Raises:
    ValueError: when a sentence has a different number of predictions than
      tokens (every input token must get exactly one tag).
  """
  num_tokens = 0
  for sentence, tags, scores in zip(sentences, predicted_tags,
                                    predicted_scores, strict=True):
    if len(tags) != len(sentence.tokens):
      raise ValueError(f"{sentence.source}: {len(sentence.tokens)} tokens "
                       f"but {len(tags)} predicted tags")
    for index, token in enumerate(sentence.tokens):
      columns = [token]
      if sentence.tags is not None:
        columns.append(sentence.tags[index])
      columns.append(tags[index])
      conll.write(" ".join(columns) + "\n")
    conll.write("\n")
    if jsonl is not None:
      jsonl.write(json.dumps(sentence_record(sentence, tags, scores),
                             ensure_ascii=False) + "\n")
    num_tokens += len(tags)
  return len(sentences), num_tokens
