"""Word-piece tokenization glue around `bert.tokenization` (imports TensorFlow).

`bert.tokenization` imports `tensorflow.compat.v1` (for `tf.gfile`), so this is
the one data module that pulls TensorFlow in. The pure feature code
(`trainer.features.windows`) only sees the small `NerTokenizer` interface:

  ``tokenize_word(word) -> list[str]``  word-pieces of one input token, never
                                       empty ([UNK] when BERT drops the word).
  ``convert_tokens_to_ids(pieces) -> list[int]``

Example with an uncased English vocab::

    tokenizer.tokenize_word("Johanson")  ->  ["johan", "##son"]
    tokenizer.tokenize_word("\u200b")     ->  ["[UNK]"]   (BERT drops it)

`bert.tokenization.FullTokenizer` and `BasicTokenizer.tokenize` read absl's
global `FLAGS.preserve_unused_tokens`, which absl refuses to read before the
command line is parsed. This module never reads it: `_BasicTokenizer` is
BERT's basic tokenizer with `preserve_unused_tokens=False` (BERT's default,
and what the exported graph's tokenizer does), so importing or using it leaves
the process's flags untouched.
"""

import functools
from typing import Mapping, Sequence

from trainer import schema
from trainer.tf_compat import tokenization


class _BasicTokenizer(tokenization.BasicTokenizer):
  """`bert.tokenization.BasicTokenizer` without the FLAGS lookup."""

  def tokenize(self, text: str) -> list[str]:
    """Cleans, splits CJK characters and punctuation, lower-cases if asked.

    The body of BERT's `BasicTokenizer.tokenize` with `preserve_token`
    always False. Example (lower case): "Hello, 世界!" ->
    ["hello", ",", "世", "界", "!"].
    """
    text = self._clean_text(tokenization.convert_to_unicode(text))
    text = self._tokenize_chinese_chars(text)
    split_tokens = []
    for token in tokenization.whitespace_tokenize(text):
      if self.do_lower_case:
        token = self._run_strip_accents(token.lower())
      split_tokens.extend(self._run_split_on_punc(token))
    return tokenization.whitespace_tokenize(" ".join(split_tokens))


# Distinct words whose pieces a tokenizer remembers (least recently used
# forgotten first): a word's pieces depend on the word alone, and natural text
# repeats its words, so serving and feature building skip BERT's Python
# tokenizer for most words (about 40 microseconds a word on a 2-core Xeon).
WORD_CACHE_SIZE = 1 << 17


class NerTokenizer:
  """BERT's FullTokenizer applied one input token (word) at a time."""

  def __init__(self, vocab_file: str, do_lower_case: bool):
    """Loads `vocab_file` (one piece per line) and sets lower-casing.

    Raises:
      ValueError: if the vocab lacks [CLS], [SEP] or [UNK].
    """
    self.vocab_file = vocab_file
    self.do_lower_case = do_lower_case
    self._vocab = tokenization.load_vocab(vocab_file)
    self._basic = _BasicTokenizer(do_lower_case=do_lower_case,
                                  vocab=self._vocab)
    self._wordpiece = tokenization.WordpieceTokenizer(vocab=self._vocab)
    self._cached_pieces = self._new_cache()
    for token in (schema.CLS_TOKEN, schema.SEP_TOKEN, schema.UNK_TOKEN):
      if token not in self._vocab:
        raise ValueError(
            f"Vocabulary {vocab_file} has no {token} token; a BERT vocab "
            "needs [PAD], [UNK], [CLS] and [SEP].")

  @property
  def vocab(self) -> Mapping[str, int]:
    """Ordered dict piece -> id."""
    return self._vocab

  def tokenize_word(self, word: str) -> list[str]:
    """Returns the word-pieces of one input token, at least one (a new list
    each call; the last `WORD_CACHE_SIZE` distinct words are remembered)."""
    return list(self._cached_pieces(word))

  def _pieces(self, word: str) -> tuple[str, ...]:
    pieces = tuple(piece for token in self._basic.tokenize(word)
                   for piece in self._wordpiece.tokenize(token))
    return pieces or (schema.UNK_TOKEN,)

  def __getstate__(self):
    # The cache wraps a bound method, which does not pickle (Beam and
    # multiprocessing ship tokenizers to workers): it is rebuilt empty.
    state = dict(self.__dict__)
    del state["_cached_pieces"]
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._cached_pieces = self._new_cache()

  def _new_cache(self):
    """`_pieces`, remembering the last `WORD_CACHE_SIZE` distinct words."""
    return functools.lru_cache(maxsize=WORD_CACHE_SIZE)(self._pieces)

  def cached_words(self) -> int:
    """How many distinct words' pieces are remembered now."""
    return self._cached_pieces.cache_info().currsize

  def convert_tokens_to_ids(self, pieces: Sequence[str]) -> list[int]:
    """Maps pieces to ids (pieces come from `tokenize_word` or the specials)."""
    return tokenization.convert_by_vocab(self._vocab, pieces)


def basic_tokenizer(do_lower_case: bool) -> tokenization.BasicTokenizer:
  """BERT's BasicTokenizer (cleaning, CJK and punctuation splitting, case)."""
  return _BasicTokenizer(do_lower_case=do_lower_case)


def validate_case_matches_checkpoint(do_lower_case: bool,
                                     init_checkpoint: str) -> None:
  """Raises ValueError when --do_lower_case contradicts a known checkpoint name.

  Delegates to `bert.tokenization` (e.g. `uncased_L-12_H-768_A-12` needs
  --do_lower_case=True, `cased_L-12_H-768_A-12` needs False).
  """
  tokenization.validate_case_matches_checkpoint(do_lower_case, init_checkpoint)
