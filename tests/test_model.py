"""trainer.model.heads: the loss, the word-start mask and each head on a tiny
BERT.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from trainer.model import heads
from trainer import schema
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

LABELS = ["O", "B-LOC", "I-LOC"]
TINY_BERT = dict(vocab_size=20, hidden_size=32, num_hidden_layers=1,
                 num_attention_heads=2, intermediate_size=37,
                 max_position_embeddings=16)
# Two rows of five positions: [CLS] w w [SEP] pad / [CLS] w [SEP] pad pad.
INPUT_IDS = [[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]]
INPUT_MASK = [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]
WORD_POSITIONS = [[-1, 0, 1, -1, -1], [-1, 0, -1, -1, -1]]
GOLD = [[-1, 0, 1, -1, -1], [-1, 2, -1, -1, -1]]


def _features(with_word_positions=True):
  features = {schema.INPUT_IDS: tf.constant(INPUT_IDS),
              schema.INPUT_MASK: tf.constant(INPUT_MASK),
              schema.SEGMENT_IDS: tf.zeros([2, 5], tf.int32)}
  if with_word_positions:
    features[schema.WORD_POSITIONS] = tf.constant(WORD_POSITIONS)
  return features


def _run(fetches, assignments=None):
  """Initialises the default graph, assigns {variable name: value}, runs."""
  with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    variables = {v.op.name: v for v in tf1.global_variables()}
    for name, value in (assignments or {}).items():
      variables[name].load(value, session)
    return session.run(fetches)


def test_masked_token_loss_exact_values():
  # Position 0: logits [0, ln 3], label 1 -> p = 3/4, CE = ln(4/3).
  # Position 1: unlabelled (-1), masked out.
  # Position 2: logits [ln 3, 0], label 1 -> p = 1/4, CE = ln 4.
  logits = tf.constant([[[0.0, math.log(3.0)], [5.0, -5.0],
                         [math.log(3.0), 0.0]]])
  loss, per_position, weights = heads.masked_token_loss(
      logits, tf.constant([[1, schema.PAD_LABEL_ID, 1]]))
  assert weights.numpy().tolist() == [[1.0, 0.0, 1.0]]
  np.testing.assert_allclose(per_position.numpy(),
                             [[math.log(4 / 3), 0.0, math.log(4.0)]],
                             rtol=1e-6)
  np.testing.assert_allclose(loss.numpy(),
                             (math.log(4 / 3) + math.log(4.0)) / 2, rtol=1e-6)


def test_masked_token_loss_with_no_labels_is_zero():
  loss, per_position, weights = heads.masked_token_loss(
      tf.ones([1, 3, 2]), tf.fill([1, 3], schema.PAD_LABEL_ID))
  assert float(loss) == 0.0
  assert per_position.numpy().tolist() == [[0.0, 0.0, 0.0]]
  assert weights.numpy().tolist() == [[0.0, 0.0, 0.0]]


def test_word_start_mask_from_word_positions_ignores_padding():
  # Batched tf.Examples pad word_positions with 0: not a word start there.
  features = {schema.INPUT_MASK: tf.constant([[1, 1, 1, 0, 0]]),
              schema.INPUT_IDS: tf.constant([[2, 7, 7, 0, 0]]),
              schema.WORD_POSITIONS: tf.constant([[-1, 0, 1, 0, 0]])}
  mask = heads.word_start_mask(features, continuation_ids=(7,))
  assert mask.numpy().tolist() == [[False, True, True, False, False]]


def test_word_start_mask_from_piece_ids():
  # Ids 0, 2, 3 (specials) and 7 ("##") never start a word; id 9 is past the
  # continuation table and starts one; padding never does.
  features = {schema.INPUT_MASK: tf.constant([[1, 1, 1, 1, 1, 0]]),
              schema.INPUT_IDS: tf.constant([[2, 5, 7, 9, 3, 0]])}
  mask = heads.word_start_mask(features, continuation_ids=(0, 2, 3, 7))
  assert mask.numpy().tolist() == [[False, True, False, True, False, False]]
  no_table = heads.word_start_mask(features, continuation_ids=())
  assert no_table.numpy().tolist() == [[True] * 5 + [False]]


def test_continuation_ids_from_vocab():
  vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4,
           "[unused1]": 5, "john": 6, "##son": 7, "[": 8, "##": 9, "的": 10}
  # [UNK] stays a word start (an unknown word is still a word), and so do
  # ordinary pieces such as "[" and "的".
  assert heads.continuation_ids_from_vocab(vocab) == (0, 2, 3, 4, 5, 7, 9)
  assert heads.continuation_ids_from_vocab({}) == ()


def test_head_config_as_json_leaves_out_vocab_ids():
  head = heads.HeadConfig(kind="crf", continuation_ids=(0, 7))
  assert head.uses_crf and not heads.HeadConfig().uses_crf
  assert head.as_json() == {"kind": "crf", "dropout": 0.1, "lstm_units": 128,
                            "lstm_layers": 1, "crf_constrain_bio": False,
                            "bert_layers": [-1],
                            "layer_combination": "concat"}


def test_head_config_round_trips_layers_through_json():
  head = heads.HeadConfig(kind="bilstm_crf", bert_layers=[-2, -1],
                          layer_combination="scalar_mix")
  assert head.bert_layers == (-2, -1)  # ner_config.json's list -> tuple
  settings = head.as_json()
  assert settings["bert_layers"] == [-2, -1]
  assert heads.HeadConfig(**settings) == head
  hash(heads.HeadConfig(**settings))


@pytest.mark.parametrize("layers, count, expected", [
    ((-1,), 1, (0,)),
    ((-4, -3, -2, -1), 6, (2, 3, 4, 5)),
    ((0, 5, -3), 6, (0, 5, 3)),
])
def test_resolve_layers(layers, count, expected):
  assert heads.resolve_layers(layers, count) == expected


@pytest.mark.parametrize("layers, count, message", [
    ((), 2, r"^--bert_layers is empty"),
    ((-3,), 2, r"^--bert_layers=-3: the encoder has 2 layers, so indices are "
               r"0\.\.1 or -2\.\.-1"),
    ((2,), 2, r"^--bert_layers=2: the encoder has 2 layers"),
    ((1, -1), 2, r"^--bert_layers=1,-1 names a layer twice"),
])
def test_resolve_layers_errors_name_the_flag(layers, count, message):
  with pytest.raises(ValueError, match=message):
    heads.resolve_layers(layers, count)


def test_combine_layers_exact_values():
  first = tf.constant([[1.0, 2.0]])
  second = tf.constant([[3.0, 6.0]])
  with tf.Graph().as_default():
    concat = heads.combine_layers([tf.constant([[1.0, 2.0]]),
                                   tf.constant([[3.0, 6.0]])], "concat")
    mean = heads.combine_layers([tf.constant([[1.0, 2.0]]),
                                 tf.constant([[3.0, 6.0]])], "mean")
    mix = heads.combine_layers([tf.constant([[1.0, 2.0]]),
                                tf.constant([[3.0, 6.0]])], "scalar_mix")
    variables = {v.op.name: v for v in tf1.trainable_variables()}
    assert sorted(variables) == ["scalar_mix/gamma",
                                 "scalar_mix/layer_weights"]
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      values = session.run((concat, mean, mix))
      # Weights [ln 3, 0] -> softmax [3/4, 1/4]; scale 2.
      variables["scalar_mix/layer_weights"].load([np.log(3.0), 0.0], session)
      variables["scalar_mix/gamma"].load(2.0, session)
      weighted = session.run(mix)
  assert values[0].tolist() == [[1.0, 2.0, 3.0, 6.0]]
  assert values[1].tolist() == [[2.0, 4.0]]
  np.testing.assert_allclose(values[2], [[2.0, 4.0]], rtol=1e-6)  # equal mix
  np.testing.assert_allclose(weighted, [[2 * (0.75 + 0.75), 2 * (1.5 + 1.5)]],
                             rtol=1e-6)
  # One layer: concat and mean hand it back unchanged.
  assert heads.combine_layers([first], "concat") is first
  assert heads.combine_layers([second], "mean") is second
  with pytest.raises(ValueError, match=r"Unknown --layer_combination 'sum'; "
                     r"allowed: concat, scalar_mix, mean\."):
    heads.combine_layers([first], "sum")


TWO_LAYERS = dict(TINY_BERT, num_hidden_layers=2)


def _shared():
  """Scope whose every entry builds "bert/..." again, sharing variables.

  Entering the current scope object (as `export` does) restores the scope
  counters on exit, and AUTO_REUSE turns a second BERT into the first.
  """
  return tf1.variable_scope(tf1.get_variable_scope(), reuse=tf1.AUTO_REUSE)


def test_selected_layers_are_get_all_encoder_layers():
  with tf.Graph().as_default():
    with _shared():
      selected = heads.encoder_layers(modeling.BertConfig(**TWO_LAYERS),
                                      False, _features(), (-1, 0))
    with _shared():
      reference = modeling.BertModel(
          modeling.BertConfig(**TWO_LAYERS), False,
          tf.constant(INPUT_IDS), tf.constant(INPUT_MASK))
    assert len(tf1.global_variables()) == 2 * 16 + 5 + 2  # one BERT only
    got, want, last = _run((selected, reference.get_all_encoder_layers(),
                            reference.get_sequence_output()))
  assert len(got) == 2 and got[0].shape == (2, 5, 32)
  np.testing.assert_array_equal(got[0], want[1])
  np.testing.assert_array_equal(got[1], want[0])
  np.testing.assert_array_equal(got[0], last)
  assert not np.array_equal(want[0], want[1])


@pytest.mark.parametrize("kind, combination, width", [
    ("softmax", "concat", 64), ("crf", "mean", 32),
    ("bilstm_crf", "scalar_mix", 2 * 4)])
def test_every_head_builds_on_several_layers(kind, combination, width):
  head = heads.HeadConfig(kind=kind, lstm_units=4, bert_layers=(-2, -1),
                          layer_combination=combination)
  with tf.Graph().as_default():
    built = heads.build_head(modeling.BertConfig(**TWO_LAYERS), LABELS,
                             _features(), is_training=True, head=head)
    loss, _, _ = built.loss_fn(tf.constant(GOLD))
    head_variables = {v.op.name: v.shape.as_list()
                      for v in tf1.trainable_variables()
                      if v.op.name.startswith(heads.HEAD_SCOPE)}
    outputs, loss = _run((built.outputs, loss))
  # The output layer reads the combined layers (or the BiLSTM over them).
  assert head_variables["ner_head/output_weights"] == [width, 3]
  assert outputs[schema.OUTPUT_LABEL_IDS].shape == (2, 5)
  assert np.isfinite(loss) and loss > 0
  mixes = sorted(name for name in head_variables if "scalar_mix" in name)
  assert mixes == ([] if combination != "scalar_mix" else
                   ["ner_head/scalar_mix/gamma",
                    "ner_head/scalar_mix/layer_weights"])


def test_scalar_mix_weights_train_and_their_softmax_sums_to_one():
  head = heads.HeadConfig(bert_layers=(0, 1), layer_combination="scalar_mix")
  with tf.Graph().as_default():
    built = heads.build_head(modeling.BertConfig(**TWO_LAYERS), LABELS,
                             _features(), is_training=True, head=head)
    loss, _, _ = built.loss_fn(tf.constant(GOLD))
    weights, = [v for v in tf1.trainable_variables()
                if v.op.name == "ner_head/scalar_mix/layer_weights"]
    gradient, = tf.gradients(loss, [weights])
    step = tf1.train.GradientDescentOptimizer(1.0).apply_gradients(
        [(gradient, weights)])
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      before = session.run(tf.nn.softmax(weights))
      _, applied = session.run((step, gradient))
      after = session.run(tf.nn.softmax(weights))
  np.testing.assert_allclose(before, [0.5, 0.5])
  # The loss reaches the mix weights: a non-zero gradient (its size depends
  # on the random layers, sometimes 1e-5), and one step moves them.
  assert np.any(applied != 0)
  assert not np.array_equal(after, before)
  np.testing.assert_allclose(after.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("kind, combination", [
    ("softmax", "concat"), ("crf", "mean"), ("bilstm_crf", "scalar_mix")])
def test_cached_word_start_features_give_the_encoder_path_loss(kind,
                                                               combination):
  """The compact word sequence through the same head: same loss, same tags."""
  head = heads.HeadConfig(kind=kind, lstm_units=4, bert_layers=(0, 1),
                          layer_combination=combination)
  bert_config = modeling.BertConfig(**TWO_LAYERS)
  with tf.Graph().as_default():
    tf1.set_random_seed(1)
    with _shared():
      built = heads.build_head(bert_config, LABELS, _features(), head=head)
      loss, _, _ = built.loss_fn(tf.constant(GOLD))
    with _shared():
      layers = heads.encoder_layers(bert_config, False, _features(), (0, 1))
      starts = tf.constant(WORD_POSITIONS) >= 0
      if combination == "mean":  # the cache stores the average
        layers = [heads.combine_layers(layers, "mean")]
      # Row 0 has two words, row 1 one: pad row 1 with a zero word.
      words = [tf.boolean_mask(tf.stack(layers, axis=2)[row], starts[row])
               for row in range(2)]
      stacked = tf.stack([words[0], tf.pad(words[1], [[0, 1], [0, 0],
                                                      [0, 0]])])
      cached = heads.build_head_on_cached_features(
          bert_config, LABELS, {schema.ENCODER_FEATURES: stacked,
                                schema.INPUT_MASK: tf.constant([[1, 1],
                                                                [1, 0]]),
                                schema.WORD_POSITIONS: tf.constant(
                                    [[0, 1], [0, -1]])}, head=head)
      cached_loss, _, _ = cached.loss_fn(tf.constant([[0, 1], [2, -1]]))
    loss, cached_loss, tags, cached_tags = _run(
        (loss, cached_loss, built.outputs[schema.OUTPUT_LABEL_IDS],
         cached.outputs[schema.OUTPUT_LABEL_IDS]))
  np.testing.assert_allclose(cached_loss, loss, rtol=1e-6)
  assert cached_tags[0].tolist() == tags[0][[1, 2]].tolist()
  assert cached_tags[1][0] == tags[1][1]


def _build(head, with_word_positions=True, seed=1):
  """Builds BERT + head in a fresh graph with a fixed seed."""
  graph = tf.Graph()
  with graph.as_default():
    tf1.set_random_seed(seed)
    built = heads.build_head(modeling.BertConfig(**TINY_BERT), LABELS,
                             _features(with_word_positions), head=head)
    loss = built.loss_fn(tf.constant(GOLD))
  return graph, built, loss


def _head_bias(bias):
  """Zero output kernel and this bias: every position gets the same logits."""
  return {f"{heads.HEAD_SCOPE}/output_weights": np.zeros([32, 3], np.float32),
          f"{heads.HEAD_SCOPE}/output_bias": np.array(bias, np.float32)}


def test_softmax_head_exact_outputs_and_loss():
  graph, built, (loss, values, weights) = _build(heads.HeadConfig())
  with graph.as_default():
    # Logits [0, ln 3, 0] everywhere -> probabilities [0.2, 0.6, 0.2].
    outputs, loss, values, weights = _run(
        (built.outputs, loss, values, weights),
        _head_bias([0.0, math.log(3.0), 0.0]))
  assert outputs[schema.OUTPUT_LABEL_IDS].tolist() == [[1] * 5] * 2
  assert outputs[schema.OUTPUT_TAGS].tolist() == [[b"B-LOC"] * 5] * 2
  np.testing.assert_allclose(outputs[schema.OUTPUT_SCORES], 0.6, rtol=1e-6)
  # Gold O, B-LOC, I-LOC -> -ln 0.2, -ln 0.6, -ln 0.2.
  expected = [[0, -math.log(0.2), -math.log(0.6), 0, 0],
              [0, -math.log(0.2), 0, 0, 0]]
  np.testing.assert_allclose(values, expected, rtol=1e-5)
  assert weights.tolist() == [[0, 1, 1, 0, 0], [0, 1, 0, 0, 0]]
  np.testing.assert_allclose(loss, np.sum(expected) / 3, rtol=1e-5)


def test_crf_head_tags_only_word_starts_with_marginal_scores():
  graph, built, (loss, values, weights) = _build(heads.HeadConfig(kind="crf"))
  with graph.as_default():
    # Zero transitions: words are independent, p = [0.2, 0.6, 0.2] each.
    outputs, loss, values, weights = _run(
        (built.outputs, loss, values, weights),
        _head_bias([0.0, math.log(3.0), 0.0]))
  assert outputs[schema.OUTPUT_LABEL_IDS].tolist() == [[0, 1, 1, 0, 0],
                                                       [0, 1, 0, 0, 0]]
  assert outputs[schema.OUTPUT_TAGS][0].tolist() == [b"O", b"B-LOC", b"B-LOC",
                                                     b"O", b"O"]
  np.testing.assert_allclose(outputs[schema.OUTPUT_SCORES],
                             [[0, 0.6, 0.6, 0, 0], [0, 0.6, 0, 0, 0]],
                             rtol=1e-5)
  # Per row: NLL per word, weighted by words (gold O B-LOC / I-LOC).
  row_nll = [-(math.log(0.2) + math.log(0.6)), -math.log(0.2)]
  np.testing.assert_allclose(values, [row_nll[0] / 2, row_nll[1]], rtol=1e-5)
  assert weights.tolist() == [2.0, 1.0]
  np.testing.assert_allclose(loss, sum(row_nll) / 3, rtol=1e-5)


def test_constrained_crf_head_never_starts_with_inside_tag():
  head = heads.HeadConfig(kind="crf", crf_constrain_bio=True)
  graph, built, _ = _build(head)
  bias = [0.0, 0.5, math.log(3.0)]
  with graph.as_default():
    # I-LOC has the best unary score but may not start an entity: the best
    # allowed paths are B-LOC I-LOC (0.5 + ln 3) and B-LOC (0.5).
    outputs = _run(built.outputs, _head_bias(bias))
  assert outputs[schema.OUTPUT_LABEL_IDS].tolist() == [[0, 1, 2, 0, 0],
                                                       [0, 1, 0, 0, 0]]
  # Scores are the (unconstrained) marginals of the chosen tags.
  p_b, p_i = (np.exp(bias) / np.exp(bias).sum())[1:]
  np.testing.assert_allclose(outputs[schema.OUTPUT_SCORES],
                             [[0, p_b, p_i, 0, 0], [0, p_b, 0, 0, 0]],
                             rtol=1e-5)


def test_softmax_head_log_distribution_is_log_softmax_of_its_emissions():
  graph, built, _ = _build(heads.HeadConfig())
  with graph.as_default():
    emissions, log_distribution, scores = _run(
        (built.emissions, built.log_distribution,
         built.outputs[schema.OUTPUT_SCORES]))
  assert emissions.shape == log_distribution.shape == (2, 5, 3)
  assert emissions.dtype == log_distribution.dtype == np.float32
  shifted = emissions - emissions.max(-1, keepdims=True)
  expected = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  np.testing.assert_allclose(log_distribution, expected, rtol=1e-6,
                             atol=1e-6)
  np.testing.assert_allclose(np.exp(log_distribution).max(-1), scores,
                             rtol=1e-6)


@pytest.mark.parametrize("kind", ["crf", "bilstm_crf"])
def test_crf_head_log_distribution_is_log_marginals_at_word_starts(kind):
  head = heads.HeadConfig(kind=kind, lstm_units=4)
  graph, built, _ = _build(head)
  rng = np.random.RandomState(0)
  with graph.as_default():
    # Non-zero transitions: words are not independent.
    emissions, log_distribution, scores, tags = _run(
        (built.emissions, built.log_distribution,
         built.outputs[schema.OUTPUT_SCORES],
         built.outputs[schema.OUTPUT_LABEL_IDS]),
        {f"{heads.HEAD_SCOPE}/crf/{name}": rng.normal(size=shape)
         for name, shape in (("transitions", [3, 3]),
                             ("start_transitions", [3]),
                             ("end_transitions", [3]))})
  starts = np.array(WORD_POSITIONS) >= 0
  assert emissions.shape == log_distribution.shape == (2, 5, 3)
  np.testing.assert_allclose(np.exp(log_distribution[starts]).sum(-1), 1.0,
                             rtol=1e-5)
  assert (emissions[starts] != 0).all()
  assert not emissions[~starts].any() and not log_distribution[~starts].any()
  # The predicted tag's score is its marginal.
  chosen = np.take_along_axis(log_distribution, tags[..., None], -1)[..., 0]
  np.testing.assert_allclose(np.exp(chosen[starts]), scores[starts],
                             rtol=1e-5)


def test_crf_head_log_distribution_exact_values_and_floor():
  graph, built, _ = _build(heads.HeadConfig(kind="crf"))
  with graph.as_default():
    # Zero transitions, logits [0, ln 3, 0]: marginals [0.2, 0.6, 0.2].
    emissions, log_distribution = _run(
        (built.emissions, built.log_distribution),
        _head_bias([0.0, math.log(3.0), 0.0]))
    # A marginal that underflows (e^-200) is floored, not -inf.
    floored = _run(built.log_distribution, _head_bias([0.0, 200.0, 0.0]))
  starts = np.array(WORD_POSITIONS) >= 0
  np.testing.assert_allclose(emissions[starts], [[0, math.log(3.0), 0]] * 3,
                             rtol=1e-6)
  np.testing.assert_allclose(log_distribution[starts],
                             np.log([[0.2, 0.6, 0.2]] * 3), rtol=1e-5)
  assert floored[starts].tolist() == [[heads.LOG_PROBABILITY_FLOOR, 0.0,
                                       heads.LOG_PROBABILITY_FLOOR]] * 3
  assert not floored[~starts].any()


def test_crf_head_without_word_positions_uses_continuation_ids():
  # Id 6 is a continuation: row 0 has one word (at position 1).
  head = heads.HeadConfig(kind="crf", continuation_ids=(0, 2, 3, 6))
  graph, built, _ = _build(head, with_word_positions=False)
  with graph.as_default():
    outputs = _run(built.outputs, _head_bias([0.0, math.log(3.0), 0.0]))
  assert outputs[schema.OUTPUT_LABEL_IDS].tolist() == [[0, 1, 0, 0, 0],
                                                       [0, 1, 0, 0, 0]]


def test_bilstm_crf_head_shapes_and_variables():
  head = heads.HeadConfig(kind="bilstm_crf", lstm_units=4, lstm_layers=2)
  graph, built, (loss, _, _) = _build(head)
  with graph.as_default():
    names = sorted(v.op.name for v in tf1.trainable_variables()
                   if v.op.name.startswith(heads.HEAD_SCOPE))
    outputs, loss = _run((built.outputs, loss))
  assert names == [
      "ner_head/bilstm_0/bidirectional_rnn/bw/backward/bias",
      "ner_head/bilstm_0/bidirectional_rnn/bw/backward/kernel",
      "ner_head/bilstm_0/bidirectional_rnn/fw/forward/bias",
      "ner_head/bilstm_0/bidirectional_rnn/fw/forward/kernel",
      "ner_head/bilstm_1/bidirectional_rnn/bw/backward/bias",
      "ner_head/bilstm_1/bidirectional_rnn/bw/backward/kernel",
      "ner_head/bilstm_1/bidirectional_rnn/fw/forward/bias",
      "ner_head/bilstm_1/bidirectional_rnn/fw/forward/kernel",
      "ner_head/crf/end_transitions", "ner_head/crf/start_transitions",
      "ner_head/crf/transitions", "ner_head/output_bias",
      "ner_head/output_weights"]
  assert outputs[schema.OUTPUT_LABEL_IDS].shape == (2, 5)
  assert outputs[schema.OUTPUT_SCORES].shape == (2, 5)
  assert loss > 0
  # Only word starts carry a tag and a score.
  off_word = np.array(WORD_POSITIONS) < 0
  assert not outputs[schema.OUTPUT_SCORES][off_word].any()
  assert not outputs[schema.OUTPUT_LABEL_IDS][off_word].any()
  assert (outputs[schema.OUTPUT_SCORES][~off_word] > 0).all()


def test_fixed_seed_gives_identical_outputs():
  runs = []
  for _ in range(2):
    graph, built, (loss, _, _) = _build(heads.HeadConfig())
    with graph.as_default():
      runs.append(_run((built.outputs[schema.OUTPUT_SCORES], loss)))
  (scores, loss), (scores_again, loss_again) = runs
  assert scores.shape == (2, 5)
  np.testing.assert_array_equal(scores, scores_again)
  assert loss == loss_again > 0


def test_build_outputs_and_unknown_head():
  with tf.Graph().as_default():
    outputs = heads.build_outputs(modeling.BertConfig(**TINY_BERT), LABELS,
                                  _features())
    assert sorted(outputs) == sorted([schema.OUTPUT_TAGS,
                                      schema.OUTPUT_LABEL_IDS,
                                      schema.OUTPUT_SCORES])
    assert outputs[schema.OUTPUT_TAGS].dtype == tf.string
    assert outputs[schema.OUTPUT_SCORES].shape.as_list() == [2, 5]
  with tf.Graph().as_default(), pytest.raises(
      ValueError, match=r"Unknown head 'lstm'; allowed: softmax, crf, "
      r"bilstm_crf\."):
    heads.build_head(modeling.BertConfig(**TINY_BERT), LABELS, _features(),
                     head=heads.HeadConfig(kind="lstm"))
