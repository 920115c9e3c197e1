"""Client for the exported NER model: raw texts in, entities out.

    client = NerClient("localhost:8500", export_dir="output/export")
    client.predict(["张三在北京工作。"])
    -> [[{"type": "PER", "text": "张三", "start": 0, "end": 2, "score": 0.99},
         {"type": "LOC", "text": "北京", "start": 3, "end": 5, "score": 0.98}]]

`start`/`end` are character offsets into the text (`end` exclusive).

The client turns texts into requests and answers into entities with the
trainer's own code (`serving.client.request_codec`: no train/serve skew) and
sends them through a transport (`serving.client.transports`: gRPC, REST or in
process). Vocab, labels and settings come from the export's assets
(`export_dir`) or are given as paths. With `signature="predict_text"`
(character-level models) the server does the tokenization and the client needs
no assets.

CLI (JSON lines out, one object per text)::

    python -m serving.client --server localhost:8500 --model_name ner \
        --export_dir output/export --text "张三在北京工作。"
"""

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from serving.client import request_codec
from serving.client import transports
from trainer.export import export_versions
from trainer import schema
from serving.client.errors import PredictionError

CLIENT_SIGNATURES = (schema.SERVING_DEFAULT_SIGNATURE,
                     schema.PREDICT_EXAMPLES_SIGNATURE,
                     schema.PREDICT_TEXT_SIGNATURE)


def read_export_assets(export_dir: str) -> Tuple[str, str, Dict[str, Any]]:
  """Returns (vocab_file, labels_file, ner_config dict) of an export.

  Example: "out/export" with versions 1 and 3 -> ("out/export/3/assets/
  vocab.txt", "out/export/3/assets/labels.txt", {"max_seq_length": 128, ...}).
  """
  version_dir = export_versions.latest_version_dir(export_dir)
  with open(os.path.join(version_dir, schema.ASSETS_EXTRA_DIRNAME,
                         schema.NER_CONFIG_FILENAME), encoding="utf-8") as f:
    ner_config = json.load(f)
  assets = os.path.join(version_dir, schema.ASSETS_DIRNAME)
  return (os.path.join(assets, schema.VOCAB_FILENAME),
          os.path.join(assets, schema.LABELS_FILENAME), ner_config)


