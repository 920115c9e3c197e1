"""The demo page and its JSON endpoint on a running LocalModelServer.

The endpoint must answer exactly what `NerClient.predict_records` answers
for the same texts (same word splitting, windows and merge); the browser
side is tested in test_browser_demo.py.
"""

import json
import os
import shutil
import urllib.error
import urllib.request

import grpc
import pytest

from serving.client import client
from serving.demo import endpoint as demo
from serving.server import local_server
from tests import serving_fixtures
from trainer import schema
from serving.server import input_checks

TIMEOUT_S = 30.0
# CJK, spaces, a text longer than one window, Latin word-pieces, an English
# sentence, and a character outside the BMP (UTF-16 surrogate pair in JS).
TEXTS = serving_fixtures.PREDICT + [
    "Zhang San went to ABC corp.", "𠀀张三在北京工作。"]


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


@pytest.fixture(scope="module")
def server(served):
  with local_server.LocalModelServer("ner", served["export_dir"],
                                     port=0, mount=demo) as running:
    yield running


def _request(port, path, body=None):
  """(status, content type, decoded body) of a GET (body None) or POST."""
  data = None
  if body is not None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
  request = urllib.request.Request(
      f"http://127.0.0.1:{port}{path}", data=data,
      headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
      return (reply.status, reply.headers["Content-Type"],
              reply.read().decode("utf-8"))
  except urllib.error.HTTPError as error:
    return error.code, error.headers["Content-Type"], error.read().decode()


def _post_json(port, body):
  status, _, text = _request(port, demo.ENTITIES_PATH, body)
  return status, json.loads(text)


def _rest_client(served, port, **kwargs):
  return client.NerClient(f"127.0.0.1:{port}", "ner", protocol="rest",
                          export_dir=served["export_dir"],
                          timeout_s=TIMEOUT_S, **kwargs)


def test_endpoint_answers_what_the_client_answers(served, server):
  status, answer = _post_json(server.rest_port, {"texts": TEXTS})
  assert status == 200, answer
  with _rest_client(served, server.rest_port) as ner:
    expected = ner.predict_records(TEXTS)
  assert answer["records"] == expected
  assert (answer["model"], answer["version"], answer["signature"],
          answer["notice"]) == ("ner", 1, "predict_examples", "")
  assert answer["entity_types"] == ["LOC", "ORG", "PER"]
  # Not vacuous: entities found, a Latin word split into word-pieces.
  assert all(record["entities"] for record in answer["records"][:3])
  assert answer["records"][4]["tokens"] == ["Zhang", "San", "went", "to",
                                            "ABC", "corp", "."]
  # predictions.jsonl of run_ner.py --do_predict on the same texts agrees.
  for record, trainer_record in zip(answer["records"], served["records"]):
    assert record["tags"] == trainer_record["tags"]


def test_one_text_answers_its_record(served, server):
  text = TEXTS[-1]
  status, answer = _post_json(server.rest_port, {"text": text})
  assert status == 200, answer
  with _rest_client(served, server.rest_port) as ner:
    assert answer["records"] == ner.predict_records([text])
    entities = ner.predict([text])[0]
  assert entities
  # Character offsets count code points: U+20000 is one character.
  assert [(e["type"], e["text"], e["start"], e["end"]) for e in entities] == [
      (e["type"], e["text"], e["char_start"], e["char_end"])
      for e in answer["records"][0]["entities"]]
  assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)


@pytest.mark.parametrize("body, message", [
    ({"text": ""}, "The text is empty: type a sentence to tag."),
    ({"text": " \n\t"}, "The text is empty: type a sentence to tag."),
    ({"texts": ["张三", " "]}, "Text 1 is empty: type a sentence to tag."),
    ({"text": "京" * (demo.MAX_TEXT_CHARS + 1)},
     "The text has 5,001 characters; the demo tags at most 5,000. Shorten "
     "it, or tag long documents with python -m serving.client --input_file."),
    ({"text": 3}, "The text must be a string, not int."),
    ({"texts": []}, '"texts" must be a list of 1 to 64 strings.'),
    ({"texts": "张三"}, '"texts" must be a list of 1 to 64 strings.'),
    ({"texts": ["x"] * 65}, '"texts" must be a list of 1 to 64 strings.'),
    ({"txt": "张三"}, 'The body must be a JSON object with "text": "..." '
                     '(one text) or "texts": ["...", ...].'),
    (["张三"], 'The body must be a JSON object with "text": "..." '
               '(one text) or "texts": ["...", ...].'),
])
def test_bad_requests_get_400_with_a_message(server, body, message):
  assert _post_json(server.rest_port, body) == (400, {"error": message})


