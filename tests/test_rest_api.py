"""The development server's REST API: formats, status, metadata, errors."""

import email.message

import pytest

from serving.server import rest_api
from serving.server import input_checks
from tests import serving_fixtures


@pytest.fixture(scope="module")
def manager():
  return serving_fixtures.loaded_manager()


@pytest.fixture(scope="module")
def port(manager):
  with serving_fixtures.rest_server(manager) as bound:
    yield bound


_post = serving_fixtures.http_post
_get = serving_fixtures.http_get


def test_rest_predict_formats_without_http(manager):
  loaded = manager.get("ner")
  rows = rest_api.rest_predict(loaded, {"signature_name": "predict_text",
                                        "instances": ["张三", ""]})
  assert [row["lengths"] for row in rows["predictions"]] == [2, 0]
  assert sorted(rows["predictions"][0]) == ["label_ids", "lengths", "scores",
                                            "tags"]
  assert len(rows["predictions"][0]["tags"]) == 2
  columns = rest_api.rest_predict(loaded, {"signature_name": "predict_text",
                                           "inputs": ["张三", ""]})
  assert columns["outputs"]["lengths"] == [2, 0]
  assert columns["outputs"]["tags"][0] == rows["predictions"][0]["tags"]
  with pytest.raises(input_checks.ServingError,
                     match="The request body must be a JSON object."):
    rest_api.rest_predict(loaded, [1])
  with pytest.raises(input_checks.ServingError,
                     match="Every row needs every input"):
    rest_api.rest_predict(loaded, {"instances": [{"input_ids": [1]}, {}]})
  with pytest.raises(input_checks.ServingError,
                     match="Rows must be objects"):
    rest_api.rest_predict(loaded, {"instances": [[1, 2]]})
  with pytest.raises(input_checks.ServingError,
                     match="\"inputs\" must be an object"):
    rest_api.rest_predict(loaded, {"inputs": [[1, 2]]})


def test_model_status_and_metadata(port):
  assert _get(port, "/v1/models/ner") == (200, {"model_version_status": [{
      "version": "1", "state": "AVAILABLE",
      "status": {"error_code": "OK", "error_message": ""}}]})
  status, metadata = _get(port, "/v1/models/ner/versions/1/metadata")
  assert status == 200
  assert metadata["model_spec"] == {"name": "ner", "version": "1"}
  assert sorted(metadata["metadata"]["signature_def"]["signature_def"]) == [
      "predict_examples", "predict_text", "serving_default"]
  assert _get(port, "/v1/models/ner:predict") == (
      404, {"error": "Malformed request: GET /v1/models/ner:predict"})


IDS = [[2, 5, 3]]
REST_BAD_REQUESTS = [
    ("unknown model", "/v1/models/nope:predict", {"inputs": {}}, 404),
    ("unknown version", "/v1/models/ner/versions/9:predict", {"inputs": {}},
     404),
    ("bad path", "/v1/models/ner:explain", {"inputs": {}}, 404),
    ("not json", "/v1/models/ner:predict", b"{", 400),
    ("unknown signature", "/v1/models/ner:predict",
     {"signature_name": "classify", "inputs": {"input_ids": IDS}}, 400),
    ("missing input", "/v1/models/ner:predict",
     {"inputs": {"input_ids": IDS, "input_mask": IDS}}, 400),
    ("wrong dtype", "/v1/models/ner:predict",
     {"inputs": {"input_ids": [["a", "b"]], "input_mask": IDS,
                 "segment_ids": IDS}}, 400),
    ("float for int", "/v1/models/ner:predict",
     {"inputs": {"input_ids": [[2.5, 5, 3]], "input_mask": IDS,
                 "segment_ids": IDS}}, 400),
    ("ragged", "/v1/models/ner:predict",
     {"inputs": {"input_ids": [[2, 5], [2]], "input_mask": IDS,
                 "segment_ids": IDS}}, 400),
    ("empty batch", "/v1/models/ner:predict", {"instances": []}, 400),
    ("both formats", "/v1/models/ner:predict",
     {"instances": [1], "inputs": {}}, 400),
    ("too long", "/v1/models/ner:predict",
     {"signature_name": "predict_text", "inputs": ["张" * 9000]}, 400),
]


