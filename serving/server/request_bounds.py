"""Request bounds checked from declared shapes and counts, before allocation.

A request says how big it is before it is big: a gRPC `TensorProto` declares
its shape (a 129-byte message may declare [16384, 16384] and hold one value,
which `tf.make_ndarray` would broadcast to 1 GiB), a JSON body's lists have
lengths, a serialized tf.Example counts its ids. The development server reads
those counts first and refuses, with INVALID_ARGUMENT naming the bound and the
flag, anything over:

  rows per request        --max_batch_rows (default `DEFAULT_MAX_BATCH_ROWS`)
  positions per row       the model's max_position_embeddings (ner_config.json;
                          `FALLBACK_MAX_POSITIONS` for an export without it)
  elements per tensor     rows x positions: ids of a full batch, characters
                          of predict_text, tf.Example ids

So the largest request the server works on is a full batch of full windows
(`max_elements`); its memory is measured by `bench/server_memory.py`.
Pure checks on counts: the caller passes shapes, lists or bytes.
"""

import dataclasses
from typing import Any, Iterable, Optional, Sequence

from google.protobuf import message
from tensorflow.core.example import example_pb2

from serving.server import input_checks
from trainer import schema

# The client's batch (`NerClient(batch_size=32)`) and TF Serving's
# max_batch_size in batching_parameters.txt. A full batch of 512-position
# rows costs the embedded default model (hidden 128) about 0.25 GB and MiniLM
# (6 layers, hidden 384) about 1 GB above its resting memory
# (bench/server_memory.py, bench/results/server_memory.json); the cost grows
# with rows, so lower it for larger models.
DEFAULT_MAX_BATCH_ROWS = 32
# Positions per row for an export whose ner_config.json lacks
# max_position_embeddings (BERT's usual 512).
FALLBACK_MAX_POSITIONS = 512
_ROWS_FLAG = "--max_batch_rows"


