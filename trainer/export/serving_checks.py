"""In-graph checks of served inputs: TF Serving refuses what the model cannot use.

`trainer.export.exporter` gates every signature's model inputs with
`checked_model_inputs`, and `trainer.export.text_signature` its text lengths
with `graph_check`, so the exported graph itself answers a bad request with
INVALID_ARGUMENT and a message naming the input, the bad value, where it is
and what is allowed; TF Serving passes that message to the client::

    input_ids [[2, 31, 3]], vocab_size 30 ->
    "assertion failed: [input_ids must be in [0, 30) (vocab_size of the
     model); found 31 at row 0, position 1 (out-of-range values in the
     request: 1)]"

The checks run before the model (the model reads `tf.identity`s that depend
on them) and leave its outputs for good inputs bit for bit unchanged.
"""

from typing import Callable, Dict, Mapping, Sequence

import tensorflow as tf

from trainer import schema
from trainer.tf_compat import modeling

tf1 = tf.compat.v1
# Word indices are cast to int32 after the int64 parse.
_INT32_LIMIT = 2 ** 31


def model_limits(bert_config: modeling.BertConfig) -> Dict[str, int]:
  """The limits `checked_model_inputs` enforces, for ner_config.json.

  The development server reads them to refuse over-long windows before any
  work (`serving.server.input_checks.check_lengths`).

  Example: a BERT-base config -> {"vocab_size": 21128, "type_vocab_size": 2,
  "max_position_embeddings": 512}.
  """
  return {"vocab_size": bert_config.vocab_size,
          "type_vocab_size": bert_config.type_vocab_size,
          "max_position_embeddings": bert_config.max_position_embeddings}


def graph_check(ok: tf.Tensor, explain: Callable[[], tf.Tensor],
                name: str) -> tf.Operation:
  """An in-graph assertion whose message is built only when it fails.

  TF Serving answers a failed `tf.Assert` with INVALID_ARGUMENT and the
  message, so a check here reaches every client. The message is computed in
  the false branch of a `tf.cond`, so a good request pays for `ok` alone.

  Args:
    ok: bool [], true when the input is acceptable.
    explain: builds string [] naming the input, the bad value and what is
      allowed (called in the failing branch only).
    name: op name.

  Returns:
    The assert op; run it with `tf.control_dependencies` before the model.

  Example: ok = reduce_all(ids < 30), explain = "input_ids must be in
  [0, 30) ..." -> a request with id 31 fails with "assertion failed:
  [input_ids must be in [0, 30) ...]".
  """
  message = tf.cond(ok, lambda: tf.constant(""), explain)
  return tf1.Assert(ok, [message], name=name)


def checked(tensor: tf.Tensor, checks: Sequence[tf.Operation]) -> tf.Tensor:
  """`tensor`, available only after every op of `checks` has run."""
  with tf.control_dependencies(list(checks)):
    return tf.identity(tensor)


def _range_check(key: str, values: tf.Tensor, limit: int,
                 allowed: str, low: int = 0) -> tf.Operation:
  """Fails unless every value of `values` (int [B, T]) is in [low, limit).

  The message names the first bad value (row-major), its row and position,
  and how many there are.
  """
  bad = values < low
  if limit <= values.dtype.max:  # else every value of the dtype is below it
    bad = tf.logical_or(bad, values >= limit)

  def explain():
    first = tf.cast(tf.where(bad)[0], tf.int32)
    return tf.strings.format(
        f"{key} must be {allowed}; found {{}} at row {{}}, position {{}} "
        f"(out-of-range values in the request: {{}})",
        (tf.gather_nd(values, first), first[0], first[1],
         tf.reduce_sum(tf.cast(bad, tf.int32))))

  return graph_check(tf.logical_not(tf.reduce_any(bad)), explain,
                     f"check_{key}")


def _shape_check(key: str, values: tf.Tensor,
                 ids: tf.Tensor) -> tf.Operation:
  """Fails unless `values` has the shape of input_ids."""
  return graph_check(
      tf.reduce_all(tf.equal(tf.shape(values), tf.shape(ids))),
      lambda: tf.strings.format(
          f"{key} has shape {{}} but {schema.INPUT_IDS} has {{}}; "
          f"{', '.join(schema.MODEL_INPUT_KEYS)} take one shape [batch, "
          "positions]", (tf.shape(values), tf.shape(ids))),
      f"check_{key}_shape")


