"""What the REST front checks before it answers: time, connections, browsers.

  `RequestDeadlines`  a whole-request deadline (request line, headers and
                      body): a watchdog shuts the socket's reading side when
                      it passes, however slowly the bytes trickle in (the
                      per-read timeout alone let one byte every 5 s hold a
                      connection forever)
  `AddressSlots`      open connections per client address, so one address
                      cannot take every connection the server has
  `check_host`        the Host header must name this server (DNS rebinding:
                      a web page whose name resolves to 127.0.0.1)
  `check_origin`      a POST from a browser must come from this server's own
                      origin (cross-site request forgery)
  `BoundedHTTPServer` a thread per connection, within both connection bounds
  `check_json_content_type`  the demo's POSTs must say application/json,
                      which a cross-site form or `fetch` cannot send without
                      asking first (a CORS preflight this server refuses)

Refusals are `input_checks.ServingError`s: 403 (PERMISSION_DENIED) for a
foreign Host or Origin, 415 for another content type.
"""

import http.server
import ipaddress
import json
import logging
import socket
import sys
import threading
import time
from typing import Collection, Dict, Optional
import urllib.parse

import grpc

from serving.server import input_checks

_LOG = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 16
_WATCH_INTERVAL_S = 0.1
# Names every loopback-bound server answers to.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("", "0.0.0.0", "::")


class RequestDeadlines:
  """Shuts the reading side of sockets whose request is overdue.

  `arm(sock, seconds)` when a request starts, `disarm(sock)` once its body
  has arrived; a socket still armed at its deadline gets
  `shutdown(SHUT_RD)`: its blocked read returns end-of-file at once, the
  handler sees `expired(sock)` and answers 408 (writing still works).
  """

  def __init__(self, interval_s: float = _WATCH_INTERVAL_S):
    self._deadlines: Dict[socket.socket, float] = {}
    self._expired = set()
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._interval_s = interval_s
    self._thread = threading.Thread(target=self._watch, name="rest-deadlines",
                                    daemon=True)
    self._thread.start()

  def arm(self, sock: socket.socket, seconds: float) -> None:
    with self._lock:
      self._deadlines[sock] = time.monotonic() + seconds
      self._expired.discard(sock)

  def disarm(self, sock: socket.socket) -> None:
    with self._lock:
      self._deadlines.pop(sock, None)

  def forget(self, sock: socket.socket) -> None:
    with self._lock:
      self._deadlines.pop(sock, None)
      self._expired.discard(sock)

  def expired(self, sock: socket.socket) -> bool:
    with self._lock:
      return sock in self._expired

  def _watch(self) -> None:
    while not self._stop.wait(self._interval_s):
      now = time.monotonic()
      with self._lock:
        overdue = [sock for sock, deadline in self._deadlines.items()
                   if deadline <= now]
        for sock in overdue:
          del self._deadlines[sock]
          self._expired.add(sock)
      for sock in overdue:
        try:
          sock.shutdown(socket.SHUT_RD)
        except OSError:
          pass  # already closed

  def stop(self) -> None:
    self._stop.set()


class AddressSlots:
  """Counts open connections per client address, up to `per_address`."""

  def __init__(self, per_address: int):
    self.per_address = per_address
    self._open: Dict[str, int] = {}
    self._lock = threading.Lock()

  def acquire(self, address: str) -> bool:
    """Takes a slot for `address`; False when it has `per_address` open."""
    with self._lock:
      if self._open.get(address, 0) >= self.per_address:
        return False
      self._open[address] = self._open.get(address, 0) + 1
      return True

  def release(self, address: str) -> None:
    with self._lock:
      self._open[address] -= 1
      if not self._open[address]:
        del self._open[address]


def _hostname(authority: str) -> str:
  """The host of a Host header or an origin's authority, lower case.

  Example: "LocalHost:8501" -> "localhost"; "[::1]:8501" -> "::1".
  """
  authority = authority.strip().lower()
  if authority.startswith("["):
    return authority[1:].split("]", 1)[0]
  return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _is_ip(name: str) -> bool:
  try:
    ipaddress.ip_address(name)
    return True
  except ValueError:
    return False


def allowed_host_names(bound_host: str,
                       extra: Collection[str] = ()) -> frozenset:
  """The host names a request's Host header may carry.

  The bound address, the loopback names, and `extra` (--rest_allowed_hosts).

  Example: ("127.0.0.1", ["ner.internal"]) -> {"127.0.0.1", "localhost",
  "::1", "ner.internal"}.
  """
  return frozenset({_hostname(bound_host) if bound_host else "",
                    *LOOPBACK_NAMES, *(name.lower() for name in extra)}
                   - {""})


