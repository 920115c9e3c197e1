"""Client for the exported NER model: raw texts in, entities out.

    client = NerClient("localhost:8500", export_dir="output/export")
    client.predict(["张三在北京工作。"])
    -> [[{"type": "PER", "text": "张三", "start": 0, "end": 2, "score": 0.99},
         {"type": "LOC", "text": "北京", "start": 3, "end": 5, "score": 0.98}]]

`start`/`end` are character offsets into the text (`end` exclusive).

No train/serve skew: texts are split into words with the trainer's
`readers.default_word_splitter`, into word-pieces and windows with
`features.convert_sentence` (long texts become overlapping windows), window
outputs are merged with `features.merge_window_outputs`, and entities come
from `predictions.sentence_record`: the code `run_ner.py --do_predict` runs.
Vocab, labels and settings come from the export's assets (`export_dir`) or
are given as paths. With `signature="predict_text"` (character-level models)
the server does the tokenization and the client needs no assets.

Transports (one `predict(signature_name, inputs) -> outputs` method, numpy
arrays in and out):

  `GrpcTransport`        TF Serving's gRPC `PredictionService/Predict`
  `RestTransport`        TF Serving's `POST /v1/models/<name>:predict`
  `SavedModelTransport`  calls the SavedModel in this process (tests, bench)

Request building and response parsing are pure functions (`build_windows`,
`window_inputs`, `build_predict_request`, `build_rest_body`,
`parse_rest_outputs`, `records_from_window_outputs`, `records_from_text_outputs`,
`entities_from_record`) tested without a server.

CLI (JSON lines out, one object per text)::

    python -m serving.client --server localhost:8500 --model_name ner \
        --export_dir output/export --text "张三在北京工作。"
"""

import argparse
import base64
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

import numpy as np

from trainer import features as features_lib
from trainer import predictions as predictions_lib
from trainer import readers
from trainer import schema

GRPC = "grpc"
REST = "rest"
PROTOCOLS = (GRPC, REST)
CLIENT_SIGNATURES = (schema.SERVING_DEFAULT_SIGNATURE,
                     schema.PREDICT_EXAMPLES_SIGNATURE,
                     schema.PREDICT_TEXT_SIGNATURE)
# gRPC's default 4 MiB message limit is too small for large batches of logits.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class PredictionError(RuntimeError):
  """A request the server answered with an error (or never answered).

  Attributes:
    code: gRPC status name ("INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE",
      ...), also for REST (from the HTTP status).
  """

  def __init__(self, code, message):
    super().__init__("%s: %s" % (code, message))
    self.code = code
    self.message = message


# --- Assets -------------------------------------------------------------------


def latest_version_dir(export_dir):
  """`export_dir` itself when it holds a SavedModel, else its highest version.

  Example: "out/export" with versions 1 and 3 -> "out/export/3".
  """
  if os.path.exists(os.path.join(export_dir, "saved_model.pb")):
    return export_dir
  versions = [int(name) for name in (os.listdir(export_dir)
                                     if os.path.isdir(export_dir) else [])
              if re.fullmatch(r"\d+", name)]
  if not versions:
    raise ValueError("%s holds no saved_model.pb and no numbered version "
                     "folder; pass the --export_dir that run_ner.py "
                     "--do_export wrote." % export_dir)
  return os.path.join(export_dir, str(max(versions)))


def read_export_assets(export_dir):
  """Returns (vocab_file, labels_file, ner_config dict) of an export."""
  version_dir = latest_version_dir(export_dir)
  with open(os.path.join(version_dir, schema.ASSETS_EXTRA_DIRNAME,
                         schema.NER_CONFIG_FILENAME), encoding="utf-8") as f:
    ner_config = json.load(f)
  assets = os.path.join(version_dir, schema.ASSETS_DIRNAME)
  return (os.path.join(assets, schema.VOCAB_FILENAME),
          os.path.join(assets, schema.LABELS_FILENAME), ner_config)