@dataclasses.dataclass(frozen=True)
class RequestBounds:
  """The bounds of one served version.

  Attributes:
    max_batch_rows: rows (windows, texts, examples) per request.
    max_positions: positions per row (the model's max_position_embeddings).
    max_text_chars: the longest predict_text text (0: unknown).
  """

  max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
  max_positions: int = FALLBACK_MAX_POSITIONS
  max_text_chars: int = 0

  @property
  def max_elements(self) -> int:
    """Elements per tensor: a full batch of full rows."""
    return self.max_batch_rows * self.max_positions

  def check_rows(self, key: str, rows: int) -> None:
    """Refuses more than `max_batch_rows` rows.

    Example: ("text", 100000) with max_batch_rows 32 -> INVALID_ARGUMENT
    "Input text has 100000 rows; this server takes at most 32 per request
    (--max_batch_rows). Send smaller batches.".
    """
    if rows > self.max_batch_rows:
      raise input_checks.invalid_argument(
          f"Input {key} has {rows} rows; this server takes at most "
          f"{self.max_batch_rows} per request ({_ROWS_FLAG}). Send smaller "
          "batches.")

  def check_positions(self, key: str, row: int, positions: int) -> None:
    """Refuses a row longer than the model's `max_positions`."""
    if positions > self.max_positions:
      raise input_checks.invalid_argument(
          f"Input {key} row {row} has {positions} positions; this model takes "
          f"at most {self.max_positions} (max_position_embeddings).")

  def check_elements(self, key: str, elements: int, unit: str) -> None:
    """Refuses a tensor of more than `max_elements` elements."""
    if elements > self.max_elements:
      raise input_checks.invalid_argument(
          f"Input {key} has {elements} {unit}; one request may hold at most "
          f"{self.max_elements} ({self.max_batch_rows} rows of "
          f"{self.max_positions} positions: {_ROWS_FLAG} x "
          "max_position_embeddings). Send smaller batches.")

  def check_declared_shape(self, key: str, dims: Sequence[int],
                           rank: Optional[int]) -> None:
    """Checks a gRPC tensor's declared shape before it is read.

    Args:
      key: the input's name.
      dims: `TensorProto.tensor_shape.dim` sizes, as declared.
      rank: the signature's rank for the input (None: any).

    Raises:
      input_checks.ServingError: INVALID_ARGUMENT for a negative size, a wrong
        rank, or a size over a bound.

    Example: ("input_ids", [16384, 16384], 2) -> "Input input_ids has 16384
    rows; this server takes at most 32 per request (--max_batch_rows). ...".
    """
    if any(size < 0 for size in dims):
      raise input_checks.invalid_argument(
          f"Input {key} declares shape {list(dims)}; sizes must be >= 0.")
    if rank is not None and len(dims) != rank:
      raise input_checks.invalid_argument(
          f"Input {key} must have rank {rank} but declares shape "
          f"{list(dims)}.")
    if dims:
      self.check_rows(key, dims[0])
    if len(dims) >= 2:
      self.check_positions(key, 0, dims[1])
    elements = 1
    for size in dims:
      elements *= size
    self.check_elements(key, elements, "elements")

  def check_json_value(self, key: str, value: Any,
                       rank: Optional[int]) -> None:
    """Checks a JSON input's list lengths before numpy reads it.

    Rows (the outer list) and, for rank-2 inputs, positions per row.

    Example: ("input_ids", [[2, 5, 3]] * 65, 2) -> "Input input_ids has 65
    rows; ...".
    """
    if not isinstance(value, list):
      return  # a scalar or an object: to_array refuses it by rank or dtype
    self.check_rows(key, len(value))
    if rank == 2:
      for row, items in enumerate(value):
        if isinstance(items, list):
          self.check_positions(key, row, len(items))

  def check_text(self, key: str, texts: Iterable[bytes]) -> None:
    """Refuses texts of more characters in all than a full batch holds.

    predict_text turns every character into a position (several windows per
    long text), so its texts share the element bound of a full batch, or
    one text of max_text_chars when that is more (one legal text always
    fits; the client sends at most `MAX_TEXT_CHARACTERS_PER_REQUEST`).

    Example: 64 texts of 200 characters, 64 rows of 64 positions and
    max_text_chars 8192 -> "Input text has 12800 characters in all; ...".
    """
    limit = max(self.max_elements, self.max_text_chars)
    characters = sum(len(text.decode("utf-8", "replace")) for text in texts)
    if characters > limit:
      raise input_checks.invalid_argument(
          f"Input {key} has {characters} characters in all; one request may "
          f"hold at most {limit} (the larger of {_ROWS_FLAG} x "
          f"max_position_embeddings = {self.max_elements} and max_text_chars "
          f"= {self.max_text_chars}). Send fewer texts per request.")

  def check_examples(self, serialized: Iterable[bytes]) -> None:
    """Counts each tf.Example's ids before the graph pads them.

    `tf.io.parse_example` pads every example to the longest one, so one long
    example in a full batch would cost rows x its length: each feature list
    must fit `max_positions`. `word_positions`, once padded, can no longer be
    told from its padding, so it is checked here per example: one entry per
    input id, in every example of the request or in none, each -1 or a word
    index (the exported graph checks what it still can: widths and range).

    Example: [an Example with 70,000 input_ids] -> "Input examples row 0 has
    70000 positions; this model takes at most 512 (...)"; an Example with 5
    input_ids and 2 word_positions -> "Input examples row 0: word_positions
    has 2 entries for 5 input_ids; ...".
    """
    with_positions = []
    for row, data in enumerate(serialized):
      example = example_pb2.Example()
      try:
        example.ParseFromString(bytes(data))
      except message.DecodeError:
        raise input_checks.invalid_argument(
            f"Input {schema.EXAMPLES_INPUT_KEY} row {row} is not a serialized "
            "tf.Example.") from None
      counts = {}
      for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        counts[key] = len(getattr(feature, kind).value) if kind else 0
        self.check_positions(schema.EXAMPLES_INPUT_KEY, row, counts[key])
      with_positions.append(counts.get(schema.WORD_POSITIONS, 0) > 0)
      if with_positions[-1]:
        _check_word_positions(row, example.features.feature,
                              counts.get(schema.INPUT_IDS, 0))
    if any(with_positions) and not all(with_positions):
      raise input_checks.invalid_argument(
          f"Input {schema.EXAMPLES_INPUT_KEY}: {schema.WORD_POSITIONS} is in "
          f"rows {[row for row, has in enumerate(with_positions) if has]} but "
          f"not in rows "
          f"{[row for row, has in enumerate(with_positions) if not has]}; "
          "send it for every example of a request or for none.")


def _check_word_positions(row: int, features, ids: int) -> None:
  """One word position per id, each -1 or a word index (an int32)."""
  word_positions = features[schema.WORD_POSITIONS].int64_list.value
  where = f"Input {schema.EXAMPLES_INPUT_KEY} row {row}: {schema.WORD_POSITIONS}"
  if len(word_positions) != ids:
    raise input_checks.invalid_argument(
        f"{where} has {len(word_positions)} entries for {ids} "
        f"{schema.INPUT_IDS}; send one per id ({schema.NO_WORD} where no word "
        "starts), or leave it out.")
  for position, value in enumerate(word_positions):
    if not schema.NO_WORD <= value < 2 ** 31:
      raise input_checks.invalid_argument(
          f"{where} holds {value} at position {position}; each entry is "
          f"{schema.NO_WORD} (no word starts) or a word index in "
          f"[0, {2 ** 31}).")


def bounds_for(limits: dict, max_batch_rows: int) -> RequestBounds:
  """The `RequestBounds` of a version (its `ner_config.json` limits).

  Example: ({"max_position_embeddings": 64, "max_text_chars": 8192}, 32) ->
  RequestBounds(32, 64, 8192).
  """
  return RequestBounds(max_batch_rows, limits.get("max_position_embeddings")
                       or FALLBACK_MAX_POSITIONS,
                       limits.get("max_text_chars") or 0)
