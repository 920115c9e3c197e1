"""Checks of a request's inputs, and TensorFlow's errors as clients read them.

The development server (`serving.server.model_manager`) refuses what TF Serving
refuses, with the gRPC status code TF Serving answers with and a message that
names the input, the value and what is allowed:

  `to_array`        one input to the signature's dtype and rank; refuses
                    lossy conversions (2.5 or 4294967306 for int32)
  `check_lengths`   texts over max_text_chars, windows over
                    max_position_embeddings, before any TensorFlow work
  `tf_error_reason` the reason in a TensorFlow error, without its framing

Errors are `ServingError`s; `serving.server.grpc_service` and
`serving.server.rest_api` turn them into gRPC aborts and HTTP errors.
"""

import base64
import json
import math
import re
import uuid
from typing import Any, Callable, Mapping, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf

from trainer import schema


class ServingError(Exception):
  """A request error with its gRPC status code.

  Attributes:
    code: `grpc.StatusCode`, e.g. INVALID_ARGUMENT or NOT_FOUND.
    message: what is wrong and what is allowed.
  """

  def __init__(self, code: grpc.StatusCode, message: str,
               http_status: Optional[int] = None):
    super().__init__(message)
    self.code = code
    self.message = message
    # The REST answer's status where the gRPC code's usual one does not fit
    # (415 for a wrong Content-Type); None: `rest_api.HTTP_STATUS`.
    self.http_status = http_status


def new_request_id() -> str:
  """A short random id naming one failed request in the log and the answer."""
  return uuid.uuid4().hex[:16]


def internal_error_message(request_id: str) -> str:
  """What a client hears about an unexpected error: the id, not the detail.

  Example: "Internal error (request id 3f2a...); the server log has the
  detail under this id."
  """
  return (f"Internal error (request id {request_id}); the server log has the "
          "detail under this id.")


# Deepest JSON a body may nest: TF Serving's inputs are at most a few levels
# deep, and Python's parser would fail on thousands (RecursionError).
MAX_JSON_DEPTH = 64


def _too_deep(value: Any) -> bool:
  """True when lists and objects nest deeper than `MAX_JSON_DEPTH`."""
  stack = [(value, 1)]
  while stack:
    item, depth = stack.pop()
    children = (item.values() if isinstance(item, dict)
                else item if isinstance(item, list) else ())
    for child in children:
      if isinstance(child, (list, dict)):
        if depth + 1 > MAX_JSON_DEPTH:
          return True
        stack.append((child, depth + 1))
  return False


def parse_json(raw: bytes) -> Any:
  """A request body as JSON, or INVALID_ARGUMENT saying why not.

  Raises:
    ServingError: INVALID_ARGUMENT for bytes that are not UTF-8 JSON, or that
      nest deeper than `MAX_JSON_DEPTH`.

  Example: b"[" * 10000 + b"]" * 10000 -> "The body nests JSON deeper than
  64 levels; requests nest at most 64.".
  """
  try:
    body = json.loads(raw.decode("utf-8"))
  except RecursionError:
    body = None
  except ValueError as error:  # UnicodeDecodeError included
    raise invalid_argument(f"The body is not valid JSON: {error}") from None
  if body is None and raw.strip() != b"null" or _too_deep(body):
    raise invalid_argument(f"The body nests JSON deeper than {MAX_JSON_DEPTH} "
                           f"levels; requests nest at most {MAX_JSON_DEPTH}.")
  return body


def check_utf8_text(name: str, text: str) -> None:
  """Refuses a JSON string holding a lone surrogate (\\ud800): not UTF-8.

  Example: ("Text 0", "ab\\ud800") -> "Text 0 holds a lone surrogate
  \\ud800 at character 2, which is not text; send UTF-8.".
  """
  try:
    text.encode("utf-8")
  except UnicodeEncodeError as error:
    raise invalid_argument(
        f"{name} holds a lone surrogate \\u{ord(text[error.start]):04x} at "
        f"character {error.start}, which is not text; send UTF-8.") from None


def invalid_argument(message: str) -> ServingError:
  """A `ServingError` with INVALID_ARGUMENT (HTTP 400)."""
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def unknown_signature(signature_name: str, signatures) -> ServingError:
  """INVALID_ARGUMENT naming the signature asked for and the ones there are."""
  return invalid_argument(f"Serving signature key \"{signature_name}\" not "
                          f"found; this model has "
                          f"{', '.join(sorted(signatures))}.")


def _as_bytes(value: Any) -> bytes:
  return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _map_nested(value: Any, function: Callable[[Any], Any]) -> Any:
  if isinstance(value, list):
    return [_map_nested(item, function) for item in value]
  return function(value)


