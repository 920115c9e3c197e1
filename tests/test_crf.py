"""Tests for trainer.model.crf, checked against brute-force enumeration."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from trainer.model import crf
from trainer.data import tag_schemes

tf1 = tf.compat.v1

BIO_LABELS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
BIOES_LABELS = ["O", "B-X", "I-X", "E-X", "S-X"]


def _sequence_score(potentials, path, transitions, start, end):
  """Score of one path over potentials [n, L] (n == len(path))."""
  if not path:
    return 0.0
  score = start[path[0]] + end[path[-1]]
  score += sum(potentials[t, tag] for t, tag in enumerate(path))
  score += sum(transitions[a, b] for a, b in zip(path[:-1], path[1:]))
  return score


def _brute_force(potentials, length, transitions, start, end,
                 allowed=None, allowed_start=None, allowed_end=None):
  """log Z, best path, best score and marginals [length, L] by enumeration.

  The allowed_* arguments restrict the best path only (not Z or marginals).
  """
  num_labels = potentials.shape[-1]
  paths, scores = [], []
  for path in itertools.product(range(num_labels), repeat=length):
    if path and allowed is not None and (
        not allowed_start[path[0]] or not allowed_end[path[-1]] or
        not all(allowed[a, b] for a, b in zip(path[:-1], path[1:]))):
      restricted_out = True
    else:
      restricted_out = False
    paths.append((path, restricted_out))
    scores.append(_sequence_score(potentials, path, transitions, start, end))
  scores = np.array(scores, np.float64)
  log_z = np.logaddexp.reduce(scores) if length else 0.0
  probabilities = np.exp(scores - log_z)
  marginals = np.zeros([length, num_labels])
  for (path, _), probability in zip(paths, probabilities):
    for t, tag in enumerate(path):
      marginals[t, tag] += probability
  candidates = [(score, path) for score, (path, out) in zip(scores, paths)
                if not out]
  best_score, best_path = max(candidates, key=lambda pair: pair[0])
  return log_z, list(best_path), best_score, marginals


def _random_case(seed, num_labels, lengths, max_time, with_start_end):
  rng = np.random.RandomState(seed)
  batch_size = len(lengths)
  potentials = rng.normal(size=[batch_size, max_time, num_labels]).astype(
      np.float32) * 2
  transitions = rng.normal(size=[num_labels, num_labels]).astype(np.float32)
  start = end = None
  if with_start_end:
    start = rng.normal(size=[num_labels]).astype(np.float32)
    end = rng.normal(size=[num_labels]).astype(np.float32)
  tag_ids = rng.randint(0, num_labels, size=[batch_size, max_time])
  lengths = np.array(lengths, np.int32)
  # Padding label ids must be ignored, as the -1 of schema.PAD_LABEL_ID.
  tag_ids[np.arange(max_time)[None, :] >= lengths[:, None]] = -1
  return potentials, tag_ids.astype(np.int32), lengths, transitions, start, end


CASES = [
    # (seed, num_labels, lengths (batches mix lengths), max_time)
    (0, 3, [1, 2, 3, 4, 5], 5),
    (1, 4, [5, 3, 1, 0], 5),
    (2, 3, [4, 4], 4),
    (3, 4, [2, 5, 0, 3], 6),
]


@pytest.mark.parametrize("with_start_end", [False, True])
@pytest.mark.parametrize("seed, num_labels, lengths, max_time", CASES)
def test_matches_brute_force(seed, num_labels, lengths, max_time,
                             with_start_end):
  potentials, tag_ids, lengths, transitions, start, end = _random_case(
      seed, num_labels, lengths, max_time, with_start_end)
  log_likelihood = crf.crf_log_likelihood(potentials, tag_ids, lengths,
                                          transitions, start, end).numpy()
  tags, best_scores = crf.crf_viterbi_decode(potentials, lengths, transitions,
                                             start, end)
  marginals = crf.crf_marginals(potentials, lengths, transitions, start,
                                end).numpy()
  assert tags.dtype == tf.int32 and tags.shape == tag_ids.shape
  assert marginals.shape == potentials.shape
  zeros = np.zeros([num_labels], np.float32)
  start_np = zeros if start is None else start
  end_np = zeros if end is None else end
  for b, length in enumerate(lengths):
    log_z, best_path, best_score, expected_marginals = _brute_force(
        potentials[b, :length], length, transitions, start_np, end_np)
    gold = _sequence_score(potentials[b], list(tag_ids[b, :length]),
                           transitions, start_np, end_np)
    np.testing.assert_allclose(log_likelihood[b], gold - log_z, atol=1e-4)
    assert list(tags.numpy()[b, :length]) == best_path
    assert not tags.numpy()[b, length:].any()
    np.testing.assert_allclose(best_scores.numpy()[b], best_score, atol=1e-4)
    np.testing.assert_allclose(marginals[b, :length], expected_marginals,
                               atol=1e-5)
    np.testing.assert_allclose(marginals[b, :length].sum(-1), 1.0, atol=1e-5)
    assert not marginals[b, length:].any()


def test_marginals_of_three_words_equal_enumerating_all_27_paths():
  """3 words, 3 tags, non-zero transitions, start and end: exact to 1e-6."""
  potentials = np.array([[[0.5, -1.0, 2.0], [1.5, 0.0, -0.5],
                          [-2.0, 1.0, 0.25]]], np.float32)
  transitions = np.array([[0.3, -1.2, 0.8], [1.0, 0.2, -0.7],
                          [-0.4, 0.9, 0.1]], np.float32)
  start = np.array([0.6, -0.3, -1.1], np.float32)
  end = np.array([-0.8, 0.4, 1.3], np.float32)
  marginals = crf.crf_marginals(potentials, [3], transitions, start,
                                end).numpy()[0]
  paths = list(itertools.product(range(3), repeat=3))
  scores = np.array([_sequence_score(potentials[0].astype(np.float64),
                                     list(path), transitions, start, end)
                     for path in paths])
  probabilities = np.exp(scores - np.logaddexp.reduce(scores))
  expected = np.zeros([3, 3])
  for path, probability in zip(paths, probabilities):
    expected[np.arange(3), path] += probability
  np.testing.assert_allclose(marginals, expected, rtol=0, atol=1e-6)
  np.testing.assert_allclose(marginals.sum(-1), 1.0, rtol=0, atol=1e-6)
  # Start and end matter: without them the marginals differ.
  plain = crf.crf_marginals(potentials, [3], transitions).numpy()[0]
  assert np.abs(plain - marginals).max() > 0.01


def _forbidden_moves(path, allowed, allowed_start, allowed_end):
  problems = []
  if path and not allowed_start[path[0]]:
    problems.append(("start", path[0]))
  if path and not allowed_end[path[-1]]:
    problems.append(("end", path[-1]))
  problems += [(a, b) for a, b in zip(path[:-1], path[1:]) if not allowed[a, b]]
  return problems


@pytest.mark.parametrize("labels", [BIO_LABELS, BIOES_LABELS])
@pytest.mark.parametrize("seed", range(3))
def test_constrained_viterbi_matches_restricted_brute_force(labels, seed):
  num_labels = len(labels)
  allowed, allowed_start = crf.bio_allowed_transitions(labels)
  allowed_end = crf.bio_allowed_end(labels)
  lengths = np.array([1, 2, 3, 4, 4, 0], np.int32)
  rng = np.random.RandomState(seed)
  potentials = rng.normal(size=[len(lengths), 4, num_labels]).astype(
      np.float32)
  # Make forbidden tags attractive (I- right after O, B- at the end), so the
  # unconstrained path would break the rules.
  inside = [j for j, label in enumerate(labels) if label.startswith("I-")]
  potentials[:, :, inside] += 3.0
  transitions = rng.normal(size=[num_labels, num_labels]).astype(np.float32)
  start = rng.normal(size=[num_labels]).astype(np.float32)
  end = rng.normal(size=[num_labels]).astype(np.float32)

  unconstrained, _ = crf.crf_viterbi_decode(potentials, lengths, transitions,
                                            start, end)
  tags, scores = crf.crf_viterbi_decode(
      potentials, lengths, transitions, start, end,
      allowed_transitions=allowed, allowed_start=allowed_start,
      allowed_end=allowed_end)
  any_unconstrained_broke_rules = False
  for b, length in enumerate(lengths):
    path = list(tags.numpy()[b, :length])
    assert not _forbidden_moves(path, allowed, allowed_start, allowed_end)
    _, best_path, best_score, _ = _brute_force(
        potentials[b, :length], length, transitions, start, end,
        allowed, allowed_start, allowed_end)
    assert path == best_path
    np.testing.assert_allclose(scores.numpy()[b], best_score, atol=1e-4)
    any_unconstrained_broke_rules |= bool(_forbidden_moves(
        list(unconstrained.numpy()[b, :length]), allowed, allowed_start,
        allowed_end))
  # Otherwise the test would not exercise the constraints.
  assert any_unconstrained_broke_rules


def test_constraints_accept_tensors_and_never_give_nan():
  # Every start forbidden: still a finite score and a decoded path.
  tags, scores = crf.crf_viterbi_decode(
      np.zeros([1, 2, 2], np.float32), [2], np.zeros([2, 2], np.float32),
      allowed_start=tf.constant([False, False]))
  assert np.isfinite(scores.numpy()).all()
  assert tags.shape == [1, 2]
  with pytest.raises(ValueError, match="allowed_transitions must be bool"):
    crf.crf_viterbi_decode(np.zeros([1, 2, 2], np.float32), [2],
                           np.zeros([2, 2], np.float32),
                           allowed_transitions=np.ones([2, 2], np.int32))


def test_gradients_are_finite_and_non_zero():
  potentials, tag_ids, lengths, transitions, start, end = _random_case(
      7, 4, [5, 2, 0, 3], 5, with_start_end=True)
  variables = [tf.Variable(x) for x in (potentials, transitions, start, end)]
  with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(crf.crf_log_likelihood(
        variables[0], tag_ids, lengths, *variables[1:]))
  gradients = tape.gradient(loss, variables)
  for gradient in gradients:
    assert np.isfinite(gradient.numpy()).all()
    assert np.abs(gradient.numpy()).sum() > 0
  # Padding and the empty sequence get exactly zero gradient.
  potentials_gradient = gradients[0].numpy()
  assert not potentials_gradient[1, 2:].any()
  assert not potentials_gradient[2].any()


def test_large_scores_are_stable():
  rng = np.random.RandomState(0)
  potentials = rng.normal(size=[2, 5, 3]).astype(np.float32) * 1000
  transitions = rng.normal(size=[3, 3]).astype(np.float32) * 1000
  log_likelihood = crf.crf_log_likelihood(
      potentials, np.zeros([2, 5], np.int32), [5, 3], transitions)
  marginals = crf.crf_marginals(potentials, [5, 3], transitions)
  assert np.isfinite(log_likelihood.numpy()).all()
  assert (log_likelihood.numpy() <= 0).all()
  np.testing.assert_allclose(marginals.numpy()[0].sum(-1), 1.0, atol=1e-5)


def test_empty_time_dimension():
  potentials = np.zeros([2, 0, 3], np.float32)
  lengths = np.zeros([2], np.int32)
  transitions = np.ones([3, 3], np.float32)
  log_likelihood = crf.crf_log_likelihood(
      potentials, np.zeros([2, 0], np.int32), lengths, transitions)
  tags, scores = crf.crf_viterbi_decode(potentials, lengths, transitions)
  marginals = crf.crf_marginals(potentials, lengths, transitions)
  np.testing.assert_array_equal(log_likelihood.numpy(), [0, 0])
  np.testing.assert_array_equal(scores.numpy(), [0, 0])
  assert tags.shape == [2, 0] and marginals.shape == [2, 0, 3]


def test_docstring_examples():
  log_likelihood = crf.crf_log_likelihood(
      [[[0., np.log(3.)]]], [[1]], [1], np.zeros([2, 2], np.float32))
  np.testing.assert_allclose(log_likelihood.numpy(), [np.log(0.75)],
                             rtol=1e-6)
  potentials = [[[2., 0.], [0., 1.5], [0., 1.5]]]
  transitions = [[1., -5.], [-5., 1.]]
  tags, score = crf.crf_viterbi_decode(potentials, [3], transitions)
  assert tags.numpy().tolist() == [[1, 1, 1]] and score.numpy() == [5.]
  tags, score = crf.crf_viterbi_decode(potentials, [1], transitions)
  assert tags.numpy().tolist() == [[0, 0, 0]] and score.numpy() == [2.]
  marginals = crf.crf_marginals([[[0., np.log(3.)], [0., 0.]]], [1],
                                np.zeros([2, 2], np.float32))
  np.testing.assert_allclose(marginals.numpy(),
                             [[[0.25, 0.75], [0., 0.]]], atol=1e-6)


def _all_outputs(potentials, tag_ids, lengths, transitions, start, end):
  log_likelihood = crf.crf_log_likelihood(potentials, tag_ids, lengths,
                                          transitions, start, end)
  tags, scores = crf.crf_viterbi_decode(potentials, lengths, transitions,
                                        start, end)
  marginals = crf.crf_marginals(potentials, lengths, transitions, start, end)
  gradient = tf.gradients(tf.reduce_sum(log_likelihood), transitions)[0] if (
      not tf.executing_eagerly()) else tf.zeros_like(transitions)
  return log_likelihood, tags, scores, marginals, gradient


def test_graph_mode_and_tf_function_with_dynamic_shapes():
  num_labels = 4
  inputs = _random_case(5, num_labels, [3, 5, 1], 5, with_start_end=True)
  eager = _all_outputs(*inputs)

  graph = tf.Graph()
  with graph.as_default():
    placeholders = [
        tf1.placeholder(tf.float32, [None, None, num_labels]),
        tf1.placeholder(tf.int32, [None, None]),
        tf1.placeholder(tf.int32, [None]),
        tf1.placeholder(tf.float32, [num_labels, num_labels]),
        tf1.placeholder(tf.float32, [num_labels]),
        tf1.placeholder(tf.float32, [num_labels]),
    ]
    outputs = _all_outputs(*placeholders)
    assert outputs[1].shape.as_list() == [None, None]
    assert outputs[3].shape.as_list() == [None, None, num_labels]
    with tf1.Session(graph=graph) as session:
      graph_values = session.run(outputs, dict(zip(placeholders, inputs)))
  assert np.isfinite(graph_values[4]).all() and np.abs(graph_values[4]).sum()

  signature = [tf.TensorSpec([None, None, num_labels], tf.float32),
               tf.TensorSpec([None, None], tf.int32),
               tf.TensorSpec([None], tf.int32),
               tf.TensorSpec([num_labels, num_labels], tf.float32),
               tf.TensorSpec([num_labels], tf.float32),
               tf.TensorSpec([num_labels], tf.float32)]
  function_values = tf.function(_all_outputs, input_signature=signature)(
      *inputs)
  for eager_value, graph_value, function_value in zip(
      eager[:4], graph_values[:4], function_values[:4]):
    np.testing.assert_allclose(graph_value, eager_value.numpy(), atol=1e-5)
    np.testing.assert_allclose(function_value.numpy(), eager_value.numpy(),
                               atol=1e-5)


def test_gather_scatter_round_trip_exact():
  sequence = np.array([[10, 11, 12, 13, 14, 15],
                       [20, 21, 22, 23, 24, 25],
                       [30, 31, 32, 33, 34, 35]], np.int32)
  word_start_mask = np.array([[0, 1, 0, 1, 1, 0],
                              [0, 0, 1, 0, 0, 0],
                              [0, 0, 0, 0, 0, 0]], np.int32)
  compact, lengths, indices = crf.gather_word_positions(sequence,
                                                        word_start_mask)
  assert compact.numpy().tolist() == [[11, 13, 14], [22, 0, 0], [0, 0, 0]]
  assert lengths.numpy().tolist() == [3, 1, 0]
  assert indices.numpy().tolist() == [[1, 3, 4], [2, -1, -1], [-1, -1, -1]]
  assert lengths.dtype == tf.int32 and indices.dtype == tf.int32

  restored = crf.scatter_to_positions(compact, indices, 6, fill=-1)
  assert restored.numpy().tolist() == [[-1, 11, -1, 13, 14, -1],
                                       [-1, -1, 22, -1, -1, -1],
                                       [-1] * 6]
  # Docstring example: padded slots carry junk that must not be written.
  restored = crf.scatter_to_positions([[7, 8, 9], [5, 6, 6], [1, 1, 1]],
                                      indices, 6, fill=-1)
  assert restored.numpy().tolist() == [[-1, 7, -1, 8, 9, -1],
                                       [-1, -1, 5, -1, -1, -1],
                                       [-1] * 6]


def test_gather_scatter_hidden_dimension_and_bool_mask():
  rng = np.random.RandomState(0)
  sequence = rng.normal(size=[2, 4, 3]).astype(np.float32)
  word_start_mask = np.array([[True, False, True, True],
                              [False, True, False, False]])
  compact, lengths, indices = crf.gather_word_positions(sequence,
                                                        word_start_mask)
  np.testing.assert_array_equal(compact.numpy()[0], sequence[0, [0, 2, 3]])
  np.testing.assert_array_equal(compact.numpy()[1], [sequence[1, 1],
                                                     [0, 0, 0], [0, 0, 0]])
  restored = crf.scatter_to_positions(compact, indices, 4, fill=0.0).numpy()
  expected = np.where(word_start_mask[:, :, None], sequence, 0.0)
  np.testing.assert_array_equal(restored, expected)
  assert lengths.numpy().tolist() == [3, 1]


def test_gather_scatter_in_graph_mode():
  graph = tf.Graph()
  with graph.as_default():
    sequence = tf1.placeholder(tf.float32, [None, None, 2])
    mask = tf1.placeholder(tf.bool, [None, None])
    compact, lengths, indices = crf.gather_word_positions(sequence, mask)
    assert compact.shape.as_list() == [None, None, 2]
    restored = crf.scatter_to_positions(compact, indices, tf.shape(mask)[1],
                                        fill=-1.0)
    with tf1.Session(graph=graph) as session:
      values = np.arange(12, dtype=np.float32).reshape([2, 3, 2])
      result = session.run(restored, {
          sequence: values, mask: [[True, False, True], [False, False, True]]})
  assert result.tolist() == [[[0, 1], [-1, -1], [4, 5]],
                             [[-1, -1], [-1, -1], [10, 11]]]


def test_bio_allowed_masks_are_the_tag_scheme_rules_as_numpy():
  # The rules themselves are tested in test_tag_schemes.py.
  labels = ["O", "B-X", "I-X", "E-X", "S-X"]
  rules = tag_schemes.allowed_transitions(labels)
  allowed, allowed_start = crf.bio_allowed_transitions(labels)
  allowed_end = crf.bio_allowed_end(labels)
  for mask in (allowed, allowed_start, allowed_end):
    assert mask.dtype == np.bool_
  assert allowed.tolist() == rules.allowed
  assert allowed_start.tolist() == rules.start == [1, 1, 0, 0, 1]
  assert allowed_end.tolist() == rules.end == [1, 0, 0, 1, 1]
  iob1, iob1_start = crf.bio_allowed_transitions(["O", "I-X", "B-X"],
                                                 scheme="IOB1")
  assert iob1_start.tolist() == [True, True, False]
  assert iob1[0].tolist() == [True, True, False]
  empty, empty_start = crf.bio_allowed_transitions([])
  assert empty.shape == (0, 0) and empty_start.shape == (0,)


@pytest.mark.parametrize("labels, scheme, message", [
    (["O", "X-LOC"], None, r"label 1.*'X-LOC'.*unknown prefix 'X'"),
    (["O", "B-LOC", "E-LOC"], "BIO", r"label 2.*'E-LOC'"),
    (["O", "B-LOC"], "XYZ", r"Unknown tag scheme 'XYZ'"),
])
def test_bio_allowed_transitions_rejects_bad_labels(labels, scheme, message):
  with pytest.raises(ValueError, match=message):
    crf.bio_allowed_transitions(labels, scheme=scheme)
