"""The development server's demo page: type a text, see its entities.

  GET  /                the page (HTML, CSS and JavaScript inline: it fetches
                        nothing at view time but its own JSON endpoint)
  POST /demo/entities   {"text": "..."} or {"texts": ["...", ...]} ->
                        {"model", "version", "signature", "entity_types",
                         "notice", "records": [record, ...]}

The endpoint runs the client's own pipeline in the server process: a
`client.NerClient` built from the served version's assets (vocab, labels,
ner_config.json) whose transport calls the loaded SavedModel directly (no
network hop). So the page splits words exactly as the client does and its
`records` are exactly what `NerClient.predict_records` returns (text, tokens,
tags, scores, entities with `char_start`/`char_end` and `score`). An export
without those assets falls back to the server-side `predict_text` signature
(character-level models), and says so in `notice`; without either, the
endpoint answers 400 naming the missing files.

Errors (empty text, too long, bad JSON, no model loaded) are
`input_checks.ServingError`s, which `serving.server.rest_api` turns into HTTP
400/404 with {"error": "..."}; the page shows that message.
"""

import html
import json
import logging
import os
import threading
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import grpc
import numpy as np

from serving.client import client as client_lib
from serving.demo import page as demo_page
from serving.server import model_manager
from trainer import schema
from trainer.data import tag_schemes
from serving.server import input_checks

_LOG = logging.getLogger(__name__)
PAGE_PATH = "/"
ENTITIES_PATH = "/demo/entities"
# Longest text the demo tags, in characters (Python `len`, code points).
MAX_TEXT_CHARS = 5000
# Most texts one request may hold.
MAX_TEXTS = 64
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    # Inline style and script only; the page may talk to this server alone.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; connect-src 'self'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# Files the client's pipeline reads from a version folder.
CLIENT_ASSETS = (
    os.path.join(schema.ASSETS_DIRNAME, schema.VOCAB_FILENAME),
    os.path.join(schema.ASSETS_DIRNAME, schema.LABELS_FILENAME),
    os.path.join(schema.ASSETS_EXTRA_DIRNAME, schema.NER_CONFIG_FILENAME),
)


def is_page_path(path: str) -> bool:
  """True for the page's URL path (a query string is allowed: `/?text=...`)."""
  return urllib.parse.urlsplit(path).path == PAGE_PATH


def is_entities_path(path: str) -> bool:
  """True for the JSON endpoint's URL path."""
  return urllib.parse.urlsplit(path).path == ENTITIES_PATH


