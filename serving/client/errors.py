"""The client's one error: what a served model (or the connection) answered.

Pure Python: the transports raise it, and so does `request_codec` when an answer
does not fit the request.
"""


class PredictionError(RuntimeError):
  """A request the server answered with an error (or never answered).

  Attributes:
    code: gRPC status name ("INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE",
      ...), also for REST (from the HTTP status).
    message: the server's (or the connection's) explanation.
  """

  def __init__(self, code: str, message: str):
    super().__init__(f"{code}: {message}")
    self.code = code
    self.message = message
