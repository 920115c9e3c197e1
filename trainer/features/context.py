"""Picks each sentence's document context: word-pieces of its neighbours.

With ``--context_pieces N`` the model reads every sentence with up to N
word-pieces of the sentences before it and up to N of those after it, in the
same document (FLERT, Schweter and Akbik 2020; the BERT paper's "maximal
document context"). Labels and predictions stay on the sentence's own words:
`features.convert_sentence` gives context pieces label -1, word position -1
and score 0, and fits them in the room a window has left.

Documents (``--context_scope``):
  document  consecutive sentences with the same `Sentence.document_id` are
            one document (CoNLL `-DOCSTART-`, a JSON-lines `doc_id`); a file
            that marks none (ids all None) is one document, in file order.
  file      the whole file is one document; boundaries are ignored.

Example (N=3, uncased pieces; the third sentence starts a new document)::

    document_id  1                        1                  2
    pieces       eu rejects german call   peter blackburn    brussels
    scope document:
      sentence 0: left ()                       right (peter, blackburn)
      sentence 1: left (rejects, german, call)  right ()
      sentence 2: left ()                       right ()
    scope file: sentence 1 right (brussels,),
                sentence 2 left (call, peter, blackburn)

Left context is the pieces nearest the sentence (the end of what came
before), right context the start of what follows; both may cross several
short sentences.

Pure Python: never imports TensorFlow.
"""

import collections
from typing import Hashable, Iterator, Optional, Sequence

from trainer.features.windows import NO_CONTEXT
from trainer.features.windows import SentenceContext
from trainer.features.windows import WordPieceTokenizer
from trainer.data.formats.reader_common import Sentence

CONTEXT_SCOPES = ("document", "file")
DEFAULT_CONTEXT_SCOPE = "document"

# The pieces of one sentence: one list of word-pieces per word.
WordPieces = list[list[str]]


def check_settings(context_pieces: int, context_scope: str) -> None:
  """Raises ValueError naming the flag unless the settings are usable.

  Example: check_settings(-1, "document") -> ValueError: --context_pieces=-1
  must be >= 0 (0: no context, one sentence at a time).
  """
  if (not isinstance(context_pieces, int) or isinstance(context_pieces, bool)
      or context_pieces < 0):
    raise ValueError(f"--context_pieces={context_pieces!r} must be an integer "
                     ">= 0 (0: no context, one sentence at a time).")
  if context_scope not in CONTEXT_SCOPES:
    raise ValueError(f"--context_scope={context_scope!r} is not one of "
                     f"{', '.join(CONTEXT_SCOPES)}.")


def document_runs(document_ids: Sequence[Optional[Hashable]],
                  context_scope: str) -> list[int]:
  """One run number per sentence; context never crosses between runs.

  'document': a new run starts wherever the document id differs from the
  previous sentence's (so ids "a", "b", "a" are three runs); 'file': one run.

  Example: ([1, 1, 2, None, None], "document") -> [0, 0, 1, 2, 2];
  ([1, 1, 2], "file") -> [0, 0, 0].
  """
  check_settings(0, context_scope)
  if context_scope == "file":
    return [0] * len(document_ids)
  runs, run = [], 0
  for index, document_id in enumerate(document_ids):
    if index and document_id != document_ids[index - 1]:
      run += 1
    runs.append(run)
  return runs


