"""Which source layers a student keeps, its bert_config and its restore map.

Pure Python (no TensorFlow). `--student_layers` is a count K or 0-based
indices. A count keeps the source's bottom K layers
(`--student_layer_choice bottom`, the default) or K spread evenly, always
keeping the last (`even`). Bottom layers start the student as the
source's own first K layers, consecutive, as they were trained; on
CoNLL-2003 a 3-of-6 MiniLM student distilled from its teacher reached test
F1 0.8531 from layers 0, 1, 2 (one seed) against 0.8063 +- 0.0015 from
layers 1, 3, 5 (3 seeds; bench/README.md, "Distillation"). The student is the source's `BertModel` with K encoder layers; its
layer i starts from source layer `layers[i]`; embeddings, pooler and every
other same-named, same-shaped variable start from the source as usual.

Example: a 6-layer source, --student_layers 3 --student_layer_choice even
-> layers [1, 3, 5]; the student's bert_config has "num_hidden_layers": 3,
and its variable bert/encoder/layer_2/output/dense/kernel is restored from
the checkpoint's bert/encoder/layer_5/output/dense/kernel.
"""

import re
from typing import Mapping, Optional, Sequence

from trainer.distill import options
from trainer.errors import UserError

# A student variable of encoder layer i: (prefix, i, rest of the name).
_ENCODER_LAYER = re.compile(r"^(bert/encoder/layer_)(\d+)(/.*)$")


# How a count K picks source layers (--student_layer_choice).
LAYER_CHOICES = options.LAYER_CHOICES


def bottom_layers(k: int, n: int) -> list[int]:
  """The first K of N layers: 3 of 6 -> [0, 1, 2].

  Raises:
    ValueError: unless 1 <= k <= n.
  """
  if not 1 <= k <= n:
    raise ValueError(f"Cannot choose {k} of {n} layers.")
  return list(range(k))