@pytest.mark.parametrize("name,path,body,status", REST_BAD_REQUESTS,
                         ids=[case[0] for case in REST_BAD_REQUESTS])
def test_rest_bad_request_then_good_request(port, name, path, body, status):
  code, answer = _post(port, path, body)
  assert code == status, (name, answer)
  assert set(answer) == {"error"} and answer["error"]
  code, answer = _post(port, "/v1/models/ner:predict", {
      "signature_name": "predict_text", "instances": ["张三在北京工作。"]})
  assert code == 200
  assert len(answer["predictions"]) == 1
  assert answer["predictions"][0]["lengths"] == 8


def test_rest_row_and_columnar_formats_agree(port):
  rows = [{"input_ids": [2, 5, 3], "input_mask": [1, 1, 1],
           "segment_ids": [0, 0, 0]}]
  code, by_rows = _post(port, "/v1/models/ner/versions/1:predict",
                        {"instances": rows})
  assert code == 200
  code, by_columns = _post(port, "/v1/models/ner:predict", {"inputs": {
      "input_ids": [[2, 5, 3]], "input_mask": [[1, 1, 1]],
      "segment_ids": [[0, 0, 0]]}})
  assert code == 200
  assert by_rows["predictions"][0]["tags"] == by_columns["outputs"]["tags"][0]
  assert sorted(by_columns["outputs"]) == ["label_ids", "scores", "tags"]


def _headers(*pairs):
  headers = email.message.Message()
  for name, value in pairs:
    headers[name] = value
  return headers


@pytest.mark.parametrize("pairs,length", [
    ((), 0), ((("Content-Length", "12"),), 12),
    ((("Content-Length", " 12 "),), 12),
    ((("Content-Length", "12"), ("Content-Length", "12")), 12),
    ((("Content-Length", "100"),), 100)])
def test_body_length_reads_content_length(pairs, length):
  assert rest_api.body_length(_headers(*pairs), 100) == length


@pytest.mark.parametrize("pairs,code,message", [
    ((("Content-Length", "-1"),), "INVALID_ARGUMENT",
     "Content-Length must be a number of bytes, not '-1'."),
    ((("Content-Length", "1e3"),), "INVALID_ARGUMENT",
     "Content-Length must be a number of bytes, not '1e3'."),
    ((("Content-Length", "٣"),), "INVALID_ARGUMENT",
     "Content-Length must be a number of bytes, not '٣'."),
    ((("Content-Length", "1"), ("Content-Length", "2")), "INVALID_ARGUMENT",
     "Conflicting Content-Length headers: ['1', '2']."),
    ((("Content-Length", "101"),), "RESOURCE_EXHAUSTED",
     "The body has 101 bytes; this server takes at most 100 "
     "(--max_request_bytes). Send smaller batches."),
    ((("Transfer-Encoding", "chunked"),), "UNIMPLEMENTED",
     "Transfer-Encoding is not supported; send the body with a "
     "Content-Length."),
])
def test_body_length_refuses_bad_headers(pairs, code, message):
  with pytest.raises(input_checks.ServingError) as error:
    rest_api.body_length(_headers(*pairs), 100)
  assert (error.value.code.name, error.value.message) == (code, message)
  assert rest_api.HTTP_STATUS[error.value.code] in (400, 413, 501)


def test_status_json_lists_every_state():
  assert rest_api.status_json([(2, "AVAILABLE"), (1, "END")]) == {
      "model_version_status": [
          {"version": "2", "state": "AVAILABLE",
           "status": {"error_code": "OK", "error_message": ""}},
          {"version": "1", "state": "END",
           "status": {"error_code": "OK", "error_message": ""}}]}