def with_context(token_lists: Sequence[Sequence[str]], runs: Sequence[int],
                 tokenizer: WordPieceTokenizer, context_pieces: int
                 ) -> Iterator[tuple[WordPieces, SentenceContext]]:
  """Yields (word-pieces, context) per sentence, tokenizing each one once.

  Streams: only the sentences needed for the right context are tokenized
  ahead, so memory stays small on large files.

  Args:
    token_lists: the sentences' words, in file order (a sentence may have
      none: it then gives and takes no context pieces).
    runs: one run number per sentence (`document_runs`).
    tokenizer: has `tokenize_word`.
    context_pieces: N >= 0, pieces kept on each side (0: `NO_CONTEXT`).

  Example: words [["eu", "rejects"], ["peter"]], runs [0, 0], N=1 ->
    ([["eu"], ["rejects"]], SentenceContext((), ("peter",))),
    ([["peter"]], SentenceContext(("rejects",), ())).
  """
  def pieces_of(index: int) -> WordPieces:
    return [tokenizer.tokenize_word(word) for word in token_lists[index]]

  ahead: collections.deque = collections.deque()  # tokenized, not yielded
  left: collections.deque = collections.deque(maxlen=context_pieces)
  for index in range(len(token_lists)):
    if not ahead:
      ahead.append(pieces_of(index))
    word_pieces = ahead.popleft()
    if not context_pieces:
      yield word_pieces, NO_CONTEXT
      continue
    if index and runs[index] != runs[index - 1]:
      left.clear()
    right: list[str] = []
    following = index + 1
    while (len(right) < context_pieces and following < len(token_lists)
           and runs[following] == runs[index]):
      if following - index - 1 == len(ahead):
        ahead.append(pieces_of(following))
      for pieces in ahead[following - index - 1]:
        right.extend(pieces)
      following += 1
    yield word_pieces, SentenceContext(tuple(left),
                                       tuple(right[:context_pieces]))
    left.extend(piece for pieces in word_pieces for piece in pieces)


def sentences_with_context(sentences: Sequence[Sentence],
                           tokenizer: WordPieceTokenizer, context_pieces: int,
                           context_scope: str = DEFAULT_CONTEXT_SCOPE
                           ) -> Iterator[tuple[WordPieces, SentenceContext]]:
  """`with_context` for the sentences of one file, documents by scope.

  What training, evaluation and --do_predict feed `convert_sentence`
  (`run_inputs.RunInputs`); the client's `as_document=True` uses it too.

  Raises:
    ValueError: for a negative `context_pieces` or an unknown scope.
  """
  check_settings(context_pieces, context_scope)
  runs = document_runs([s.document_id for s in sentences], context_scope)
  return with_context([s.tokens for s in sentences], runs, tokenizer,
                      context_pieces)


def context_from_words(left_words: Sequence[str], right_words: Sequence[str],
                       tokenizer: WordPieceTokenizer,
                       context_pieces: int) -> SentenceContext:
  """Context from explicit words before and after a sentence (client pairs).

  Keeps the last `context_pieces` pieces of `left_words` and the first of
  `right_words`, as `with_context` does with neighbouring sentences.

  Example (N=2): (["the", "un", "met"], ["in", "paris"]) ->
  SentenceContext(("un", "met"), ("in", "paris")).
  """
  check_settings(context_pieces, DEFAULT_CONTEXT_SCOPE)
  left: list[str] = []
  for word in reversed(left_words):
    if len(left) >= context_pieces:
      break
    left[:0] = tokenizer.tokenize_word(word)
  right: list[str] = []
  for word in right_words:
    if len(right) >= context_pieces:
      break
    right.extend(tokenizer.tokenize_word(word))
  return SentenceContext(tuple(left[max(0, len(left) - context_pieces):]),
                         tuple(right[:context_pieces]))


def describe(sentences: Sequence[Sentence], context_pieces: int,
             context_scope: str = DEFAULT_CONTEXT_SCOPE) -> str:
  """One log line saying how far context reaches in a file.

  Example: 3 sentences of documents 1, 1, 2 with N=8 -> "up to 8 word-pieces
  of context per side, within 2 documents (--context_scope=document)".
  """
  runs = document_runs([s.document_id for s in sentences], context_scope)
  documents = runs[-1] + 1 if runs else 0
  text = (f"up to {context_pieces} word-pieces of context per side, within "
          f"{documents} document{'' if documents == 1 else 's'} "
          f"(--context_scope={context_scope})")
  if (context_scope == "document"
      and all(s.document_id is None for s in sentences)):
    text += ("; the file marks no documents (no -DOCSTART- line or doc_id "
             "field), so context runs through it in file order")
  return text
