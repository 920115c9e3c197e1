"""Slow clients and web pages cannot drive the REST front: issue 24, 2 and 5.

2. 64 connections sending one byte every 5 s kept every other client at 503
   or a broken pipe for 30 s: the read timeout applied per read. Now a whole
   request (line, headers, body) must arrive within
   --rest_request_timeout_seconds, and one client address holds at most
   --rest_max_connections_per_client connections, so a good client gets
   through while the trickle goes on.
5. A web page could drive the demo and predict endpoints with a cross-origin
   text/plain POST, or by DNS rebinding; docker-compose.yml published 8500 and
   8501 on every interface. Now a foreign Host gets 403, a POST from a foreign
   Origin 403, a demo POST that is not application/json 415, and the compose
   file binds 127.0.0.1.
"""

import http.client
import json
import os
import re
import socket
import threading
import time

import grpc
import pytest

from serving.demo import endpoint as demo
from serving.server import input_checks
from serving.server import rest_guards
from tests import serving_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREDICT = "/v1/models/ner:predict"
GOOD_BODY = {"signature_name": "predict_text", "instances": ["张三在北京工作。"]}
# The test's second client address (all of 127.0.0.0/8 is loopback).
OTHER_ADDRESS = "127.0.0.2"


@pytest.fixture(scope="module")
def manager():
  return serving_fixtures.loaded_manager()


def _request(port, method, path, body=None, headers=None, source=None):
  """(status, JSON answer) over http.client, from `source` if given."""
  connection = http.client.HTTPConnection(
      "127.0.0.1", port, timeout=20,
      source_address=(source, 0) if source else None)
  try:
    data = body if isinstance(body, bytes) or body is None else (
        json.dumps(body).encode())
    connection.request(method, path, body=data, headers=headers or {})
    reply = connection.getresponse()
    return reply.status, json.loads(reply.read() or b"null")
  finally:
    connection.close()


# --- 2. Slow clients ---------------------------------------------------------------


def _trickle(port, prefix, outcome, interval_s=0.3, limit_s=10.0):
  """Sends `prefix`, then one byte every `interval_s`, until the server ends.

  Puts (seconds until the server closed or None, what it answered) in
  `outcome`.
  """
  sock = socket.create_connection(("127.0.0.1", port), timeout=interval_s)
  started = time.monotonic()
  received = b""
  try:
    sock.sendall(prefix)
    while time.monotonic() - started < limit_s:
      try:
        chunk = sock.recv(65536)
        if not chunk:
          outcome.append((time.monotonic() - started, received))
          return
        received += chunk
        continue  # answered: read the rest; a byte sent now may meet a
        # closed socket, and the reset would drop the unread body
      except socket.timeout:
        pass
      if received:
        continue
      try:
        sock.sendall(b"x")
      except OSError:
        outcome.append((time.monotonic() - started, received))
        return
    outcome.append((None, received))
  finally:
    sock.close()


def test_trickling_clients_cannot_hold_the_server(manager):
  """8 trickling connections from one address, as many as the server has:
  half are refused at once (the per-client bound), another client gets
  through, and the rest are answered 408 and closed at the deadline."""
  head = b"POST /v1/models/ner:predict HTTP/1.1\r\nHost: localhost\r\n"
  prefixes = [head] * 4 + [head + b"Content-Length: 1000\r\n\r\n"] * 4
  with serving_fixtures.rest_server(
      manager, read_timeout_s=1.0, request_timeout_s=1.5, max_connections=8,
      max_connections_per_client=4) as port:
    outcomes = []
    threads = [threading.Thread(target=_trickle, args=(port, prefix, outcomes))
               for prefix in prefixes]
    for thread in threads:
      thread.start()
    time.sleep(0.5)  # the trickles hold their connections
    status, answer = _request(port, "POST", PREDICT, GOOD_BODY,
                              source=OTHER_ADDRESS)
    assert status == 200 and answer["predictions"][0]["lengths"] == 8
    for thread in threads:
      thread.join(timeout=20)
  assert len(outcomes) == 8
  overdue = {"error": "The request did not arrive within 1.5 s "
                      "(--rest_request_timeout_seconds); send it whole, "
                      "without pauses."}
  for closed_after_s, received in outcomes:
    # 503s went to the trickles over the per-client bound, at once.
    assert closed_after_s is not None and closed_after_s < 3.5, outcomes
    status, answer = serving_fixtures.http_status_and_json(received)
    assert (status, answer) in ((408, overdue), (503, {
        "error": "The server is busy: 4 connections from 127.0.0.1 are open "
                 "(--rest_max_connections_per_client). Retry later."})), (
                     status, answer)
  assert sum(serving_fixtures.http_status_and_json(received)[0] == 408
             for _, received in outcomes) == 4