def check_host(host_header: Optional[str], allowed: Collection[str],
               bound_host: str) -> None:
  """Refuses a Host header that names another server (403).

  A server bound to every interface (0.0.0.0) also answers to any IP address
  (DNS rebinding needs a name). No Host header at all (HTTP/1.0 tools) is
  accepted: browsers always send one.

  Example: ("evil.example:8501", {"127.0.0.1", "localhost", "::1"},
  "127.0.0.1") -> PERMISSION_DENIED "Host 'evil.example:8501' is not this
  server's name; ...".
  """
  if host_header is None:
    return
  name = _hostname(host_header)
  if name in allowed or (bound_host in _WILDCARDS and _is_ip(name)):
    return
  raise input_checks.ServingError(
      grpc.StatusCode.PERMISSION_DENIED,
      f"Host {host_header!r} is not this server's name; it answers to "
      f"{', '.join(sorted(allowed))}. Add a name with --rest_allowed_hosts "
      "(a web page on another name is refused: DNS rebinding).")


def check_origin(origin: Optional[str], host_header: Optional[str]) -> None:
  """Refuses a POST sent by a page of another origin (403).

  Browsers send Origin with every cross-origin POST; tools (curl, the
  client) send none, which is accepted.

  Example: ("http://evil.example", "127.0.0.1:8501") -> PERMISSION_DENIED
  "Origin 'http://evil.example' is not this server (127.0.0.1:8501); ...".
  """
  if origin is None:
    return
  parsed = urllib.parse.urlsplit(origin.strip())
  if (parsed.scheme == "http" and host_header is not None
      and parsed.netloc.lower() == host_header.strip().lower()):
    return
  raise input_checks.ServingError(
      grpc.StatusCode.PERMISSION_DENIED,
      f"Origin {origin!r} is not this server ({host_header}); a page of "
      "another site may not send it requests (cross-site request forgery).")


def check_json_content_type(content_type: Optional[str]) -> None:
  """Refuses a body not declared application/json (415).

  Example: "text/plain" -> "Content-Type 'text/plain' is not
  application/json; send the body as JSON with Content-Type:
  application/json.".
  """
  media_type = (content_type or "").split(";", 1)[0].strip().lower()
  if media_type != "application/json":
    raise input_checks.ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Content-Type {content_type!r} is not application/json; send the "
        "body as JSON with Content-Type: application/json.",
        http_status=415)


class FrontPolicy:
  """The REST front's checks of one server (`rest_api.rest_handler`).

  Args:
    bound_host: the address the server listens on.
    allowed_hosts: more names the Host header may carry
      (--rest_allowed_hosts).
    request_timeout_s: whole-request deadline (--rest_request_timeout_seconds).

  Attributes:
    allowed_hosts: every accepted host name (`allowed_host_names`).
    deadlines: the `RequestDeadlines` watchdog (stopped by `close`).
  """

  def __init__(self, bound_host: str = "127.0.0.1",
               allowed_hosts: Collection[str] = (),
               request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S):
    self.bound_host = bound_host
    self.allowed_hosts = allowed_host_names(bound_host, allowed_hosts)
    self.request_timeout_s = request_timeout_s
    self.deadlines = RequestDeadlines()

  def close(self) -> None:
    self.deadlines.stop()


def _refuse_busy(connection: socket.socket, reason: str) -> None:
  """Answers 503 on a connection over a limit without a thread."""
  data = json.dumps({"error": f"The server is busy: {reason}. Retry "
                              "later."}).encode("utf-8")
  try:
    connection.settimeout(1.0)
    connection.sendall(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
        b"\r\nContent-Length: " + str(len(data)).encode() +
        b"\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + data)
    connection.setblocking(False)
    while connection.recv(1 << 16):  # what the client already sent: a close
      pass                          # with unread bytes would reset the answer
  except OSError:
    pass


class BoundedHTTPServer(http.server.ThreadingHTTPServer):
  """A thread per connection: at most `max_connections` at once, and at most
  `max_connections_per_client` from one client address."""

  daemon_threads = True
  block_on_close = False  # stop() does not wait for slow clients

  def __init__(self, address, handler_class, max_connections: int,
               max_connections_per_client: Optional[int] = None,
               front: Optional[FrontPolicy] = None):
    super().__init__(address, handler_class)
    self.max_connections = max_connections
    self._slots = threading.BoundedSemaphore(max_connections)
    self._client_slots = AddressSlots(
        max_connections_per_client or max_connections)
    self.front = front

  def process_request(self, request, client_address):
    address = client_address[0]
    if not self._client_slots.acquire(address):
      _refuse_busy(request, f"{self._client_slots.per_address} connections "
                            f"from {address} are open "
                            "(--rest_max_connections_per_client)")
      self.shutdown_request(request)
      return
    if not self._slots.acquire(blocking=False):
      self._client_slots.release(address)
      _refuse_busy(request, f"{self.max_connections} connections are open "
                            "(--rest_max_connections)")
      self.shutdown_request(request)
      return
    try:
      super().process_request(request, client_address)
    except BaseException:
      self._slots.release()
      self._client_slots.release(address)
      raise

  def process_request_thread(self, request, client_address):
    try:
      super().process_request_thread(request, client_address)
    finally:
      self._slots.release()
      self._client_slots.release(client_address[0])

  def server_close(self):
    super().server_close()
    if self.front is not None:
      self.front.close()

  def handle_error(self, request, client_address):
    if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
      _LOG.debug("Client %s went away: %s", client_address, sys.exc_info()[1])
      return  # a client that left, not a server error
    super().handle_error(request, client_address)
