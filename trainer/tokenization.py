"""Word-piece tokenization glue around `bert.tokenization` (imports TensorFlow).

`bert.tokenization` imports `tensorflow.compat.v1` (for `tf.gfile`), so this is
the one data module that pulls TensorFlow in. The pure feature code
(`trainer.features`) only sees the small `NerTokenizer` interface:

  ``tokenize_word(word) -> list[str]``  word-pieces of one input token, never
                                       empty ([UNK] when BERT drops the word).
  ``convert_tokens_to_ids(pieces) -> list[int]``

Example with an uncased English vocab::

    tokenizer.tokenize_word("Johanson")  ->  ["johan", "##son"]
    tokenizer.tokenize_word("\u200b")     ->  ["[UNK]"]   (BERT drops it)
"""

from absl import flags

from trainer import schema
from trainer.tf_compat import tokenization


def _ensure_bert_flags_readable():
  # bert.tokenization reads FLAGS.preserve_unused_tokens on every call; absl
  # refuses to read flags before parsing, which is the state in library use
  # and tests. Marking the (default-valued) flags parsed keeps the default.
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class NerTokenizer:
  """BERT's FullTokenizer applied one input token (word) at a time."""

  def __init__(self, vocab_file, do_lower_case):
    """Loads `vocab_file` (one piece per line) and sets lower-casing."""
    _ensure_bert_flags_readable()
    self.vocab_file = vocab_file
    self.do_lower_case = do_lower_case
    self._tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case)
    for token in (schema.CLS_TOKEN, schema.SEP_TOKEN, schema.UNK_TOKEN):
      if token not in self._tokenizer.vocab:
        raise ValueError(
            "Vocabulary %s has no %s token; a BERT vocab needs [PAD], [UNK], "
            "[CLS] and [SEP]." % (vocab_file, token))

  @property
  def vocab(self):
    """Ordered dict piece -> id."""
    return self._tokenizer.vocab

  def tokenize_word(self, word):
    """Returns the word-pieces of one input token, at least one."""
    return self._tokenizer.tokenize(word) or [schema.UNK_TOKEN]

  def convert_tokens_to_ids(self, pieces):
    """Maps pieces to ids (pieces come from `tokenize_word` or the specials)."""
    return self._tokenizer.convert_tokens_to_ids(pieces)


def basic_tokenizer(do_lower_case):
  """BERT's BasicTokenizer (cleaning, CJK and punctuation splitting, case)."""
  _ensure_bert_flags_readable()
  return tokenization.BasicTokenizer(do_lower_case=do_lower_case)


def validate_case_matches_checkpoint(do_lower_case, init_checkpoint):
  """Raises ValueError when --do_lower_case contradicts a known checkpoint name.

  Delegates to `bert.tokenization` (e.g. `uncased_L-12_H-768_A-12` needs
  --do_lower_case=True, `cased_L-12_H-768_A-12` needs False).
  """
  tokenization.validate_case_matches_checkpoint(do_lower_case, init_checkpoint)
