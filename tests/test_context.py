"""Tests for trainer.features.context (document neighbours as context; pure
Python).
"""


import pytest

from tests.import_checks import assert_imports_without_tensorflow
from tests.reader_fixtures import write
from trainer.features import context
from trainer.data.formats import conll_reader
from trainer.features.windows import NO_CONTEXT
from trainer.features.windows import SentenceContext
from trainer.data.formats.reader_common import Sentence


class LowerTokenizer:
  """One lower-cased piece per word, "##s" split off plurals; counts calls."""

  def __init__(self):
    self.calls = []

  def tokenize_word(self, word):
    self.calls.append(word)
    word = word.lower()
    if word.endswith("s") and len(word) > 3:
      return [word[:-1], "##s"]
    return [word]


def _sentence(text, document_id=None):
  return Sentence(tuple(text.split()), None, "f:1", document_id=document_id)


# The module docstring's example: the third sentence starts document 2.
DOCUMENTS = [_sentence("EU rejects German call", 1),
             _sentence("Peter Blackburn", 1),
             _sentence("BRUSSELS", 2)]


def _contexts(sentences, pieces, scope="document"):
  return [found for _, found in context.sentences_with_context(
      sentences, LowerTokenizer(), pieces, scope)]


def test_document_scope_stops_at_a_new_document():
  assert _contexts(DOCUMENTS, 3) == [
      SentenceContext((), ("peter", "blackburn")),
      SentenceContext(("##s", "german", "call"), ()),
      SentenceContext((), ())]


def test_file_scope_crosses_documents():
  assert _contexts(DOCUMENTS, 3, "file") == [
      SentenceContext((), ("peter", "blackburn", "brussel")),
      SentenceContext(("##s", "german", "call"), ("brussel", "##s")),
      SentenceContext(("call", "peter", "blackburn"), ())]


def test_context_crosses_several_short_sentences_nearest_first():
  sentences = [_sentence(text) for text in ("a b", "c", "d e", "f", "g h i")]
  assert _contexts(sentences, 4)[2] == SentenceContext(("a", "b", "c"),
                                                       ("f", "g", "h", "i"))
  assert _contexts(sentences, 2)[2] == SentenceContext(("b", "c"), ("f", "g"))
  assert _contexts(sentences, 2)[4] == SentenceContext(("e", "f"), ())


def test_zero_pieces_is_no_context_with_the_same_word_pieces():
  tokenizer = LowerTokenizer()
  pairs = list(context.sentences_with_context(DOCUMENTS, tokenizer, 0))
  assert [found for _, found in pairs] == [NO_CONTEXT] * 3
  assert [pieces for pieces, _ in pairs] == [
      [["eu"], ["reject", "##s"], ["german"], ["call"]],
      [["peter"], ["blackburn"]], [["brussel", "##s"]]]


def test_each_sentence_is_tokenized_once_and_only_when_needed():
  tokenizer = LowerTokenizer()
  sentences = [_sentence(text) for text in ("a b", "c d", "e", "f g")]
  stream = context.with_context([s.tokens for s in sentences], [0] * 4,
                                tokenizer, 3)
  first = next(stream)
  # The first sentence's right context needs only the next two sentences.
  assert first == ([["a"], ["b"]], SentenceContext((), ("c", "d", "e")))
  assert tokenizer.calls == ["a", "b", "c", "d", "e"]
  rest = list(stream)
  assert tokenizer.calls == ["a", "b", "c", "d", "e", "f", "g"]
  assert [found for _, found in rest] == [
      SentenceContext(("a", "b"), ("e", "f", "g")),
      SentenceContext(("b", "c", "d"), ("f", "g")),
      SentenceContext(("c", "d", "e"), ())]


def test_a_sentence_without_words_passes_context_through():
  sentences = [_sentence("a"), _sentence(""), _sentence("b")]
  assert _contexts(sentences, 2) == [SentenceContext((), ("b",)),
                                     SentenceContext(("a",), ("b",)),
                                     SentenceContext(("a",), ())]


@pytest.mark.parametrize("document_ids, scope, runs", [
    ([1, 1, 2, None, None], "document", [0, 0, 1, 2, 2]),
    (["a", "b", "a"], "document", [0, 1, 2]),
    ([None, None], "document", [0, 0]),
    ([1, 1, 2], "file", [0, 0, 0]),
    ([], "document", []),
])
def test_document_runs(document_ids, scope, runs):
  assert context.document_runs(document_ids, scope) == runs


def test_conll_docstart_stops_context_and_file_scope_crosses_it(tmp_path):
  path = write(tmp_path, "a.conll",
               "-DOCSTART- O\n\nEU B-ORG\n\nrejects O\n\n-DOCSTART- O\n\n"
               "Peter B-PER\n")
  sentences = conll_reader.read_conll(path)
  assert _contexts(sentences, 5) == [SentenceContext((), ("reject", "##s")),
                                     SentenceContext(("eu",), ()),
                                     SentenceContext((), ())]
  assert _contexts(sentences, 5, "file")[1:] == [
      SentenceContext(("eu",), ("peter",)),
      SentenceContext(("eu", "reject", "##s"), ())]


def test_context_from_words_keeps_the_nearest_pieces():
  tokenizer = LowerTokenizer()
  assert context.context_from_words(["The", "UN", "meets"], ["in", "Rome"],
                                    tokenizer, 2) == SentenceContext(
                                        ("meet", "##s"), ("in", "rome"))
  assert context.context_from_words(["UN"], [], tokenizer, 5) == (
      SentenceContext(("un",), ()))
  assert context.context_from_words(["a"], ["b"], tokenizer, 0) == NO_CONTEXT


@pytest.mark.parametrize("pieces, scope, message", [
    (-1, "document", r"--context_pieces=-1 must be an integer >= 0"),
    (1.5, "document", r"--context_pieces=1\.5 must be an integer >= 0"),
    (8, "sentence", r"--context_scope='sentence' is not one of document, "
                    r"file\."),
])
def test_bad_settings_name_the_flag(pieces, scope, message):
  with pytest.raises(ValueError, match=message):
    context.check_settings(pieces, scope)
  with pytest.raises(ValueError, match=message):
    list(context.sentences_with_context(DOCUMENTS, LowerTokenizer(), pieces,
                                        scope))


def test_importing_context_leaves_tensorflow_out():
  assert_imports_without_tensorflow("trainer.features.context")


def test_describe_counts_documents_and_flags_unmarked_files():
  assert context.describe(DOCUMENTS, 8) == (
      "up to 8 word-pieces of context per side, within 2 documents "
      "(--context_scope=document)")
  assert context.describe(DOCUMENTS, 8, "file") == (
      "up to 8 word-pieces of context per side, within 1 document "
      "(--context_scope=file)")
  assert context.describe([_sentence("a"), _sentence("b")], 4) == (
      "up to 4 word-pieces of context per side, within 1 document "
      "(--context_scope=document); the file marks no documents (no "
      "-DOCSTART- line or doc_id field), so context runs through it in file "
      "order")