# --- Pure request building and response parsing ---------------------------------


def sentences_from_texts(texts, word_splitter=None):
  """Splits texts into words like `readers.read_text` does.

  Returns:
    list of `readers.Sentence` (tags None, `text` and `char_spans` set); a text
    without words gives a sentence with no tokens.

  Example: ["张三 去了"] -> [Sentence(("张", "三", "去", "了"), None,
      "text 0", "张三 去了", ((0, 1), (1, 2), (3, 4), (4, 5)))]
  """
  splitter = word_splitter or readers.default_word_splitter
  sentences = []
  for index, text in enumerate(texts):
    if not isinstance(text, str):
      raise ValueError("Text %d is %s, not str: %r"
                       % (index, type(text).__name__, text))
    where = "text %d" % index
    tokens = tuple(splitter(text))
    sentences.append(readers.Sentence(
        tokens=tokens, tags=None, source=where, text=text,
        char_spans=readers.token_char_spans(text, tokens, where)))
  return sentences


def build_windows(sentences, tokenizer, max_seq_length, doc_stride):
  """`features.convert_sentence` for every sentence with words.

  Returns:
    list of `features.WindowFeatures`; `example_index` = sentence index.
  """
  windows = []
  for index, sentence in enumerate(sentences):
    if sentence.tokens:
      windows.extend(features_lib.convert_sentence(
          sentence.tokens, None, index, tokenizer, max_seq_length,
          doc_stride))
  return windows


def window_inputs(windows, signature_name=schema.SERVING_DEFAULT_SIGNATURE):
  """Model inputs for a batch of windows.

  Returns:
    serving_default: {input_ids, input_mask, segment_ids: int32 [B, T]}
      padded with `schema.PADDING_VALUES` to the longest window;
    predict_examples: {examples: object [B] of serialized tf.Example bytes
      holding input_ids, input_mask, segment_ids and word_positions, so heads
      that decode per word (CRF) see exactly the training word starts}.

  Example: windows with input_ids (2, 7, 3) and (2, 3) ->
      input_ids [[2, 7, 3], [2, 3, 0]], input_mask [[1, 1, 1], [1, 1, 0]].
  """
  if signature_name == schema.PREDICT_EXAMPLES_SIGNATURE:
    # Imported here: tf.train.Example lives in TensorFlow's protos.
    from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
    from tensorflow.core.example import feature_pb2  # pylint: disable=g-import-not-at-top
    serialized = []
    for window in windows:
      example = example_pb2.Example(features=feature_pb2.Features(feature={
          key: feature_pb2.Feature(int64_list=feature_pb2.Int64List(
              value=getattr(window, key)))
          for key in schema.MODEL_INPUT_KEYS + (schema.WORD_POSITIONS,)}))
      serialized.append(example.SerializeToString())
    return {schema.EXAMPLES_INPUT_KEY: np.array(serialized, dtype=object)}
  if signature_name != schema.SERVING_DEFAULT_SIGNATURE:
    raise ValueError("window_inputs builds %s or %s inputs, not %r."
                     % (schema.SERVING_DEFAULT_SIGNATURE,
                        schema.PREDICT_EXAMPLES_SIGNATURE, signature_name))
  length = max((len(window.input_ids) for window in windows), default=0)
  inputs = {}
  for key in schema.MODEL_INPUT_KEYS:
    array = np.full([len(windows), length], schema.PADDING_VALUES[key],
                    np.int32)
    for row, window in enumerate(windows):
      values = getattr(window, key)
      array[row, :len(values)] = values
    inputs[key] = array
  return inputs


def build_predict_request(inputs, model_name, signature_name, version=None):
  """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for `inputs`."""
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = int(version)
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  return request