class LoadedVersionTransport:
  """A `NerClient` transport calling a `model_manager.LoadedVersion`.

  Requests get the server's own input checks (`LoadedVersion.predict`);
  failures raise `input_checks.ServingError`.
  """

  def __init__(self, loaded: model_manager.LoadedVersion) -> None:
    self._loaded = loaded

  def predict(self, signature_name: str,
              inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return self._loaded.predict(signature_name, inputs)

  def close(self) -> None:
    pass


def pipeline_plan(version_dir: str,
                  signature_names: Sequence[str]) -> Tuple[str, str]:
  """Which signature the demo's client uses for a version, and why.

  Args:
    version_dir: a numbered export folder.
    signature_names: the signatures it serves.

  Returns:
    (signature name, notice): predict_examples (else serving_default) when
    every `CLIENT_ASSETS` file is there, with notice ""; else predict_text
    with a notice saying which assets are missing and what that changes.

  Raises:
    input_checks.ServingError: FAILED_PRECONDITION naming the missing files
      when neither is possible.

  Example: ("export/1", ["serving_default", "predict_examples"]) with all
  assets -> ("predict_examples", "").
  """
  missing = [name for name in CLIENT_ASSETS
             if not os.path.isfile(os.path.join(version_dir, name))]
  if not missing:
    for signature in (schema.PREDICT_EXAMPLES_SIGNATURE,
                      schema.SERVING_DEFAULT_SIGNATURE):
      if signature in signature_names:
        return signature, ""
  missing_text = ", ".join(missing) or (
      f"the {schema.PREDICT_EXAMPLES_SIGNATURE} and "
      f"{schema.SERVING_DEFAULT_SIGNATURE} signatures")
  if schema.PREDICT_TEXT_SIGNATURE in signature_names:
    return schema.PREDICT_TEXT_SIGNATURE, (
        f"This export has no {missing_text}, so the demo cannot split words "
        "like the client. It uses the server-side "
        f"{schema.PREDICT_TEXT_SIGNATURE} signature instead: every character "
        "is a token, also in Latin-script words.")
  raise input_checks.ServingError(
      grpc.StatusCode.FAILED_PRECONDITION,
      f"This export (version {os.path.basename(os.path.normpath(version_dir))}"
      f") has no {missing_text}, and no "
      f"{schema.PREDICT_TEXT_SIGNATURE} signature: the demo needs the vocab, "
      "labels and ner_config.json that run_ner.py --do_export writes into "
      "every version folder. Re-export the model.")


def entity_types(label_names: Optional[Sequence[str]]) -> List[str]:
  """Sorted entity types of a label list (the page's legend and colours).

  Example: ["O", "B-PER", "I-PER", "B-LOC"] -> ["LOC", "PER"].
  """
  return sorted({tag_schemes.split_tag(label)[1] for label in label_names or ()
                 if tag_schemes.split_tag(label)[1]})


class _Pipeline:
  """The demo's `NerClient` for one loaded version, and what the page shows."""

  def __init__(self, loaded: model_manager.LoadedVersion) -> None:
    self.signature, self.notice = pipeline_plan(loaded.version_dir,
                                                list(loaded.signatures))
    export_dir = (loaded.version_dir
                  if self.signature != schema.PREDICT_TEXT_SIGNATURE else None)
    self.client = client_lib.NerClient(
        export_dir=export_dir, signature=self.signature,
        transport=LoadedVersionTransport(loaded))
    labels_path = os.path.join(loaded.version_dir, CLIENT_ASSETS[1])
    label_names = self.client.label_names
    if label_names is None and os.path.isfile(labels_path):
      # pylint: disable-next=g-import-not-at-top
      from trainer.data import labels as labels_lib
      label_names = labels_lib.read_labels_file(labels_path)
    self.entity_types = entity_types(label_names)


# The pipeline of the version served last: one slot, so a version the
# manager replaced is not kept loaded by the demo.
_CACHE = {"loaded": None, "pipeline": None}
_CACHE_LOCK = threading.Lock()


def pipeline_for(loaded: model_manager.LoadedVersion) -> _Pipeline:
  """The `_Pipeline` of `loaded`, built on first use and kept until the
  server serves another version."""
  with _CACHE_LOCK:
    if _CACHE["loaded"] is not loaded:
      _CACHE["pipeline"] = _Pipeline(loaded)
      _CACHE["loaded"] = loaded
    return _CACHE["pipeline"]


def texts_from_body(raw: bytes) -> List[str]:
  """The texts of an endpoint request body.

  Raises:
    input_checks.ServingError: INVALID_ARGUMENT for anything but a JSON
      object {"text": str} or {"texts": [str, ...]} of 1..`MAX_TEXTS`
      non-blank texts of at most `MAX_TEXT_CHARS` characters each.

  Example: b'{"text": "张三在北京工作。"}' -> ["张三在北京工作。"].
  """
  body = input_checks.parse_json(raw)
  if not isinstance(body, dict) or ("text" in body) == ("texts" in body):
    raise input_checks.invalid_argument(
        'The body must be a JSON object with "text": "..." (one text) or '
        '"texts": ["...", ...].')
  single = "text" in body
  texts = [body["text"]] if single else body["texts"]
  if not isinstance(texts, list) or not 1 <= len(texts) <= MAX_TEXTS:
    raise input_checks.invalid_argument(
        f'"texts" must be a list of 1 to {MAX_TEXTS} strings.')
  for index, text in enumerate(texts):
    name = "The text" if single else f"Text {index}"
    if not isinstance(text, str):
      raise input_checks.invalid_argument(
          f"{name} must be a string, not {type(text).__name__}.")
    input_checks.check_utf8_text(name, text)
    if not text.strip():
      raise input_checks.invalid_argument(
          f"{name} is empty: type a sentence to tag.")
    if len(text) > MAX_TEXT_CHARS:
      raise input_checks.invalid_argument(
          f"{name} has {len(text):,} characters; the demo tags at most "
          f"{MAX_TEXT_CHARS:,}. Shorten it, or tag long documents with "
          "python -m serving.client --input_file.")
  return texts


def entities_answer(manager: model_manager.ModelManager,
                    raw: bytes) -> Dict[str, Any]:
  """Answers `POST /demo/entities` (see the module docstring).

  Raises:
    input_checks.ServingError: INVALID_ARGUMENT for a bad body, NOT_FOUND
      when no version is loaded, FAILED_PRECONDITION when the export has
      neither client assets nor predict_text, or the model's own error.

  Example: b'{"text": "张三在北京工作。"}' -> {"model": "ner", "version": 1,
  "signature": "predict_examples", "entity_types": ["LOC", "ORG", "PER"],
  "notice": "", "records": [{"text": "张三在北京工作。", "tokens": [...],
  "tags": [...], "scores": [...], "entities": [{"type": "PER", "text":
  "张三", "start": 0, "end": 2, "char_start": 0, "char_end": 2,
  "score": 0.98}, ...]}]}.
  """
  texts = texts_from_body(raw)
  loaded = manager.get(manager.model_name)
  pipeline = pipeline_for(loaded)
  return {"model": manager.model_name, "version": loaded.version,
          "signature": pipeline.signature,
          "entity_types": pipeline.entity_types, "notice": pipeline.notice,
          "records": pipeline.client.predict_records(texts)}


def _page_config(manager: model_manager.ModelManager) -> Dict[str, Any]:
  """What the page's script needs, and the notice shown before any request."""
  config = {"model": manager.model_name, "version": None,
            "endpoint": ENTITIES_PATH, "max_chars": MAX_TEXT_CHARS,
            "entity_types": [], "notice": ""}
  try:
    loaded = manager.get(manager.model_name)
    config["version"] = loaded.version
    pipeline = pipeline_for(loaded)
    config["entity_types"] = pipeline.entity_types
    config["notice"] = pipeline.notice
  except input_checks.ServingError as error:
    config["notice"] = error.message
  except (OSError, ValueError):  # unreadable assets; the log names them
    _LOG.exception("The demo cannot read the assets of %s version %s",
                   manager.model_name, config["version"])
    config["notice"] = ("The demo cannot read this export's assets (vocab, "
                        "labels, ner_config.json); the server log says why.")
  return config


def page_html(manager: model_manager.ModelManager) -> str:
  """The demo page for the model `manager` serves (every value escaped)."""
  config = _page_config(manager)
  # Inside <script>, "<", ">" and "&" as JSON escapes cannot end the element.
  config_json = (json.dumps(config, ensure_ascii=False)
                 .replace("<", "\\u003c").replace(">", "\\u003e")
                 .replace("&", "\\u0026"))
  version = (f"version {config['version']}" if config["version"] is not None
             else "no version loaded")
  return demo_page.render(
      model=html.escape(manager.model_name), version=html.escape(version),
      notice=html.escape(config["notice"]),
      notice_hidden="" if config["notice"] else " hidden",
      max_chars=f"{MAX_TEXT_CHARS:,}", config_json=config_json,
      endpoint=html.escape(ENTITIES_PATH))