def _word_position_checks(word_positions: tf.Tensor,
                          ids: tf.Tensor) -> Sequence[tf.Operation]:
  """`word_positions` (int [B, W]) fits input_ids (int [B, T]).

  W is T (one word index per id) or 0 (no example sent any: the graph derives
  word starts from the ids); each value is -1 (no word starts here) or the
  index of the word starting here in its sentence (which may exceed T in a
  later window), an int32.
  """
  positions = tf.shape(ids)[1]
  width = tf.shape(word_positions)[1]
  return [
      graph_check(
          tf.logical_or(tf.equal(width, 0), tf.equal(width, positions)),
          lambda: tf.strings.format(
              f"{schema.WORD_POSITIONS} has {{}} entries but "
              f"{schema.INPUT_IDS} has {{}} positions; send one word "
              f"position per id (-1 where no word starts), or none",
              (width, positions)),
          f"check_{schema.WORD_POSITIONS}_shape"),
      _range_check(schema.WORD_POSITIONS, word_positions, _INT32_LIMIT,
                   f"{schema.NO_WORD} (no word starts) or a word index in "
                   f"[0, {_INT32_LIMIT})", low=schema.NO_WORD),
  ]


def checked_model_inputs(features: Mapping[str, tf.Tensor],
                         bert_config: modeling.BertConfig
                         ) -> Dict[str, tf.Tensor]:
  """The request's model inputs, gated by in-graph checks of their values.

  TF Serving runs these checks too, so a client sending nonsense gets
  INVALID_ARGUMENT naming the input, the first bad value, where it is and
  what is allowed, instead of an answer for wrapped or clipped ids (BERT's
  one-hot segment embedding turns an unknown segment id into zeros, and a
  mask of 7 weighs a position 7 times). The model reads the checked tensors
  (`tf.identity` after the asserts), so it runs only for good inputs, and on
  those its outputs are bit for bit the unchecked graph's.

  Args:
    features: input_ids, input_mask, segment_ids: int32 or int64 [B, T],
      and optionally word_positions [B, T] (or [B, 0]: none sent; see
      `_word_position_checks`). Other keys are passed through.
    bert_config: gives vocab_size, type_vocab_size, max_position_embeddings.

  Returns:
    dict of the same tensors (same dtypes and shapes), checked.

  Example (vocab_size 30): input_ids [[2, 31, 3]] -> "input_ids must be in
  [0, 30) (vocab_size of the model); found 31 at row 0, position 1
  (out-of-range values in the request: 1)"; input_mask [[1, 1]] with
  input_ids [[2, 5, 3]] -> "input_mask has shape [1 2] but input_ids has
  [1 3]; ...".
  """
  ids = features[schema.INPUT_IDS]
  max_positions = bert_config.max_position_embeddings
  checks = [
      _range_check(schema.INPUT_IDS, ids, bert_config.vocab_size,
                   f"in [0, {bert_config.vocab_size}) (vocab_size of the "
                   "model)"),
      _range_check(schema.SEGMENT_IDS, features[schema.SEGMENT_IDS],
                   bert_config.type_vocab_size,
                   f"in [0, {bert_config.type_vocab_size}) (type_vocab_size "
                   "of the model)"),
      _range_check(schema.INPUT_MASK, features[schema.INPUT_MASK], 2,
                   "0 or 1"),
      *[_shape_check(key, features[key], ids)
        for key in (schema.INPUT_MASK, schema.SEGMENT_IDS)],
      graph_check(
          tf.shape(ids)[1] <= max_positions,
          lambda: tf.strings.format(
              f"{schema.INPUT_IDS} has {{}} positions; this model takes at "
              f"most {max_positions} (max_position_embeddings)",
              tf.shape(ids)[1]),
          "check_positions"),
  ]
  if schema.WORD_POSITIONS in features:
    checks += _word_position_checks(features[schema.WORD_POSITIONS], ids)
  gated = schema.MODEL_INPUT_KEYS + (schema.WORD_POSITIONS,)
  return {key: (checked(value, checks) if key in gated else value)
          for key, value in features.items()}