def _json_bytes(value: Any) -> bytes:
  if isinstance(value, dict) and set(value) == {"b64"}:
    return base64.b64decode(value["b64"])
  if isinstance(value, str):
    check_utf8_text("A string input", value)
    return value.encode("utf-8")
  raise ValueError(f"expected a string or {{\"b64\": ...}}, got {value!r}")


def _dtype_range(dtype: tf.DType) -> Tuple[Any, Any]:
  """The smallest and largest finite value of a numeric dtype.

  Example: int32 -> (-2147483648, 2147483647).
  """
  if dtype.is_integer:
    info = np.iinfo(dtype.as_numpy_dtype)
    return int(info.min), int(info.max)
  info = np.finfo(dtype.as_numpy_dtype)
  return float(info.min), float(info.max)


def _check_json_numbers(key: str, value: Any, dtype: tf.DType,
                        bounds: Optional[Tuple[Any, Any]] = None) -> None:
  """Refuses JSON values `dtype` cannot hold exactly (numpy would wrap them).

  Example: ("input_ids", [[2, 4294967306]], int32) -> INVALID_ARGUMENT "Input
  input_ids holds 4294967306, outside the int32 range [-2147483648,
  2147483647]." (numpy would read it as 10).
  """
  bounds = bounds or _dtype_range(dtype)
  if isinstance(value, list):
    for item in value:
      _check_json_numbers(key, item, dtype, bounds)
    return
  allowed = (int,) if dtype.is_integer else (int, float)
  if isinstance(value, bool) or not isinstance(value, allowed):
    raise invalid_argument(f"Input {key} must be {dtype.name} but holds "
                           f"{value!r}.")
  if isinstance(value, float) and not math.isfinite(value):
    return  # inf and nan are float values too
  if not bounds[0] <= value <= bounds[1]:
    raise invalid_argument(f"Input {key} holds {value}, outside the "
                           f"{dtype.name} range [{bounds[0]}, {bounds[1]}].")


def _numpy_to_spec_dtype(key: str, array: np.ndarray,
                         spec: tf.TensorSpec) -> np.ndarray:
  """A numpy input in `spec`'s dtype: strings as object bytes, else exact."""
  if spec.dtype == tf.string:
    if array.dtype.kind not in ("O", "S", "U"):
      raise invalid_argument(f"Input {key} must be string (DT_STRING) but "
                             f"{array.dtype} was given.")
    return (np.vectorize(_as_bytes, otypes=[object])(array) if array.size
            else array.astype(object))
  if array.dtype != spec.dtype.as_numpy_dtype:
    given = (tf.as_dtype(array.dtype).name if array.dtype.kind != "O"
             else "string")
    raise invalid_argument(f"Input {key} must be {spec.dtype.name} but "
                           f"{given} was given.")
  return array


def to_array(key: str, value: Any, spec: tf.TensorSpec) -> np.ndarray:
  """Converts one input to `spec`'s dtype, refusing lossy conversions.

  Args:
    key: the input's name (for messages).
    value: numpy array (gRPC) or nested lists (REST JSON; strings may be
      {"b64": ...}).
    spec: the signature's `tf.TensorSpec` for it.

  Raises:
    ServingError: INVALID_ARGUMENT for a wrong dtype, a value outside the
      dtype's range, a wrong rank or fixed size.

  Example: ("input_ids", [[2, 5, 3]], int32 [None, None]) -> int32
  [[2, 5, 3]]; ("input_ids", [[2.5]], ...) -> INVALID_ARGUMENT "Input
  input_ids must be int32 but holds 2.5.".
  """
  if isinstance(value, np.ndarray):
    array = _numpy_to_spec_dtype(key, value, spec)
  else:  # JSON lists
    try:
      if spec.dtype == tf.string:
        array = np.array(_map_nested(value, _json_bytes), dtype=object)
      else:
        _check_json_numbers(key, value, spec.dtype)
        array = np.array(value, dtype=spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError) as error:
      raise invalid_argument(f"Input {key} is not a rectangular "
                             f"{spec.dtype.name} array: {error}") from None
  if spec.shape.rank is not None and array.ndim != spec.shape.rank:
    raise invalid_argument(f"Input {key} must have rank {spec.shape.rank} "
                           f"(shape {spec.shape}) but has shape "
                           f"{list(array.shape)}.")
  for index, size in enumerate(spec.shape.as_list() if spec.shape.rank
                               else []):
    if size is not None and array.shape[index] != size:
      raise invalid_argument(f"Input {key} dimension {index} must be {size}, "
                             f"not {array.shape[index]}.")
  return array


