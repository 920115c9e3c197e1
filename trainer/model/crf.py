"""Linear-chain CRF in core TensorFlow ops (no tensorflow-addons).

Shapes (B = batch, T = positions, L = number of labels; B and T may be
dynamic, L must be static)::

    potentials         float32 [B, T, L]  unary score of label j at position t
    tag_ids            int32   [B, T]     gold labels; ignored at t >= length
    lengths            int32   [B]        valid prefix length, 0 <= length <= T
    transitions        float32 [L, L]     score of moving from label i to j
    start_transitions  float32 [L]        score of starting with label j
    end_transitions    float32 [L]        score of ending with label j

The score of a tag sequence y of length n > 0 is::

    start[y_0] + sum_{t<n} potentials[t, y_t]
               + sum_{0<t<n} transitions[y_{t-1}, y_t] + end[y_{n-1}]

and a sequence of length 0 scores 0 (its log-likelihood is 0).

The CRF runs over exactly the positions it is given. The NER head does not
feed it word-pieces: it gathers the first word-piece of every word into a
compact [B, W, L] sequence with `gather_word_positions`, passes
``lengths = number of words``, and maps decoded tags back to word-piece
positions with `scatter_to_positions`, so transitions are learned between
consecutive words, not between pieces of the same word.

Every function builds the same ops in `tf.compat.v1` graph mode, inside
`tf.function` and eagerly. `bio_allowed_transitions` and `bio_allowed_end` turn
the scheme rules of `tag_schemes.allowed_transitions` into numpy masks.
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from trainer.data import tag_schemes

# Added to forbidden moves at decode time. Large enough that no allowed path
# loses to a forbidden one (a BERT head's unary scores are O(10) per position,
# so an allowed path is never 1e9 worse), and finite so max/argmax never see
# -inf (inf - inf would give NaN).
FORBIDDEN_SCORE = -1e9

# Index written by `gather_word_positions` for padded word slots; ignored by
# `scatter_to_positions`. Same value as `trainer.schema.PAD_LABEL_ID`.
PAD_POSITION = -1


def _check_num_labels(potentials):
  """Returns the static L of float32 [B, T, L] `potentials`."""
  if potentials.shape.rank != 3:
    raise ValueError(f"potentials must have rank 3 [batch, time, labels], got "
                     f"shape {potentials.shape}.")
  num_labels = potentials.shape[-1]
  if num_labels is None:
    raise ValueError(f"potentials need a static number of labels (last "
                     f"dimension), got shape {potentials.shape}.")
  return num_labels


def _prepare(potentials, lengths, transitions, start_transitions,
             end_transitions):
  """Converts the common CRF inputs; missing start/end vectors become zeros."""
  potentials = tf.cast(tf.convert_to_tensor(potentials), tf.float32)
  num_labels = _check_num_labels(potentials)
  lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
  transitions = tf.cast(tf.convert_to_tensor(transitions), tf.float32)
  transitions.shape.assert_is_compatible_with([num_labels, num_labels])
  if start_transitions is None:
    start_transitions = tf.zeros([num_labels], tf.float32)
  if end_transitions is None:
    end_transitions = tf.zeros([num_labels], tf.float32)
  start_transitions = tf.cast(tf.convert_to_tensor(start_transitions),
                              tf.float32)
  end_transitions = tf.cast(tf.convert_to_tensor(end_transitions), tf.float32)
  start_transitions.shape.assert_is_compatible_with([num_labels])
  end_transitions.shape.assert_is_compatible_with([num_labels])
  return potentials, lengths, transitions, start_transitions, end_transitions


def _time_major_with_extra_step(potentials):
  """[B, T, L] -> ([T + 1, B, L], int32 [T + 1] positions).

  One zero step is appended so the scans below always have a last element to
  read the final state from, even when T == 0. Every length is <= T, so the
  extra step is masked out like any other padding.
  """
  padded = tf.pad(potentials, [[0, 0], [0, 1], [0, 0]])
  time_major = tf.transpose(padded, [1, 0, 2])
  positions = tf.range(tf.shape(time_major)[0], dtype=tf.int32)
  return time_major, positions


def _forward_log_alphas(potentials, lengths, transitions, start_transitions):
  """Forward algorithm in log space.

  Returns:
    float32 [T + 1, B, L]: alpha[t, b, j] = log of the summed exp-scores of
    all prefixes y_0..y_t with y_t = j (start and unary scores included, end
    not). For t >= lengths[b] the state is frozen at its value for
    t = lengths[b] - 1, so alpha[-1] is each sequence's final state (and
    zeros when lengths[b] == 0).
  """
  time_major, positions = _time_major_with_extra_step(potentials)
  batch_size = tf.shape(potentials)[0]
  num_labels = potentials.shape[-1]

  def step(alpha, inputs):
    potentials_t, t = inputs
    # [B, L, 1] + [1, L, L] -> logsumexp over the previous label i.
    recurrent = tf.reduce_logsumexp(
        alpha[:, :, None] + transitions[None, :, :], axis=1) + potentials_t
    first = start_transitions[None, :] + potentials_t
    new_alpha = tf.where(tf.equal(t, 0), first, recurrent)
    valid = (t < lengths)[:, None]
    return tf.where(valid, new_alpha, alpha)

  initial = tf.zeros(tf.stack([batch_size, num_labels]), tf.float32)
  return tf.scan(step, (time_major, positions), initializer=initial)


def _log_partition(alphas, lengths, end_transitions):
  """float32 [B] log Z from `_forward_log_alphas`; 0 where lengths == 0."""
  log_z = tf.reduce_logsumexp(alphas[-1] + end_transitions[None, :], axis=1)
  return tf.where(lengths > 0, log_z, tf.zeros_like(log_z))


def crf_sequence_score(potentials, tag_ids, lengths, transitions,
                       start_transitions=None, end_transitions=None):
  """Unnormalised score of the given tag sequences.

  Args:
    potentials: float32 [B, T, L].
    tag_ids: int32 [B, T]; values at t >= lengths may be anything (e.g. -1).
      Values at valid positions must lie in [0, L).
    lengths: int32 [B], 0 <= lengths <= T.
    transitions: float32 [L, L].
    start_transitions, end_transitions: optional float32 [L].

  Returns:
    float32 [B]: the score defined in the module docstring (0 for length 0).
  """
  potentials, lengths, transitions, start_transitions, end_transitions = (
      _prepare(potentials, lengths, transitions, start_transitions,
               end_transitions))
  num_labels = potentials.shape[-1]
  max_time = tf.shape(potentials)[1]
  mask = tf.sequence_mask(lengths, max_time)  # bool [B, T]
  float_mask = tf.cast(mask, tf.float32)
  # Padding labels (-1) must not reach gather: CPU gather would fail on them.
  tags = tf.where(mask, tf.cast(tag_ids, tf.int32), tf.zeros_like(mask,
                                                                   tf.int32))

  unary = tf.gather(potentials, tags[:, :, None], batch_dims=2)[:, :, 0]
  unary_score = tf.reduce_sum(unary * float_mask, axis=1)

  flat_pairs = tags[:, :-1] * num_labels + tags[:, 1:]  # [B, T - 1]
  pair_scores = tf.gather(tf.reshape(transitions, [-1]), flat_pairs)
  binary_score = tf.reduce_sum(pair_scores * float_mask[:, 1:], axis=1)

  # One-hot position masks instead of indexing, so T == 0 needs no branch.
  first_mask = tf.one_hot(tf.zeros_like(lengths), max_time) * float_mask
  last_mask = tf.one_hot(lengths - 1, max_time)  # all zeros when length 0
  start_score = tf.reduce_sum(
      tf.gather(start_transitions, tags) * first_mask, axis=1)
  end_score = tf.reduce_sum(
      tf.gather(end_transitions, tags) * last_mask, axis=1)
  return unary_score + binary_score + start_score + end_score


def crf_log_norm(potentials, lengths, transitions, start_transitions=None,
                 end_transitions=None):
  """Log-partition log Z over all tag sequences of each length.

  Args: as `crf_log_likelihood`, without `tag_ids`.

  Returns:
    float32 [B]: log Z, 0 where lengths == 0.
  """
  potentials, lengths, transitions, start_transitions, end_transitions = (
      _prepare(potentials, lengths, transitions, start_transitions,
               end_transitions))
  alphas = _forward_log_alphas(potentials, lengths, transitions,
                               start_transitions)
  return _log_partition(alphas, lengths, end_transitions)


def crf_log_likelihood(potentials, tag_ids, lengths, transitions,
                       start_transitions=None, end_transitions=None):
  """Log-probability of the gold tag sequences under the CRF.

  log p(y | x) = score(y) - log Z, with log Z by the forward algorithm in log
  space (`reduce_logsumexp`, stable for large scores). The loss is
  ``-tf.reduce_mean(crf_log_likelihood(...))``.

  Args:
    potentials: float32 [B, T, L] unary scores (cast to float32 if float16).
    tag_ids: int32 [B, T] gold labels; positions t >= lengths[b] are ignored
      and may hold padding such as -1.
    lengths: int32 [B], 0 <= lengths <= T; a length-0 sequence has
      log-likelihood 0 and contributes no gradient.
    transitions: float32 [L, L], transitions[i, j] scores label i -> label j.
    start_transitions: optional float32 [L], score of the first label.
    end_transitions: optional float32 [L], score of the last label.

  Returns:
    float32 [B], <= 0.

  Example (L = 2, no transition scores, one position)::

    potentials = [[[0., ln 3]]], tag_ids = [[1]], lengths = [1],
    transitions = zeros [2, 2]
    -> log(3 / (1 + 3)) = [-0.2877]
  """
  score = crf_sequence_score(potentials, tag_ids, lengths, transitions,
                             start_transitions, end_transitions)
  log_z = crf_log_norm(potentials, lengths, transitions, start_transitions,
                       end_transitions)
  return score - log_z


def _penalized(scores, allowed, shape, name):
  """`scores` + `FORBIDDEN_SCORE` where bool `allowed` is False; None: as is."""
  if allowed is None:
    return scores
  allowed = tf.convert_to_tensor(allowed)
  if allowed.dtype != tf.bool:
    raise ValueError(f"{name} must be bool, got {allowed.dtype}.")
  allowed.shape.assert_is_compatible_with(shape)
  return scores + tf.where(
      allowed, tf.zeros(shape, tf.float32),
      tf.fill(shape, tf.constant(FORBIDDEN_SCORE, tf.float32)))


def crf_viterbi_decode(potentials, lengths, transitions, start_transitions=None,
                       end_transitions=None, allowed_transitions=None,
                       allowed_start=None, allowed_end=None):
  """Highest-scoring tag sequence per example, optionally constrained.

  Args:
    potentials: float32 [B, T, L].
    lengths: int32 [B], 0 <= lengths <= T.
    transitions: float32 [L, L].
    start_transitions, end_transitions: optional float32 [L].
    allowed_transitions: optional bool [L, L] (numpy or Tensor); a False
      entry [i, j] forbids label i followed by label j.
    allowed_start: optional bool [L]; False forbids starting with that label.
    allowed_end: optional bool [L]; False forbids ending with that label.
      Forbidden moves get `FORBIDDEN_SCORE` added rather than -inf, so no
      NaN appears even if every path is forbidden.

  Returns:
    tags: int32 [B, T], the best path; 0 at t >= lengths[b].
    best_score: float32 [B], its score (0 for length 0). When constraints are
      given and some allowed path exists, the path is allowed and the score
      equals its unconstrained score.

  Example (L = 2, transitions strongly favour staying on the same label)::

    potentials = [[[2., 0.], [0., 1.5], [0., 1.5]]], lengths = [3],
    transitions = [[1., -5.], [-5., 1.]]
    -> tags [[1, 1, 1]], best_score [0 + 1.5 + 1.5 + 1 + 1] = [5.]
       ([0, 0, 0] scores 2 + 1 + 1 = 4; [0, 1, 1] scores 3 - 5 + 1 = -1)
    With lengths = [1]: tags [[0, 0, 0]], best_score [2.].

  Ties are broken towards the lowest label id (argmax order).
  """
  potentials, lengths, transitions, start_transitions, end_transitions = (
      _prepare(potentials, lengths, transitions, start_transitions,
               end_transitions))
  num_labels = potentials.shape[-1]
  transitions = _penalized(transitions, allowed_transitions,
                           [num_labels, num_labels], "allowed_transitions")
  start_transitions = _penalized(start_transitions, allowed_start,
                                 [num_labels], "allowed_start")
  end_transitions = _penalized(end_transitions, allowed_end, [num_labels],
                               "allowed_end")
  alphas, backpointers = _viterbi_forward(potentials, lengths, transitions,
                                          start_transitions)
  final_scores = alphas[-1] + end_transitions[None, :]  # [B, L]
  last_tag = tf.argmax(final_scores, axis=1, output_type=tf.int32)
  best_score = tf.reduce_max(final_scores, axis=1)
  tags = _backtrack(backpointers, last_tag)
  mask = tf.sequence_mask(lengths, tf.shape(potentials)[1])
  tags = tf.where(mask, tags, tf.zeros_like(tags))
  best_score = tf.where(lengths > 0, best_score, tf.zeros_like(best_score))
  return tags, best_score


def _viterbi_forward(potentials, lengths, transitions, start_transitions):
  """Max-product forward pass -> (alphas, backpointers).

  alphas: float32 [T + 1, B, L], best prefix score ending in each label,
  frozen past each length as in `_forward_log_alphas`. backpointers: int32
  [T + 1, B, L], the best previous label; a frozen (padded) or first step
  points every label back at itself, so backtracking carries the last valid
  label unchanged through padding.
  """
  num_labels = potentials.shape[-1]
  time_major, positions = _time_major_with_extra_step(potentials)
  batch_size = tf.shape(potentials)[0]
  identity = tf.tile(tf.range(num_labels, dtype=tf.int32)[None, :],
                     tf.stack([batch_size, 1]))

  def step(state, inputs):
    alpha, _ = state
    potentials_t, t = inputs
    scores = alpha[:, :, None] + transitions[None, :, :]  # [B, L(prev), L]
    best_previous = tf.argmax(scores, axis=1, output_type=tf.int32)
    recurrent = tf.reduce_max(scores, axis=1) + potentials_t
    first = start_transitions[None, :] + potentials_t
    is_first = tf.equal(t, 0)
    new_alpha = tf.where(is_first, first, recurrent)
    valid = (t < lengths)[:, None]
    alpha = tf.where(valid, new_alpha, alpha)
    backpointer = tf.where(tf.logical_and(valid, tf.logical_not(is_first)),
                           best_previous, identity)
    return alpha, backpointer

  initial = (tf.zeros(tf.stack([batch_size, num_labels]), tf.float32),
             identity)
  return tf.scan(step, (time_major, positions), initializer=initial)


def _backtrack(backpointers, last_tag):
  """int32 [B, T] best path from int32 [T + 1, B, L] backpointers and [B]."""
  def back_step(next_tag, backpointer_t):
    # backpointer_t[b, next_tag[b]] is the label one position earlier. As
    # backpointers[t] (t = 1..T) gives tag t - 1 from tag t, output k of the
    # reverse scan is the tag at position k.
    return tf.gather(backpointer_t, next_tag[:, None], batch_dims=1)[:, 0]

  return tf.transpose(tf.scan(back_step, backpointers[1:],
                              initializer=last_tag, reverse=True), [1, 0])


def crf_marginals(potentials, lengths, transitions, start_transitions=None,
                  end_transitions=None):
  """Per-position label probabilities p(y_t = j | x) by forward-backward.

  The backward pass is the forward pass over each sequence reversed in place
  (`tf.reverse_sequence`, so padding stays at the end) with transposed
  transitions and start/end swapped.

  Args: as `crf_log_norm`.

  Returns:
    float32 [B, T, L]: each row sums to 1 at t < lengths[b]; 0 elsewhere.
    Reading it at the Viterbi tags gives the confidence of each predicted tag.

  Example (L = 2, no transition scores, positions are independent)::

    potentials = [[[0., ln 3], [0., 0.]]], lengths = [1]
    -> [[[0.25, 0.75], [0., 0.]]]
  """
  potentials, lengths, transitions, start_transitions, end_transitions = (
      _prepare(potentials, lengths, transitions, start_transitions,
               end_transitions))
  forward = _forward_log_alphas(potentials, lengths, transitions,
                                start_transitions)
  log_z = _log_partition(forward, lengths, end_transitions)
  reversed_potentials = tf.reverse_sequence(potentials, lengths, seq_axis=1,
                                            batch_axis=0)
  backward_reversed = _forward_log_alphas(
      reversed_potentials, lengths, tf.transpose(transitions), end_transitions)
  # backward[t] = beta_t + potentials[t] (beta_t: log-sum over suffixes after
  # t, end included), so the unary score at t is counted twice: subtract it.
  backward = tf.reverse_sequence(
      tf.transpose(backward_reversed[:-1], [1, 0, 2]), lengths, seq_axis=1,
      batch_axis=0)
  forward = tf.transpose(forward[:-1], [1, 0, 2])
  log_marginals = forward + backward - potentials - log_z[:, None, None]
  mask = tf.sequence_mask(lengths, tf.shape(potentials)[1])[:, :, None]
  return tf.where(mask, tf.exp(log_marginals), tf.zeros_like(log_marginals))


def gather_word_positions(sequence, word_start_mask):
  """Packs the marked positions of each row to the front.

  Args:
    sequence: [B, T, ...] any dtype, e.g. float32 [B, T, H] BERT output.
    word_start_mask: bool or int [B, T]; True (non-zero) at the first
      word-piece of every word.

  Returns:
    compact: [B, W, ...], W = max number of words in the batch; rows padded
      with zeros.
    lengths: int32 [B], number of marked positions per row.
    indices: int32 [B, W], the source position of every compact slot,
      `PAD_POSITION` (-1) for padding slots.

  Example (T = 6, W = 3)::

    sequence        [[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]]
    word_start_mask [[ 0,  1,  0,  1,  1,  0], [ 0,  0,  1,  0,  0,  0]]
    -> compact [[11, 13, 14], [22, 0, 0]], lengths [3, 1],
       indices [[1, 3, 4], [2, -1, -1]]
  """
  sequence = tf.convert_to_tensor(sequence)
  word_start_mask = tf.convert_to_tensor(word_start_mask)
  if word_start_mask.dtype != tf.bool:
    word_start_mask = tf.not_equal(word_start_mask,
                                   tf.zeros_like(word_start_mask))
  max_time = tf.shape(word_start_mask)[1]
  positions = tf.range(max_time, dtype=tf.int32)[None, :]
  # Sorting puts marked positions first, in order; unmarked ones follow.
  sort_keys = tf.where(word_start_mask, positions + tf.zeros_like(
      word_start_mask, tf.int32), positions + max_time)
  lengths = tf.reduce_sum(tf.cast(word_start_mask, tf.int32), axis=1)
  max_words = tf.maximum(tf.reduce_max(lengths), 0)  # reduce_max([]) < 0
  sorted_positions = tf.sort(sort_keys, axis=1)[:, :max_words]
  slot_mask = tf.sequence_mask(lengths, max_words)
  indices = tf.where(slot_mask, sorted_positions,
                     tf.fill(tf.shape(sorted_positions), PAD_POSITION))
  compact = tf.gather(sequence, tf.where(slot_mask, indices,
                                         tf.zeros_like(indices)),
                      batch_dims=1)
  extra_dims = sequence.shape.rank - 2
  compact_mask = tf.reshape(slot_mask, tf.concat(
      [tf.shape(slot_mask), tf.ones([extra_dims], tf.int32)], axis=0))
  compact = tf.where(compact_mask, compact, tf.zeros_like(compact))
  return compact, lengths, indices


def scatter_to_positions(values, indices, max_time, fill):
  """Inverse of `gather_word_positions`: writes compact values back.

  Args:
    values: [B, W, ...] any dtype, e.g. int32 [B, W] Viterbi tags or float32
      [B, W, L] marginals.
    indices: int32 [B, W] from `gather_word_positions`; slots with
      `PAD_POSITION` (any negative index) are skipped. Valid indices must be
      < max_time and distinct within a row.
    max_time: int or int32 scalar T of the output.
    fill: scalar of `values`' dtype written where no slot points, e.g.
      `trainer.schema.PAD_LABEL_ID` for tags.

  Returns:
    [B, T, ...] with out[b, indices[b, w]] = values[b, w].

  Example (continuing `gather_word_positions`, fill = -1)::

    values [[7, 8, 9], [5, 6, 6]], indices [[1, 3, 4], [2, -1, -1]], T = 6
    -> [[-1, 7, -1, 8, 9, -1], [-1, -1, 5, -1, -1, -1]]
  """
  values = tf.convert_to_tensor(values)
  indices = tf.cast(tf.convert_to_tensor(indices), tf.int32)
  batch_size = tf.shape(indices)[0]
  num_slots = tf.shape(indices)[1]
  batch_index = tf.tile(tf.range(batch_size)[:, None],
                        tf.stack([1, num_slots]))
  coordinates = tf.stack([batch_index, indices], axis=-1)  # [B, W, 2]
  valid = indices >= 0
  output_shape = tf.concat([tf.stack([batch_size, max_time]),
                            tf.shape(values)[2:]], axis=0)
  output = tf.fill(output_shape, tf.cast(fill, values.dtype))
  return tf.tensor_scatter_nd_update(output,
                                     tf.boolean_mask(coordinates, valid),
                                     tf.boolean_mask(values, valid))


def bio_allowed_transitions(label_names: Sequence[str],
                            scheme: Optional[str] = None):
  """The scheme's allowed bigrams and first labels as numpy masks.

  The rules, the scheme guess from the labels (IOB1 needs scheme="IOB1") and
  label validation are `tag_schemes.allowed_transitions`'.

  Args:
    label_names: label strings in id order, 'O' or 'PREFIX-TYPE'.
    scheme: optional scheme name (any name `tag_schemes.get_scheme` accepts).

  Returns:
    allowed: np.bool_ [L, L], allowed[i, j] is whether label j may follow i.
    allowed_start: np.bool_ [L], whether a sentence may start with label j.

  Raises:
    ValueError: for an unknown scheme or a label not valid in the scheme.

  Example: ['O', 'B-LOC', 'I-LOC'] -> allowed [[1, 1, 0], [1, 1, 1],
  [1, 1, 1]], allowed_start [1, 1, 0].
  """
  rules = tag_schemes.allowed_transitions(label_names, scheme)
  num_labels = len(label_names)
  allowed = np.array(rules.allowed, dtype=np.bool_).reshape(
      [num_labels, num_labels])
  return allowed, np.array(rules.start, dtype=np.bool_)


def bio_allowed_end(label_names: Sequence[str], scheme: Optional[str] = None):
  """np.bool_ [L]: whether a sentence may end with each label.

  Only BIOES and BMES forbid anything (a sentence cannot end inside an
  entity); arguments and rules as in `bio_allowed_transitions`.

  Example: ['O', 'B-PER', 'I-PER', 'E-PER', 'S-PER'] -> [1, 0, 0, 1, 1].
  """
  return np.array(tag_schemes.allowed_transitions(label_names, scheme).end,
                  dtype=np.bool_)