def test_invalid_json_gets_400(server):
  status, answer = _post_json(server.rest_port, b"{not json")
  assert status == 400
  assert answer["error"].startswith("The body is not valid JSON: ")
  status, answer = _post_json(server.rest_port, b"\xff\xfe")
  assert status == 400
  assert answer["error"].startswith("The body is not valid JSON: ")


def test_page_is_served_self_contained(server):
  for path in ("/", "/?text=%E5%BC%A0%E4%B8%89"):
    status, content_type, page = _request(server.rest_port, path)
    assert (status, content_type) == (200, "text/html; charset=utf-8")
  assert page.startswith("<!DOCTYPE html>")
  for needle in ('<textarea id="text"', 'id="submit"', 'id="highlighted"',
                 'id="entities"', f'"endpoint": "{demo.ENTITIES_PATH}"',
                 '<b id="model-name">ner</b>', "version 1"):
    assert needle in page, needle
  # Nothing is fetched at view time: no external script, style or image,
  # and the browser is told to fetch nothing but from this server.
  with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/",
                              timeout=TIMEOUT_S) as reply:
    policy = reply.headers["Content-Security-Policy"]
  assert policy.startswith("default-src 'none';")
  assert "connect-src 'self'" in policy
  for needle in ("http://", "https://", "src=", "<link rel=\"stylesheet\""):
    assert needle not in page, needle
  # The TF Serving API is unchanged beside it.
  status, _, body = _request(server.rest_port, "/v1/models/ner")
  assert status == 200 and json.loads(body)["model_version_status"]


class _FakeManager:
  """A manager with a hostile model name and no version loaded."""
  model_name = "<script>alert('x')</script>&"

  def get(self, unused_name, unused_version=None):
    raise input_checks.ServingError(
        grpc.StatusCode.NOT_FOUND,
        "No version of <b>x</b> is loaded yet.")


def test_page_escapes_every_value():
  page = demo.page_html(_FakeManager())
  assert "<script>alert" not in page
  assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in page
  assert "No version of &lt;b&gt;x&lt;/b&gt; is loaded yet." in page
  assert "no version loaded" in page
  config = page.split('<script type="application/json" id="demo-config">')[1]
  config = config.split("</script>")[0]
  assert "<" not in config and json.loads(config)["model"] == (
      _FakeManager.model_name)


def _version_without(tmp_path, served, *names):
  """A copy of the served version folder without the files `names`."""
  version_dir = tmp_path / "export" / "1"
  shutil.copytree(served["version_dir"], version_dir)
  for name in names:
    os.remove(version_dir / name)
  return version_dir


def test_pipeline_plan(tmp_path, served):
  all_signatures = list(schema.SIGNATURES)
  assert demo.pipeline_plan(served["version_dir"], all_signatures) == (
      "predict_examples", "")
  assert demo.pipeline_plan(served["version_dir"], ["serving_default"]) == (
      "serving_default", "")
  bare = _version_without(tmp_path, served, "assets/vocab.txt")
  signature, notice = demo.pipeline_plan(str(bare), all_signatures)
  assert signature == "predict_text"
  assert notice.startswith("This export has no assets/vocab.txt, so the demo "
                           "cannot split words like the client.")
  with pytest.raises(input_checks.ServingError) as caught:
    demo.pipeline_plan(str(bare), ["serving_default", "predict_examples"])
  assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
  assert caught.value.message.startswith(
      f"This export (version {bare.name}) has no assets/vocab.txt, and no "
      "predict_text signature: the demo needs the vocab")
  assert str(tmp_path) not in caught.value.message  # no paths to clients


def test_export_without_vocab_says_so_and_uses_predict_text(tmp_path, served):
  version_dir = _version_without(tmp_path, served, "assets/vocab.txt")
  texts = serving_fixtures.CJK_ONLY_PREDICT
  with local_server.LocalModelServer("ner", str(version_dir.parent),
                                     port=0, mount=demo) as running:
    status, answer = _post_json(running.rest_port, {"texts": texts})
    _, _, page = _request(running.rest_port, "/")
    with client.NerClient(f"127.0.0.1:{running.rest_port}", "ner",
                          protocol="rest", signature="predict_text",
                          timeout_s=TIMEOUT_S) as ner:
      expected = ner.predict_records(texts)
  assert status == 200, answer
  assert answer["signature"] == "predict_text"
  assert answer["notice"].startswith("This export has no assets/vocab.txt")
  assert answer["records"] == expected
  assert answer["entity_types"] == ["LOC", "ORG", "PER"]
  # The page says it before any text is sent.
  assert "This export has no assets/vocab.txt" in page
  for record, trainer_record in zip(answer["records"], served["records"]):
    assert record["tags"] == trainer_record["tags"]