def check_batch(arrays: Mapping[str, np.ndarray]) -> None:
  """Refuses inputs of different batch sizes or [batch, seq_len] shapes.

  Raises:
    ServingError: INVALID_ARGUMENT naming every input's size or shape.

  Example: {"input_ids": [1, 2] array, "input_mask": [1, 1] array} ->
  "Inputs have mismatched shapes: {'input_ids': [1, 2], 'input_mask':
  [1, 1]}; input_ids, input_mask take arrays of one shape [batch, seq_len].".
  """
  batch_sizes = {key: array.shape[0] for key, array in arrays.items()}
  if len(set(batch_sizes.values())) > 1:
    raise invalid_argument(f"Inputs have different batch sizes: "
                           f"{batch_sizes}.")
  if 0 in batch_sizes.values():
    raise invalid_argument("Empty batch: every input has 0 rows; send at "
                           "least one.")
  shapes = {key: array.shape for key, array in arrays.items()
            if array.ndim >= 2}
  if len(set(shapes.values())) > 1:
    raise invalid_argument(
        "Inputs have mismatched shapes: "
        f"{ {key: list(shape) for key, shape in shapes.items()} }; "
        f"{', '.join(sorted(shapes))} take arrays of one shape "
        "[batch, seq_len].")


_TF_NODE = re.compile(r"\s*\[\[\{\{node [^}]*\}\}\]\]")
_TF_OP = re.compile(r"\s*\[Op:[^\]]*\]\s*$")
_ASSERTION = re.compile(r"assertion failed: \[(.*)\]")


def tf_error_reason(message: str) -> str:
  """The reason in a TensorFlow error message, without TF's framing.

  TF 2.15 reports a failed op as "Graph execution error:", the Python stack
  where the node was defined, the reason, then the node and function names.
  Clients get the reason alone; an assertion with one message is unwrapped.

  Example: "Graph execution error:\\n\\nDetected at node check defined at (most
  recent call last):\\n  File \"x.py\", line 3, in <module>\\n\\nassertion
  failed: [input_mask must be 0 or 1; found 7 ...]\\n\\t [[{{node check}}]]
  [Op:__inference_pruned_81]" -> "input_mask must be 0 or 1; found 7 ...".
  """
  reasons = []
  in_stack = False
  for line in message.splitlines():
    if line.strip() == "Graph execution error:":
      continue
    if line.startswith("Detected at node"):
      in_stack = True
      continue
    if in_stack and (not line.strip() or line[:1].isspace()):
      continue  # a stack frame, or the blank line after them
    in_stack = False
    line = _TF_OP.sub("", _TF_NODE.sub("", line)).strip()
    if line:
      reasons.append(line)
  reason = " ".join(reasons) or message.strip()
  assertion = _ASSERTION.fullmatch(reason)
  if assertion and "] [" not in assertion.group(1):
    reason = assertion.group(1)
  return reason


def _utf8_characters(key: str, row: int, value: bytes) -> int:
  """The number of characters in UTF-8 `value`, or INVALID_ARGUMENT."""
  try:
    return len(value.decode("utf-8"))
  except UnicodeDecodeError as error:
    raise invalid_argument(
        f"Input {key} row {row} is not UTF-8: byte {error.start} is "
        f"{value[error.start:error.start + 1]!r}.") from None


def check_lengths(arrays: Mapping[str, np.ndarray],
                  limits: Mapping[str, int]) -> None:
  """Refuses over-long texts and windows before any TensorFlow work.

  The exported graph checks the same limits (`trainer.export.serving_checks`)
  with the same words; checking here first means a huge request costs its parse,
  not per-character tensors.

  Args:
    arrays: the request's inputs after `to_array`.
    limits: from ner_config.json: max_text_chars, max_position_embeddings
      (either may be absent: an older export; the graph still checks).

  Raises:
    ServingError: INVALID_ARGUMENT naming the input, the row and the limit.

  Example: ({"text": [b"ab", 9000 characters]}, {"max_text_chars": 8192}) ->
  "predict_text: text row 1 has 9000 characters; max_text_chars=8192 allows
  at most 8192 characters; split it, ...".
  """
  max_chars = limits.get("max_text_chars")
  text = arrays.get(schema.TEXT_INPUT_KEY)
  if max_chars and text is not None and text.dtype == object:
    for row, value in enumerate(text.reshape(-1).tolist()):
      if len(value) > 4 * max_chars:  # surely too long: not even decoded
        unit, length, limit = "bytes", len(value), 4 * max_chars
      else:
        unit, length, limit = ("characters", _utf8_characters(
            schema.TEXT_INPUT_KEY, row, value), max_chars)
      if length > limit:
        raise invalid_argument(
            f"predict_text: text row {row} has {length} {unit}; max_text_chars="
            f"{max_chars} allows at most {limit} {unit}; split it, or send "
            "windows to serving_default (the client does)")
  max_positions = limits.get("max_position_embeddings")
  ids = arrays.get(schema.INPUT_IDS)
  if max_positions and ids is not None and ids.ndim == 2 \
      and ids.shape[1] > max_positions:
    raise invalid_argument(
        f"{schema.INPUT_IDS} has {ids.shape[1]} positions; this model takes "
        f"at most {max_positions} (max_position_embeddings)")