def test_one_address_holds_at_most_its_share(manager):
  with serving_fixtures.rest_server(
      manager, max_connections=8, max_connections_per_client=2) as port:
    holders = [socket.create_connection(("127.0.0.1", port))
               for _ in range(2)]
    try:
      time.sleep(0.2)
      received, closed_after_s = serving_fixtures.raw_exchange(
          port, b"GET /v1/models/ner HTTP/1.1\r\nHost: localhost\r\n\r\n")
      assert closed_after_s is not None and closed_after_s < 1
      assert serving_fixtures.http_status_and_json(received) == (503, {
          "error": "The server is busy: 2 connections from 127.0.0.1 are open "
                   "(--rest_max_connections_per_client). Retry later."})
      assert _request(port, "GET", "/v1/models/ner",
                      source=OTHER_ADDRESS)[0] == 200
    finally:
      for holder in holders:
        holder.close()


def test_the_deadline_leaves_the_model_time_alone(manager):
  """Only the request's arrival is timed: a slow model is not a slow client."""
  loaded = manager.get("ner")
  run = loaded.signatures["predict_text"]

  def slow(**arrays):
    time.sleep(1.2)
    return run(**arrays)

  with serving_fixtures.rest_server(manager, request_timeout_s=0.5) as port:
    loaded.signatures["predict_text"] = slow
    try:
      status, answer = _request(port, "POST", PREDICT, GOOD_BODY)
    finally:
      loaded.signatures["predict_text"] = run
  assert status == 200 and answer["predictions"][0]["lengths"] == 8


# --- 5. Browsers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def port(manager):
  with serving_fixtures.rest_server(manager, mount=demo,
                                    allowed_hosts=["ner.internal"]) as bound:
    yield bound


@pytest.mark.parametrize("host,status", [
    ("evil.example:{port}", 403), ("localhost.evil.example", 403),
    ("localhost:{port}", 200), ("127.0.0.1:{port}", 200), ("[::1]:{port}", 200),
    ("NER.internal:{port}", 200),
])
def test_the_host_header_must_name_this_server(port, host, status):
  headers = {"Host": host.format(port=port)}
  for method, path, body in (("GET", "/v1/models/ner", None),
                             ("POST", PREDICT, GOOD_BODY),
                             ("GET", "/", None)):
    if method == "GET" and path == "/":
      connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
      connection.request(method, path, headers=headers)
      got = connection.getresponse().status
      connection.close()
    else:
      got = _request(port, method, path, body, headers)[0]
    assert got == status, (method, path)
  if status == 403:
    assert _request(port, "GET", "/v1/models/ner", headers=headers)[1] == {
        "error": f"Host {headers['Host']!r} is not this server's name; it "
                 "answers to 127.0.0.1, ::1, localhost, ner.internal. Add a "
                 "name with --rest_allowed_hosts (a web page on another name "
                 "is refused: DNS rebinding)."}


