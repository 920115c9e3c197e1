"""NerTokenizer: BERT's word-pieces one word at a time, without touching FLAGS.
"""

from absl import flags
import pytest

from trainer.features import tokenization
from trainer.tf_compat import tokenization as bert_tokenization

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "johan",
         "##son", "paris", "世", "界", ",", "!", "cafe"]
TEXTS = ["Johanson", "Paris!", "世界,", "Café", "\u200b", "[unused0]",
         "unknown", "JOHANSON paris"]


@pytest.fixture()
def vocab_file(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_text("".join(piece + "\n" for piece in VOCAB), encoding="utf-8")
  return str(path)


def test_word_pieces_and_ids(vocab_file):
  tokenizer = tokenization.NerTokenizer(vocab_file, do_lower_case=True)
  assert tokenizer.tokenize_word("Johanson") == ["johan", "##son"]
  assert tokenizer.tokenize_word("Paris!") == ["paris", "!"]
  assert tokenizer.tokenize_word("世界,") == ["世", "界", ","]
  assert tokenizer.tokenize_word("Café") == ["cafe"]  # accent stripped
  assert tokenizer.tokenize_word("\u200b") == ["[UNK]"]  # BERT drops it
  assert tokenizer.tokenize_word("unknown") == ["[UNK]"]
  assert tokenizer.convert_tokens_to_ids(["[CLS]", "johan", "##son"]) == [
      2, 6, 7]
  assert list(tokenizer.vocab) == VOCAB
  cased = tokenization.NerTokenizer(vocab_file, do_lower_case=False)
  assert cased.tokenize_word("Paris") == ["[UNK]"]


def test_basic_tokenizer():
  assert tokenization.basic_tokenizer(True).tokenize("Hello, 世界!") == [
      "hello", ",", "世", "界", "!"]
  assert tokenization.basic_tokenizer(False).tokenize("Café") == ["Café"]


def test_importing_and_using_leaves_flags_unparsed(vocab_file):
  flags.FLAGS.unparse_flags()
  tokenizer = tokenization.NerTokenizer(vocab_file, do_lower_case=True)
  tokenizer.tokenize_word("Johanson")
  tokenization.basic_tokenizer(True).tokenize("Paris")
  assert not flags.FLAGS.is_parsed()


def test_same_pieces_as_berts_full_tokenizer(vocab_file):
  ours = tokenization.NerTokenizer(vocab_file, do_lower_case=True)
  ours_pieces = [ours.tokenize_word(text) for text in TEXTS]
  flags.FLAGS.mark_as_parsed()  # BERT's tokenizer reads a flag
  try:
    theirs = bert_tokenization.FullTokenizer(vocab_file, do_lower_case=True)
    theirs_pieces = [theirs.tokenize(text) or ["[UNK]"] for text in TEXTS]
  finally:
    flags.FLAGS.unparse_flags()
  assert ours_pieces == theirs_pieces


def test_vocab_without_special_tokens(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_text("[PAD]\n[UNK]\n[SEP]\nparis\n", encoding="utf-8")
  with pytest.raises(ValueError, match=r"vocab\.txt has no \[CLS\] token"):
    tokenization.NerTokenizer(str(path), do_lower_case=True)


def test_case_must_match_a_known_checkpoint_name():
  with pytest.raises(ValueError, match="uncased_L-12_H-768_A-12"):
    tokenization.validate_case_matches_checkpoint(
        False, "ckpt/uncased_L-12_H-768_A-12/bert_model.ckpt")
  tokenization.validate_case_matches_checkpoint(
      True, "ckpt/uncased_L-12_H-768_A-12/bert_model.ckpt")


def test_remembered_words_give_fresh_equal_lists_and_pickle(
    vocab_file, monkeypatch):
  import pickle  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(tokenization, "WORD_CACHE_SIZE", 2)
  tokenizer = tokenization.NerTokenizer(vocab_file, do_lower_case=True)
  first = tokenizer.tokenize_word("Johanson")
  first.append("changed by the caller")
  assert tokenizer.tokenize_word("Johanson") == ["johan", "##son"]
  assert tokenizer.cached_words() == 1
  calls = []
  monkeypatch.setattr(tokenizer._basic, "tokenize",
                      lambda text: calls.append(text) or ["paris"])
  assert tokenizer.tokenize_word("Johanson") == ["johan", "##son"]
  assert tokenizer.tokenize_word("Paris") == ["paris"]
  assert calls == ["Paris"]  # remembered: BERT's tokenizer ran once
  # Bounded: a third word pushes out the least recently used one.
  tokenizer.tokenize_word("x")
  assert tokenizer.cached_words() == 2
  monkeypatch.undo()
  copy = pickle.loads(pickle.dumps(
      tokenization.NerTokenizer(vocab_file, do_lower_case=True)))
  assert copy.cached_words() == 0
  assert copy.tokenize_word("Paris!") == ["paris", "!"]
