"""Reader for unlabelled text: one sentence to predict per line.

Pure Python: never imports TensorFlow.
"""

from typing import Optional

from trainer.data.formats import reader_common
from trainer.data import word_splitting
from trainer.data.formats.reader_common import Sentence


def read_text(path: str,
              word_splitter: Optional[word_splitting.WordSplitter] = None
             ) -> list[Sentence]:
  """Reads one unlabelled sentence per line.

  Tokens come from `word_splitter(line)` or `default_word_splitter`; empty
  and whitespace-only lines are skipped but counted in line numbers.

  Example:
    'x\\n\\n北京 is big.\\n' -> [Sentence(('x',), None, 'p:1', 'x', ((0, 1),)),
        Sentence(('北', '京', 'is', 'big', '.'), None, 'p:3', '北京 is big.',
                 ((0, 1), (1, 2), (3, 5), (6, 9), (9, 10)))]

  Raises:
    ValueError: if the splitter returns no words for a non-empty line or
      words that are not substrings of it, naming file:line.
  """
  splitter = word_splitter or word_splitting.default_word_splitter
  sentences = []
  for number, line in enumerate(reader_common.read_lines(path), start=1):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    tokens = tuple(splitter(line))
    if not tokens:
      raise ValueError(f"{where}: the word splitter returned no words for "
                       f"the non-empty line {line[:80]!r}.")
    sentences.append(Sentence(
        tokens=tokens, tags=None, source=where, text=line,
        char_spans=word_splitting.token_char_spans(line, tokens, where)))
  return reader_common.check_not_empty(sentences, path)