def even_layers(k: int, n: int) -> list[int]:
  """K of N 0-based layers spread evenly, always ending at the last.

  Layer i (0-based) of the student is source layer round((i + 1) * n / k) - 1,
  rounding halves up, in exact integer arithmetic.

  Examples: 3 of 6 -> [1, 3, 5]; 2 of 6 -> [2, 5]; 4 of 12 -> [2, 5, 8, 11];
  1 of 6 -> [5]; 6 of 6 -> [0, 1, 2, 3, 4, 5]; 4 of 6 -> [1, 2, 4, 5]
  (1.5 and 4.5 round up).

  Raises:
    ValueError: unless 1 <= k <= n.
  """
  if not 1 <= k <= n:
    raise ValueError(f"Cannot choose {k} of {n} layers.")
  return [(2 * (i + 1) * n + k) // (2 * k) - 1 for i in range(k)]


def resolve_student_layers(spec: Optional[str], source_layers: int,
                           source: str, choice: str = "bottom"
                           ) -> Optional[list[int]]:
  """--student_layers -> the source layer behind each student layer.

  Example: ("3", 6, "ckpt/bert_config.json") -> [0, 1, 2];
  ("3", 6, ..., "even") -> [1, 3, 5]; ("0,2", 6, ...) -> [0, 2];
  (None, 6, ...) -> None.

  Args:
    spec: the flag's value: a count "K" or indices "i,j,...".
    source_layers: num_hidden_layers of the source model.
    source: where the source model's config is (for messages).
    choice: how a count picks layers: "bottom" or "even"
      (--student_layer_choice; ignored for indices).

  Raises:
    UserError: naming --student_layers, its value, the source's layer count
      and `source`, for a count above it or an index at or past it.
  """
  parsed = options.parse_layer_spec(spec)
  if parsed is None:
    return None
  kind, numbers = parsed
  if kind == "count":
    if numbers[0] > source_layers:
      raise UserError(
          f"--student_layers={spec} asks for {numbers[0]} layers, but the "
          f"source model has {source_layers} ({source}); pass a count from 1 "
          f"to {source_layers}.")
    pick = even_layers if choice == "even" else bottom_layers
    return pick(numbers[0], source_layers)
  if numbers[-1] >= source_layers:
    raise UserError(
        f"--student_layers={spec} names layer {numbers[-1]}, but the source "
        f"model has {source_layers} layers ({source}): indices are 0.."
        f"{source_layers - 1}.")
  return list(numbers)


def layer_count(spec: Optional[str], source_layers: int, source: str) -> int:
  """Encoder layers of the model a run builds: the student's, else the
  source's.

  Example: ("3", 6, ...) -> 3; ("0,5", 6, ...) -> 2; (None, 6, ...) -> 6.

  Raises:
    UserError: as `resolve_student_layers`.
  """
  layers = resolve_student_layers(spec, source_layers, source)
  return source_layers if layers is None else len(layers)


def student_bert_config(source_config: Mapping[str, object],
                        layers: Sequence[int]) -> dict[str, object]:
  """A copy of the source's bert_config with num_hidden_layers = len(layers).

  Example: {"hidden_size": 32, "num_hidden_layers": 6, ...}, [1, 3, 5] ->
  {"hidden_size": 32, "num_hidden_layers": 3, ...}.
  """
  return dict(source_config, num_hidden_layers=len(layers))


def describe_config_change(previous: Optional[Mapping[str, object]],
                           now: Mapping[str, object]) -> str:
  """What differs between two bert_configs, for a message.

  Example: {"num_hidden_layers": 3, "hidden_size": 32},
  {"num_hidden_layers": 2, "hidden_size": 32} -> "num_hidden_layers 3 -> 2";
  None (an unreadable file) -> "the file is not a JSON object".
  """
  if previous is None:
    return "the file is not a JSON object"
  return ", ".join(f"{key} {previous.get(key)!r} -> {now.get(key)!r}"
                   for key in sorted(set(previous) | set(now))
                   if previous.get(key) != now.get(key))


def source_variable_name(name: str, layers: Sequence[int]) -> str:
  """The checkpoint variable a student variable starts from.

  Example with layers [1, 3, 5]:
  "bert/encoder/layer_2/attention/self/query/kernel" ->
  "bert/encoder/layer_5/attention/self/query/kernel";
  "bert/embeddings/word_embeddings" and "ner_head/output_bias" unchanged.

  Raises:
    ValueError: for a student layer index without an entry in `layers`.
  """
  match = _ENCODER_LAYER.match(name)
  if not match:
    return name
  index = int(match.group(2))
  if index >= len(layers):
    raise ValueError(f"{name} is in student layer {index}, but the student "
                     f"has {len(layers)} layers ({list(layers)}).")
  return f"{match.group(1)}{layers[index]}{match.group(3)}"


def assignment_map(student_variables: Mapping[str, Sequence[int]],
                   checkpoint_variables: Mapping[str, Sequence[int]],
                   layers: Sequence[int]) -> dict[str, str]:
  """{checkpoint name: student name} of every student variable to restore.

  A student variable is restored when its `source_variable_name` is in the
  checkpoint with the same shape; the others (the NER head, a resized
  embedding) keep their initialisers.

  Example with layers [1]: student {"bert/encoder/layer_0/output/dense/bias":
  [32], "ner_head/output_bias": [5]}, checkpoint
  {"bert/encoder/layer_0/output/dense/bias": [32],
  "bert/encoder/layer_1/output/dense/bias": [32]} ->
  {"bert/encoder/layer_1/output/dense/bias":
  "bert/encoder/layer_0/output/dense/bias"}.

  Args:
    student_variables: student variable name (without ":0") -> shape.
    checkpoint_variables: checkpoint variable name -> shape
      (`tf.train.list_variables`).
    layers: the source layer of each student layer.
  """
  found = {}
  for name, shape in student_variables.items():
    source = source_variable_name(name, layers)
    if (source in checkpoint_variables
        and list(checkpoint_variables[source]) == list(shape)):
      found[source] = name
  return found
