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
    """Returns the word-pieces of one input token, at least one."""
    pieces = [piece for token in self._basic.tokenize(word)
              for piece in self._wordpiece.tokenize(token)]
    return pieces or [schema.UNK_TOKEN]

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