def test_a_server_on_every_interface_answers_to_ip_addresses():
  allowed = rest_guards.allowed_host_names("0.0.0.0")
  rest_guards.check_host("10.1.2.3:8501", allowed, "0.0.0.0")
  rest_guards.check_host("[fe80::1]:8501", allowed, "0.0.0.0")
  with pytest.raises(input_checks.ServingError) as error:
    rest_guards.check_host("evil.example:8501", allowed, "0.0.0.0")
  assert error.value.code == grpc.StatusCode.PERMISSION_DENIED
  with pytest.raises(input_checks.ServingError):
    rest_guards.check_host("10.1.2.3:8501", rest_guards.allowed_host_names(
        "127.0.0.1"), "127.0.0.1")


def test_cross_site_posts_are_refused(port):
  """What a page on another site can send without a CORS preflight."""
  text = json.dumps({"text": "张三在北京工作。"}).encode()
  evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
  assert _request(port, "POST", demo.ENTITIES_PATH, text, evil) == (403, {
      "error": f"Origin 'http://evil.example' is not this server (127.0.0.1:"
               f"{port}); a page of another site may not send it requests "
               "(cross-site request forgery)."})
  assert _request(port, "POST", PREDICT, GOOD_BODY, evil)[0] == 403
  assert _request(port, "POST", demo.ENTITIES_PATH, text,
                  {"Origin": "null", "Content-Type": "application/json"}
                  )[0] == 403
  # No Origin (a form-less tool), but not declared JSON: the demo refuses.
  assert _request(port, "POST", demo.ENTITIES_PATH, text,
                  {"Content-Type": "text/plain"}) == (415, {
                      "error": "Content-Type 'text/plain' is not "
                               "application/json; send the body as JSON with "
                               "Content-Type: application/json."})


def test_the_page_itself_and_tools_still_get_through(port):
  text = json.dumps({"text": "张三在北京工作。"}).encode()
  same_origin = {"Origin": f"http://127.0.0.1:{port}",
                 "Content-Type": "application/json; charset=utf-8"}
  status, answer = _request(port, "POST", demo.ENTITIES_PATH, text,
                            same_origin)
  assert status == 200 and answer["records"][0]["text"] == "张三在北京工作。"
  # curl -d sends application/x-www-form-urlencoded and no Origin.
  status, answer = _request(port, "POST", PREDICT, GOOD_BODY, {
      "Content-Type": "application/x-www-form-urlencoded"})
  assert status == 200 and answer["predictions"][0]["lengths"] == 8


def test_docker_compose_publishes_on_loopback_only():
  with open(os.path.join(ROOT, "docker-compose.yml"), encoding="utf-8") as f:
    compose = f.read()
  published = re.findall(r'^\s*-\s*"([^"]+:\d+)"', compose, re.MULTILINE)
  assert published == ["127.0.0.1:8500:8500", "127.0.0.1:8501:8501"]


def test_the_new_flags_reach_the_server(tmp_path):
  from serving.server import local_server  # pylint: disable=g-import-not-at-top
  args = local_server.parse_args(["--model_base_path=/m"])
  assert (args.max_batch_rows, args.rest_request_timeout_seconds,
          args.rest_max_connections_per_client, args.rest_allowed_hosts) == (
              32, 30.0, 16, "")
  for flag in ("--max_batch_rows=0", "--rest_request_timeout_seconds=0",
               "--rest_max_connections_per_client=-1"):
    with pytest.raises(SystemExit):
      local_server.parse_args(["--model_base_path=/m", flag])
  with local_server.LocalModelServer(
      "ner", str(tmp_path), max_batch_rows=5,
      rest_allowed_hosts=["ner.internal"]) as server:
    assert server.manager.max_batch_rows == 5
    assert _request(server.rest_port, "GET", "/v1/models/ner", headers={
        "Host": "ner.internal"})[0] == 404  # allowed; no version yet
    assert _request(server.rest_port, "GET", "/v1/models/ner", headers={
        "Host": "other.internal"})[0] == 403