def parse_predict_response(response):
  """{output key: numpy array} of a gRPC `PredictResponse`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}


def _json_value(array):
  if array.dtype == object or array.dtype.kind == "S":
    def encode(value):
      if isinstance(value, bytes):
        try:
          return value.decode("utf-8")
        except UnicodeDecodeError:
          return {"b64": base64.b64encode(value).decode("ascii")}
      return value
    return np.vectorize(encode, otypes=[object])(array).tolist() \
        if array.size else array.tolist()
  return array.tolist()


def build_rest_body(inputs, signature_name):
  """TF Serving REST body, columnar ("inputs") format.

  Bytes that are not UTF-8 (serialized tf.Examples) are sent as {"b64": ...},
  as TF Serving's REST API expects.

  Example: {"input_ids": int32 [[2, 3]]} -> {"signature_name": "serving_default",
      "inputs": {"input_ids": [[2, 3]]}}
  """
  body = {"signature_name": signature_name, "inputs": {}}
  for key, value in inputs.items():
    array = np.asarray(value)
    if array.dtype == object and key == schema.EXAMPLES_INPUT_KEY:
      body["inputs"][key] = [{"b64": base64.b64encode(v).decode("ascii")}
                             for v in array.tolist()]
    else:
      body["inputs"][key] = _json_value(array)
  return body


def parse_rest_outputs(response_body):
  """{output key: numpy array} of a REST predict answer (columnar format).

  Strings come back as str; they become bytes, as over gRPC.
  """
  outputs = response_body.get("outputs")
  if outputs is None:
    raise PredictionError("INTERNAL", "REST answer has no 'outputs': %s"
                          % str(response_body)[:200])
  if not isinstance(outputs, dict):
    raise PredictionError("INTERNAL", "REST answer has one unnamed output; "
                          "expected named outputs")
  parsed = {}
  for key, value in outputs.items():
    array = np.array(value)
    if array.dtype.kind == "U":
      array = np.vectorize(lambda s: s.encode("utf-8"),
                           otypes=[object])(array)
    parsed[key] = array
  return parsed


def window_outputs_for_merge(windows, outputs):
  """Per-window dicts for `features.merge_window_outputs`.

  Args:
    windows: the `WindowFeatures` of one request, in order.
    outputs: {label_ids: int [B, T], scores: float [B, T], ...}.
  """
  label_ids = np.asarray(outputs[schema.OUTPUT_LABEL_IDS])
  scores = np.asarray(outputs[schema.OUTPUT_SCORES])
  if label_ids.shape[0] != len(windows):
    raise PredictionError("INTERNAL", "sent %d windows, got %d rows back"
                          % (len(windows), label_ids.shape[0]))
  merged_inputs = []
  for row, window in enumerate(windows):
    length = len(window.input_ids)
    merged_inputs.append({
        schema.EXAMPLE_INDEX: window.example_index,
        schema.WORD_POSITIONS: window.word_positions,
        schema.SCORE_MASK: window.score_mask,
        "label_id": label_ids[row, :length].tolist(),
        "score": scores[row, :length].tolist(),
    })
  return merged_inputs


def records_from_window_outputs(sentences, window_outputs, label_names):
  """`predictions.sentence_record` per sentence from merged window outputs."""
  with_words = [index for index, s in enumerate(sentences) if s.tokens]
  dense = {sentence: i for i, sentence in enumerate(with_words)}
  renumbered = [dict(output, **{schema.EXAMPLE_INDEX:
                                dense[output[schema.EXAMPLE_INDEX]]})
                for output in window_outputs]
  merged = features_lib.merge_window_outputs(
      renumbered, [len(sentences[i].tokens) for i in with_words])
  records = [predictions_lib.sentence_record(s, [], [])
             for s in sentences]
  for index, values in zip(with_words, merged):
    tags = [label_names[label_id] for label_id in values["label_id"]]
    records[index] = predictions_lib.sentence_record(
        sentences[index], tags, values["score"])
  return records


def records_from_text_outputs(texts, outputs):
  """`predictions.sentence_record` per text from predict_text outputs.

  Characters whose tag is `schema.NO_TOKEN_TAG` (whitespace) are not tokens,
  exactly as `readers.default_word_splitter` drops whitespace.
  """
  tags = np.asarray(outputs[schema.OUTPUT_TAGS])
  scores = np.asarray(outputs[schema.OUTPUT_SCORES])
  lengths = np.asarray(outputs[schema.OUTPUT_LENGTHS])
  records = []
  for row, text in enumerate(texts):
    if int(lengths[row]) != len(text):
      raise PredictionError("INTERNAL", "text %d has %d characters but the "
                            "server counted %d" % (row, len(text),
                                                   int(lengths[row])))
    positions, row_tags, row_scores = [], [], []
    for position in range(len(text)):
      tag = tags[row, position]
      tag = tag.decode("utf-8") if isinstance(tag, bytes) else str(tag)
      if tag != schema.NO_TOKEN_TAG:
        positions.append(position)
        row_tags.append(tag)
        row_scores.append(float(scores[row, position]))
    sentence = readers.Sentence(
        tokens=tuple(text[p] for p in positions), tags=None,
        source="text %d" % row, text=text,
        char_spans=tuple((p, p + 1) for p in positions))
    records.append(predictions_lib.sentence_record(sentence, row_tags,
                                                   row_scores))
  return records


def entities_from_record(record):
  """Client entities: type, text, character start/end, score.

  Example: {"entities": [{"type": "LOC", "text": "北京", "start": 3, "end": 5,
      "char_start": 3, "char_end": 5, "score": 0.9}]} ->
      [{"type": "LOC", "text": "北京", "start": 3, "end": 5, "score": 0.9}]
  """
  return [{"type": entity["type"], "text": entity["text"],
           "start": entity["char_start"], "end": entity["char_end"],
           "score": entity["score"]} for entity in record["entities"]]


def batches(items, batch_size):
  """Consecutive slices of at most `batch_size` items."""
  return [items[start:start + batch_size]
          for start in range(0, len(items), batch_size)]


# --- Transports -----------------------------------------------------------------


def _with_retries(call, max_retries, backoff_s, is_retryable):
  """Runs `call()`; retries up to `max_retries` times with exponential backoff."""
  attempt = 0
  while True:
    try:
      return call()
    except PredictionError as error:
      if attempt >= max_retries or not is_retryable(error):
        raise
      time.sleep(backoff_s * (2 ** attempt))
      attempt += 1


class GrpcTransport:
  """TF Serving's gRPC PredictionService (one channel, reused)."""

  def __init__(self, target, model_name, timeout_s, max_retries, backoff_s,
               version=None):
    import grpc  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
    self._grpc = grpc
    self._channel = grpc.insecure_channel(target, options=[
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
        self._channel)
    self._model_name = model_name
    self._version = version
    self._timeout_s = timeout_s
    self._max_retries = max_retries
    self._backoff_s = backoff_s

  def predict(self, signature_name, inputs):
    """One Predict RPC with a `timeout_s` deadline; retries on UNAVAILABLE."""
    request = build_predict_request(inputs, self._model_name, signature_name,
                                    self._version)

    def call():
      try:
        return self._stub.Predict(request, timeout=self._timeout_s)
      except self._grpc.RpcError as error:
        raise PredictionError(error.code().name, error.details()) from None

    response = _with_retries(call, self._max_retries, self._backoff_s,
                             lambda error: error.code == "UNAVAILABLE")
    return parse_predict_response(response)

  def close(self):
    self._channel.close()


_HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED",
               429: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED",
               503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


class RestTransport:
  """TF Serving's REST predict endpoint over urllib (no extra dependency)."""

  def __init__(self, target, model_name, timeout_s, max_retries, backoff_s,
               version=None):
    base = target if "://" in target else "http://" + target
    path = "/v1/models/%s" % model_name
    if version is not None:
      path += "/versions/%d" % int(version)
    self.url = base.rstrip("/") + path + ":predict"
    self._timeout_s = timeout_s
    self._max_retries = max_retries
    self._backoff_s = backoff_s

  def predict(self, signature_name, inputs):
    """One POST with a `timeout_s` timeout; retries on 503 / refused."""
    data = json.dumps(build_rest_body(inputs, signature_name)).encode("utf-8")

    def call():
      request = urllib.request.Request(
          self.url, data=data, headers={"Content-Type": "application/json"})
      try:
        with urllib.request.urlopen(request, timeout=self._timeout_s) as reply:
          return json.loads(reply.read().decode("utf-8"))
      except urllib.error.HTTPError as error:
        try:
          message = json.loads(error.read().decode("utf-8")).get("error", "")
        except ValueError:
          message = error.reason
        raise PredictionError(_HTTP_CODES.get(error.code, "UNKNOWN"),
                              message) from None
      except (urllib.error.URLError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
          raise PredictionError("DEADLINE_EXCEEDED", str(reason)) from None
        raise PredictionError("UNAVAILABLE", str(reason)) from None
      except TimeoutError as error:
        raise PredictionError("DEADLINE_EXCEEDED", str(error)) from None

    body = _with_retries(call, self._max_retries, self._backoff_s,
                         lambda error: error.code == "UNAVAILABLE")
    return parse_rest_outputs(body)

  def close(self):
    pass


class SavedModelTransport:
  """Calls an export's signatures in this process (no RPC)."""

  def __init__(self, export_dir):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self._model = tf.saved_model.load(latest_version_dir(export_dir))

  def predict(self, signature_name, inputs):
    function = self._model.signatures[signature_name]
    outputs = function(**{key: self._tf.constant(value)
                          for key, value in inputs.items()})
    return {key: value.numpy() for key, value in outputs.items()}

  def close(self):
    pass


# --- Client ---------------------------------------------------------------------


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
    ner_config: dict with max_seq_length, doc_stride, do_lower_case (as in
      `assets.extra/ner_config.json`); overrides the export's.
    protocol: "grpc" or "rest".
    signature: "predict_examples" (default: windows as tf.Examples with
      word_positions, exact for every head), "serving_default" (id tensors;
      word starts derived from ids in the graph) or "predict_text"
      (character-level models; the server tokenizes, no assets needed).
    timeout_s: deadline of each request, seconds.
    max_retries: retries of a request answered UNAVAILABLE (server starting,
      connection refused), with backoff `backoff_s * 2**attempt` seconds.
    batch_size: windows (or, for predict_text, texts) per request.
    version: a model version to pin; default the latest the server has.
    word_splitter: text -> words; default `readers.default_word_splitter`
      (what `run_ner.py` uses for raw text).
    transport: an object with `predict(signature, inputs)`, e.g.
      `SavedModelTransport`; default built from `protocol` and `target`.
  """

  def __init__(self, target=None, model_name=schema.DEFAULT_MODEL_NAME, *,
               export_dir=None, vocab_file=None, labels_file=None,
               ner_config=None, protocol=GRPC,
               signature=schema.PREDICT_EXAMPLES_SIGNATURE, timeout_s=10.0,
               max_retries=3, backoff_s=0.1, batch_size=32, version=None,
               word_splitter=None, transport=None):
    if protocol not in PROTOCOLS:
      raise ValueError("protocol=%r; use one of %s." % (protocol, PROTOCOLS))
    if signature not in CLIENT_SIGNATURES:
      raise ValueError("signature=%r; use one of %s."
                       % (signature, ", ".join(CLIENT_SIGNATURES)))
    if batch_size < 1 or timeout_s <= 0 or max_retries < 0:
      raise ValueError("Need batch_size >= 1, timeout_s > 0, max_retries >= "
                       "0; got %r, %r, %r." % (batch_size, timeout_s,
                                               max_retries))
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
      missing = [name for name, value in (
          ("vocab_file", vocab_file), ("labels_file", labels_file),
          ("max_seq_length", config.get("max_seq_length")),
          ("do_lower_case", config.get("do_lower_case"))) if value is None]
      if missing:
        raise ValueError(
            "NerClient with signature %s needs %s: pass export_dir (its "
            "assets hold them), or vocab_file, labels_file and ner_config; or "
            "use signature=%s (character-level models)."
            % (signature, ", ".join(missing), schema.PREDICT_TEXT_SIGNATURE))
      # Imported here: word-piece tokenization pulls in TensorFlow.
      from trainer import labels as labels_lib  # pylint: disable=g-import-not-at-top
      from trainer import tokenization  # pylint: disable=g-import-not-at-top
      self._tokenizer = tokenization.NerTokenizer(
          vocab_file, bool(config["do_lower_case"]))
      self.label_names = labels_lib.read_labels_file(labels_file)
      self.max_seq_length = int(config["max_seq_length"])
      self.doc_stride = int(config.get("doc_stride")
                            or max(1, self.max_seq_length // 2))
    if transport is None:
      if not target:
        raise ValueError("NerClient needs a target 'host:port' (or a "
                         "transport).")
      transport_class = GrpcTransport if protocol == GRPC else RestTransport
      transport = transport_class(target, model_name, timeout_s, max_retries,
                                  backoff_s, version)
    self._transport = transport

  def predict_records(self, texts):
    """Full per-text records: text, tokens, tags, scores, entities (with
    token `start`/`end` and `char_start`/`char_end`), as predictions.jsonl."""
    texts = list(texts)
    if self.signature == schema.PREDICT_TEXT_SIGNATURE:
      records = []
      for chunk in batches(texts, self.batch_size):
        outputs = self._transport.predict(
            self.signature, {schema.TEXT_INPUT_KEY: np.array(
                [text.encode("utf-8") for text in chunk], dtype=object)})
        records.extend(records_from_text_outputs(chunk, outputs))
      return records
    sentences = sentences_from_texts(texts, self._word_splitter)
    windows = build_windows(sentences, self._tokenizer, self.max_seq_length,
                            self.doc_stride)
    merged_inputs = []
    for chunk in batches(windows, self.batch_size):
      outputs = self._transport.predict(
          self.signature, window_inputs(chunk, self.signature))
      merged_inputs.extend(window_outputs_for_merge(chunk, outputs))
    return records_from_window_outputs(sentences, merged_inputs,
                                       self.label_names)

  def predict(self, texts):
    """For each text, a list of {type, text, start, end, score} entities."""
    return [entities_from_record(record)
            for record in self.predict_records(texts)]

  def close(self):
    self._transport.close()

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    self.close()


# --- CLI ------------------------------------------------------------------------


def parse_args(argv):
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
  parser.add_argument("--protocol", choices=PROTOCOLS, default=GRPC)
  parser.add_argument("--signature", choices=CLIENT_SIGNATURES,
                      default=schema.PREDICT_EXAMPLES_SIGNATURE,
                      help="predict_text needs no assets (character models).")
  parser.add_argument("--timeout_s", type=float, default=10.0,
                      help="deadline per request, seconds (> 0).")
  parser.add_argument("--max_retries", type=int, default=3,
                      help="retries on UNAVAILABLE (>= 0).")
  parser.add_argument("--batch_size", type=int, default=32,
                      help="windows (texts for predict_text) per request.")
  parser.add_argument("--full", action="store_true",
                      help="print the whole record (tokens, tags, scores).")
  args = parser.parse_args(argv)
  if not args.text and not args.input_file:
    parser.error("give --text (repeatable) or --input_file")
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  texts = list(args.text)
  if args.input_file:
    with open(args.input_file, encoding="utf-8") as reader:
      texts += [line.rstrip("\r\n") for line in reader if line.strip()]
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
      for text, record in zip(texts, client.predict_records(texts)):
        line = record if args.full else {
            "text": text, "entities": entities_from_record(record)}
        print(json.dumps(line, ensure_ascii=False))
  except (ValueError, PredictionError) as error:
    print("error: %s" % error, file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