class NerClient:
  """Turns texts into entities with a served NER model.

  Args:
    target: "host:port" of TF Serving (gRPC port for "grpc", REST port for
      "rest"; "http://host:port" also works for REST). Ignored when
      `transport` is given.
    model_name: the served model's name (`--model_name` of the server).
    export_dir: an export base (or version) folder: vocab, labels and
      settings are read from its assets. Or give the next three.
    vocab_file, labels_file: the model's vocab and label list.
    ner_config: dict with max_seq_length, doc_stride, do_lower_case and
      context_pieces (as in `assets.extra/ner_config.json`); overrides the
      export's.
    protocol: "grpc" or "rest".
    signature: "predict_examples" (default: windows as tf.Examples with
      word_positions, exact for every head), "serving_default" (id tensors;
      word starts derived from ids in the graph) or "predict_text"
      (character-level models; the server tokenizes, no assets needed).
    timeout_s: deadline of each request, seconds.
    max_retries: retries of a request answered UNAVAILABLE (server starting,
      connection refused), with backoff `backoff_s * 2**attempt` seconds.
    batch_size: windows (or, for predict_text, texts) per request.
    request_overhead_pieces: windows are sorted by length and grouped into
      requests that minimize padded word-pieces plus this many per request
      (`request_codec.length_batches`; default
      `request_codec.DEFAULT_REQUEST_OVERHEAD_PIECES`); None sends them in
      order, `batch_size` at a time. Tags are the same either way.
    version: a model version to pin; default the latest the server has.
    word_splitter: text -> words; default `readers.default_word_splitter`
      (what `run_ner.py` uses for raw text).
    transport: an object with `predict(signature, inputs)`, e.g.
      `transports.SavedModelTransport`; default built from `protocol` and
      `target`.
  """

  def __init__(self, target: Optional[str] = None,
               model_name: str = schema.DEFAULT_MODEL_NAME, *,
               export_dir: Optional[str] = None,
               vocab_file: Optional[str] = None,
               labels_file: Optional[str] = None,
               ner_config: Optional[Dict[str, Any]] = None,
               protocol: str = transports.GRPC,
               signature: str = schema.PREDICT_EXAMPLES_SIGNATURE,
               timeout_s: float = 10.0, max_retries: int = 3,
               backoff_s: float = 0.1, batch_size: int = 32,
               version: Optional[int] = None, word_splitter=None,
               transport=None,
               request_overhead_pieces: Optional[int] = (
                   request_codec.DEFAULT_REQUEST_OVERHEAD_PIECES)):
    transports.check_protocol(protocol)
    if signature not in CLIENT_SIGNATURES:
      raise ValueError(f"signature={signature!r}; use one of "
                       f"{', '.join(CLIENT_SIGNATURES)}.")
    if batch_size < 1 or timeout_s <= 0 or max_retries < 0:
      raise ValueError("Need batch_size >= 1, timeout_s > 0, max_retries >= "
                       f"0; got {batch_size!r}, {timeout_s!r}, "
                       f"{max_retries!r}.")
    if request_overhead_pieces is not None and request_overhead_pieces < 0:
      raise ValueError("Need request_overhead_pieces >= 0 (or None to keep "
                       f"the request order); got {request_overhead_pieces!r}.")
    self.request_overhead_pieces = request_overhead_pieces
    self.signature = signature
    self.batch_size = batch_size
    self._word_splitter = word_splitter
    config = {}
    if export_dir:
      vocab_path, labels_path, config = read_export_assets(export_dir)
      vocab_file = vocab_file or vocab_path
      labels_file = labels_file or labels_path
    config.update(ner_config or {})
    self.ner_config = config
    self._tokenizer = None
    self.label_names = None
    if signature != schema.PREDICT_TEXT_SIGNATURE:
      self._load_word_piece_assets(vocab_file, labels_file, config)
    if transport is None:
      if not target:
        raise ValueError("NerClient needs a target 'host:port' (or a "
                         "transport).")
      transport = transports.make_transport(
          protocol, target, model_name, timeout_s, max_retries, backoff_s,
          version)
    self._transport = transport

  def _load_word_piece_assets(self, vocab_file: Optional[str],
                              labels_file: Optional[str],
                              config: Dict[str, Any]) -> None:
    """Tokenizer, labels and window settings the windowed signatures need."""
    missing = [name for name, value in (
        ("vocab_file", vocab_file), ("labels_file", labels_file),
        ("max_seq_length", config.get("max_seq_length")),
        ("do_lower_case", config.get("do_lower_case"))) if value is None]
    if missing:
      raise ValueError(
          f"NerClient with signature {self.signature} needs "
          f"{', '.join(missing)}: pass export_dir (its assets hold them), or "
          "vocab_file, labels_file and ner_config; or use "
          f"signature={schema.PREDICT_TEXT_SIGNATURE} (character-level "
          "models).")
    # Imported here: word-piece tokenization pulls in TensorFlow.
    from trainer.data import labels as labels_lib  # pylint: disable=g-import-not-at-top
    from trainer.features import tokenization  # pylint: disable=g-import-not-at-top
    self._tokenizer = tokenization.NerTokenizer(
        vocab_file, bool(config["do_lower_case"]))
    self.label_names = labels_lib.read_labels_file(labels_file)
    self.max_seq_length = int(config["max_seq_length"])
    self.doc_stride = int(config.get("doc_stride")
                          or max(1, self.max_seq_length // 2))
    # Document context pieces per side the model was trained with (0: none).
    self.context_pieces = int(config.get("context_pieces") or 0)

  def _check_context(self, num_texts: int, context: Optional[Sequence[Any]],
                     as_document: bool) -> bool:
    """True when the request asks for document context; refuses bad asks."""
    if context is None and not as_document:
      return False
    if context is not None and as_document:
      raise ValueError("Give context pairs or as_document=True, not both.")
    if self.signature != schema.PREDICT_EXAMPLES_SIGNATURE:
      raise ValueError(
          f"Document context needs signature="
          f"{schema.PREDICT_EXAMPLES_SIGNATURE}: {self.signature} cannot mark "
          "context pieces as 'no word' (serving_default derives word starts "
          "from the ids; predict_text tags one sentence at a time).")
    if not self.context_pieces:
      raise ValueError(
          "Document context asked for, but the model's ner_config has "
          "context_pieces 0 (trained one sentence at a time); pass "
          "ner_config={'context_pieces': N} to send N pieces per side anyway.")
    if context is not None and len(context) != num_texts:
      raise ValueError(f"Got {len(context)} context pairs for {num_texts} "
                       "texts; give one (left_text, right_text) per text.")
    return True

  def predict_records(self, texts: Sequence[str],
                      context: Optional[Sequence[Tuple[str, str]]] = None, *,
                      as_document: bool = False) -> List[Dict[str, Any]]:
    """Full per-text records: text, tokens, tags, scores, entities (with
    token `start`/`end` and `char_start`/`char_end`), as predictions.jsonl.

    Document context (a model trained with --context_pieces N, signature
    predict_examples): `context` gives one (left_text, right_text) pair per
    text, or `as_document=True` reads consecutive texts as one document, as
    --do_predict reads a predict file's sentences. Up to N word-pieces per
    side are fed around each text; they get no prediction.

    Example: client.predict_records(["Peter Blackburn", "BRUSSELS 1996"],
    as_document=True) -> two records, each text seeing the other.
    """
    texts = list(texts)
    with_context = self._check_context(len(texts), context, as_document)
    if self.signature == schema.PREDICT_TEXT_SIGNATURE:
      records = []
      for chunk in request_codec.text_batches(texts, self.batch_size):
        outputs = self._transport.predict(self.signature,
                                          request_codec.text_inputs(chunk))
        records.extend(request_codec.records_from_text_outputs(chunk,
                                                               outputs))
      return records
    sentences = request_codec.sentences_from_texts(texts, self._word_splitter)
    contexts = None
    if with_context and as_document:
      contexts = request_codec.document_contexts(sentences, self._tokenizer,
                                                 self.context_pieces)
    elif with_context:
      contexts = request_codec.pair_contexts(
          context, self._tokenizer, self.context_pieces, self._word_splitter)
    return self.records_for_sentences(sentences, contexts)

  def records_for_sentences(self, sentences: Sequence[Any],
                            contexts: Optional[Sequence[Any]] = None
                            ) -> List[Dict[str, Any]]:
    """`predict_records` for sentences already split into words.

    Args:
      sentences: `reader_common.Sentence`s, e.g. a labelled file's (its gold
        tokens become the words, so tags line up with gold tags).
      contexts: optional `SentenceContext` per sentence.

    Returns:
      One record per sentence, as `predict_records`.

    Raises:
      ValueError: with the predict_text signature, which takes raw text.
    """
    if self.signature == schema.PREDICT_TEXT_SIGNATURE:
      raise ValueError("records_for_sentences needs a windowed signature "
                       f"({schema.PREDICT_EXAMPLES_SIGNATURE} or "
                       f"{schema.SERVING_DEFAULT_SIGNATURE}), not "
                       f"{self.signature}.")
    windows = request_codec.build_windows(sentences, self._tokenizer,
                                          self.max_seq_length, self.doc_stride,
                                          contexts)
    merged_inputs = [None] * len(windows)
    for group in request_codec.length_batches(
        [len(window.input_ids) for window in windows], self.batch_size,
        self.request_overhead_pieces):
      chunk = [windows[index] for index in group]
      outputs = self._transport.predict(
          self.signature, request_codec.window_inputs(chunk, self.signature))
      for index, merged in zip(group, request_codec.window_outputs_for_merge(
          chunk, outputs)):
        merged_inputs[index] = merged
    return request_codec.records_from_window_outputs(sentences, merged_inputs,
                                                     self.label_names)

  def predict(self, texts: Sequence[str],
              context: Optional[Sequence[Tuple[str, str]]] = None, *,
              as_document: bool = False) -> List[List[Dict[str, Any]]]:
    """For each text, a list of {type, text, start, end, score} entities.

    `context` and `as_document`: see `predict_records`.
    """
    return [request_codec.entities_from_record(record)
            for record in self.predict_records(texts, context,
                                               as_document=as_document)]

  def close(self) -> None:
    self._transport.close()

  def __enter__(self) -> "NerClient":
    return self

  def __exit__(self, *unused) -> None:
    self.close()


# --- CLI ------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m serving.client",
      description="Send texts to a served NER model; print one JSON line "
                  "{text, entities} per text.")
  # Required
  parser.add_argument("--server", required=True,
                      help="host:port of TF Serving (gRPC port 8500 for "
                           "--protocol=grpc, REST port 8501 for rest).")
  parser.add_argument("--text", action="append", default=[],
                      help="a text to tag; repeat for several.")
  parser.add_argument("--input_file",
                      help="UTF-8 file, one text per line (blank lines skipped).")
  # Other
  parser.add_argument("--model_name", default=schema.DEFAULT_MODEL_NAME,
                      help="served model name.")
  parser.add_argument("--export_dir",
                      help="export folder whose assets (vocab, labels, "
                           "ner_config.json) the client reads.")
  parser.add_argument("--vocab_file", help="vocab, instead of --export_dir.")
  parser.add_argument("--labels_file", help="labels, instead of --export_dir.")
  parser.add_argument("--max_seq_length", type=int,
                      help="positions per window (default from the export).")
  parser.add_argument("--doc_stride", type=int,
                      help="pieces between window starts (default from the "
                           "export).")
  parser.add_argument("--do_lower_case", choices=["true", "false"],
                      help="must match the model (default from the export).")
  parser.add_argument("--protocol", choices=transports.PROTOCOLS,
                      default=transports.GRPC)
  parser.add_argument("--signature", choices=CLIENT_SIGNATURES,
                      default=schema.PREDICT_EXAMPLES_SIGNATURE,
                      help="predict_text needs no assets (character models).")
  parser.add_argument("--timeout_s", type=float, default=10.0,
                      help="deadline per request, seconds (> 0).")
  parser.add_argument("--max_retries", type=int, default=3,
                      help="retries on UNAVAILABLE (>= 0).")
  parser.add_argument("--batch_size", type=int, default=32,
                      help="windows (texts for predict_text) per request.")
  parser.add_argument("--as_document", action="store_true",
                      help="read the texts, in order, as one document: each "
                           "is fed with its neighbours' word-pieces as "
                           "context (models trained with --context_pieces; "
                           "signature predict_examples).")
  parser.add_argument("--full", action="store_true",
                      help="print the whole record (tokens, tags, scores).")
  args = parser.parse_args(argv)
  if not args.text and not args.input_file:
    parser.error("give --text (repeatable) or --input_file")
  return args


def read_input_file(path: str) -> list[str]:
  """Non-blank lines of a UTF-8 file, without line endings.

  Raises:
    ValueError: naming the path and the cause (missing, a folder,
      unreadable, or not UTF-8 with the line and byte offset).
  """
  try:
    with open(path, "rb") as reader:
      data = reader.read()
  except OSError as error:
    raise ValueError(f"--input_file={path}: {error.strerror or error}"
                     ) from None
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as error:
    line = data.count(b"\n", 0, error.start) + 1
    raise ValueError(f"--input_file={path}:{line}: not valid UTF-8 at byte "
                     f"offset {error.start}; the client reads UTF-8 text, "
                     "one text per line.") from None
  return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  texts = list(args.text)
  if args.input_file:
    try:
      texts += read_input_file(args.input_file)
    except ValueError as error:
      print(f"error: {error}", file=sys.stderr)
      return 1
  ner_config = {key: value for key, value in (
      ("max_seq_length", args.max_seq_length), ("doc_stride", args.doc_stride),
      ("do_lower_case", None if args.do_lower_case is None
       else args.do_lower_case == "true")) if value is not None}
  try:
    with NerClient(args.server, args.model_name, export_dir=args.export_dir,
                   vocab_file=args.vocab_file, labels_file=args.labels_file,
                   ner_config=ner_config, protocol=args.protocol,
                   signature=args.signature, timeout_s=args.timeout_s,
                   max_retries=args.max_retries,
                   batch_size=args.batch_size) as client:
      records = client.predict_records(texts, as_document=args.as_document)
      for text, record in zip(texts, records):
        line = record if args.full else {
            "text": text, "entities": request_codec.entities_from_record(record)}
        print(json.dumps(line, ensure_ascii=False))
  except (ValueError, PredictionError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0

