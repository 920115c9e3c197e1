"""The NER model: BERT encoder, task head (softmax, CRF, BiLSTM-CRF), loss.

`build_head` is the one definition of predictions, shared by the Estimator
`model_fn` (`trainer.training.model_fn`) and every exported signature
(`trainer.export.exporter`), so training-time prediction and serving cannot
drift. `build_head_on_cached_features` runs the same head code on encoder layers
computed earlier (`trainer.features.encoder_cache`), for training with a frozen
encoder.

The head reads the encoder layers `HeadConfig.bert_layers` picks from
`BertModel.get_all_encoder_layers()`, combined per `layer_combination`:

    bert_layers (-1,)            the last layer (get_sequence_output())
    (-4, -3, -2, -1), concat     [B, T, 4H], the BERT paper's best
                                 feature-based setting (section 5.3)
    (0, ..., 5), scalar_mix      gamma * sum_i softmax(w)_i * layer_i (ELMo)
    (-2, -1), mean               the average of the two

Tensors (B = batch, T = positions in the batch, L = number of labels)::

    input_ids, input_mask, segment_ids   int32 [B, T]
    label_ids                            int32 [B, T], -1 where unlabelled
    encoder_features                     float16/32 [B, T, n_layers, H]
                                         (cached training only)
    logits, emissions, log_distribution  float32 [B, T, L]
    predictions                          tags string [B, T],
                                         label_ids int32 [B, T],
                                         scores float32 [B, T]
"""

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from trainer.model import bilstm as bilstm_lib
from trainer.model import crf as crf_lib
from trainer.model import precision
from trainer import schema
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

# Variable scope of the task layer; everything under it is the NER head.
HEAD_SCOPE = "ner_head"
# Variable scope (under HEAD_SCOPE) of the scalar mix's weights and scale.
SCALAR_MIX_SCOPE = "scalar_mix"
# Least CRF log marginal in `log_distribution` (e^-30 ~ 1e-13).
LOG_PROBABILITY_FLOOR = -30.0


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  """The task layer on top of BERT.

  Attributes:
    kind: "softmax" (a dense layer per word-piece, the google-research/bert
      recipe), "crf" (dense + linear-chain CRF over words) or "bilstm_crf"
      (BiLSTM + dense + CRF over words).
    dropout: dropout on the (combined) encoder output, and between LSTM
      layers, while training.
    lstm_units: units per direction of each BiLSTM layer.
    lstm_layers: stacked BiLSTM layers.
    crf_constrain_bio: forbid impossible transitions (O -> I-X, B-X -> I-Y,
      ...) in Viterbi decoding.
    continuation_ids: ids of word-pieces that never start a word (``##``
      pieces and specials). Used only when a request carries no
      `word_positions` (the plain `serving_default` signature): a position
      starts a word iff it is real and its piece is not a continuation.
    bert_layers: indices into `BertModel.get_all_encoder_layers()`, negative
      from the top; (-1,) is the last layer (`get_sequence_output()`).
      A list (from ner_config.json) becomes a tuple.
    layer_combination: how several layers become one vector per position,
      one of `LAYER_COMBINATIONS` (see `combine_layers`).
  """
  kind: str = "softmax"
  dropout: float = 0.1
  lstm_units: int = 128
  lstm_layers: int = 1
  crf_constrain_bio: bool = False
  continuation_ids: tuple = ()
  bert_layers: tuple = (-1,)
  layer_combination: str = "concat"

  def __post_init__(self):
    object.__setattr__(self, "bert_layers",
                       tuple(int(index) for index in self.bert_layers))

  @property
  def uses_crf(self):
    return self.kind in ("crf", "bilstm_crf")

  def as_json(self):
    """JSON-ready settings (continuation ids are derived from the vocab)."""
    return {"kind": self.kind, "dropout": self.dropout,
            "lstm_units": self.lstm_units, "lstm_layers": self.lstm_layers,
            "crf_constrain_bio": self.crf_constrain_bio,
            "bert_layers": list(self.bert_layers),
            "layer_combination": self.layer_combination}


def resolve_layers(bert_layers: Sequence[int],
                   num_hidden_layers: int) -> tuple[int, ...]:
  """Non-negative indices of `bert_layers` in a `num_hidden_layers` encoder.

  Example: (-4, -3, -2, -1) with 6 layers -> (2, 3, 4, 5); (0, -1) with 1
  layer raises (both name layer 0).

  Raises:
    ValueError: naming --bert_layers, for an empty list, an index outside
      the encoder or a layer named twice.
  """
  text = ",".join(str(index) for index in bert_layers)
  if not bert_layers:
    raise ValueError("--bert_layers is empty; pass at least one encoder "
                     "layer index, e.g. -1 (the last layer).")
  resolved = []
  for index in bert_layers:
    if not -num_hidden_layers <= index < num_hidden_layers:
      raise ValueError(
          f"--bert_layers={text}: the encoder has {num_hidden_layers} layers, "
          f"so indices are 0..{num_hidden_layers - 1} or "
          f"-{num_hidden_layers}..-1 (negative counts from the top).")
    resolved.append(index % num_hidden_layers)
  if len(set(resolved)) != len(resolved):
    raise ValueError(f"--bert_layers={text} names a layer twice (in a "
                     f"{num_hidden_layers}-layer encoder); list each once.")
  return tuple(resolved)


def continuation_ids_from_vocab(vocab: Mapping[str, int]) -> tuple[int, ...]:
  """Ids of pieces that never start a word: '##...' pieces and specials.

  [UNK] is not among them: an unknown word is still a word. Every other
  piece that is not `schema.is_ordinary_piece` (bracketed specials such as
  [CLS], [PAD], [unused7], and '##' continuations) is.

  Example: {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "john": 5, "##son": 7}
  -> (0, 2, 7).
  """
  return tuple(sorted(
      index for piece, index in vocab.items()
      if not schema.is_ordinary_piece(piece) and piece != schema.UNK_TOKEN))


def word_start_mask(features: Mapping[str, tf.Tensor],
                    continuation_ids) -> tf.Tensor:
  """bool [B, T]: positions holding the first word-piece of a word.

  Exact from `word_positions` when present (training, eval, predict and the
  `predict_examples` signature); otherwise derived from the piece ids: a
  real position whose id is not in `continuation_ids`.

  Example: input_mask [[1, 1, 1, 1, 0]], input_ids [[2, 5, 7, 3, 0]],
  continuation_ids (0, 2, 3, 7) -> [[False, True, False, False, False]];
  with word_positions [[-1, 0, -1, -1, 0]] (0 = batch padding) the same.

  Args:
    features: int32 [B, T] `input_mask`, and `word_positions` or `input_ids`.
    continuation_ids: ids that never start a word
      (`continuation_ids_from_vocab`).
  """
  real = tf.cast(features[schema.INPUT_MASK], tf.bool)
  if schema.WORD_POSITIONS in features:
    # `and real`: batched tf.Examples are padded with 0, which would
    # otherwise read as "word 0 starts here".
    return tf.logical_and(features[schema.WORD_POSITIONS] >= 0, real)
  input_ids = features[schema.INPUT_IDS]
  is_continuation = np.zeros([max(continuation_ids, default=0) + 1], np.bool_)
  is_continuation[list(continuation_ids)] = True
  table = tf.constant(is_continuation)
  in_table = input_ids < tf.shape(table)[0]
  continuation = tf.logical_and(
      in_table, tf.gather(table, tf.where(in_table, input_ids,
                                          tf.zeros_like(input_ids))))
  return tf.logical_and(real, tf.logical_not(continuation))


def encoder_layers(bert_config, is_training: bool,
                   features: Mapping[str, tf.Tensor],
                   bert_layers: Sequence[int] = (-1,),
                   use_one_hot_embeddings: bool = False) -> list[tf.Tensor]:
  """The selected layers of `modeling.BertModel` on the feature dict.

  Args:
    bert_config: `modeling.BertConfig`.
    is_training: enables BERT's dropout.
    features: int32 [B, T] `input_ids`, `input_mask`, `segment_ids`.
    bert_layers: indices into `get_all_encoder_layers()` (see
      `resolve_layers`); (-1,) is `get_sequence_output()`, the same tensor.
    use_one_hot_embeddings: TPU embedding lookups.

  Returns:
    list of float32 [B, T, H], in the order of `bert_layers`.
  """
  indices = resolve_layers(bert_layers, bert_config.num_hidden_layers)
  with precision.building(training=is_training):
    model = modeling.BertModel(
        config=bert_config, is_training=is_training,
        input_ids=features[schema.INPUT_IDS],
        input_mask=features[schema.INPUT_MASK],
        token_type_ids=features[schema.SEGMENT_IDS],
        use_one_hot_embeddings=use_one_hot_embeddings)
  all_layers = model.get_all_encoder_layers()
  return [all_layers[index] for index in indices]


def create_bert_variables(bert_config) -> None:
  """Creates BERT's variables (as `BertModel` names them) without using them.

  Cached training (`build_head_on_cached_features`) never runs the encoder,
  but its graph holds every BERT variable so that `--init_checkpoint`
  restores them and checkpoints hold the whole model. The encoder ops built
  here on a [1, 1] dummy input are never fetched, so they never run.
  """
  modeling.BertModel(config=bert_config, is_training=False,
                     input_ids=tf.zeros([1, 1], tf.int32))


def combine_layers(layers: Sequence[tf.Tensor],
                   combination: str = "concat") -> tf.Tensor:
  """One vector per position from n encoder layers.

  Call it inside `HEAD_SCOPE`: scalar_mix creates head variables there, so
  they train (and are not restored) under --freeze_bert.

  Args:
    layers: list of n float32 [..., H] tensors.
    combination: "concat" -> [..., n * H] in list order; "mean" ->
      [..., H]; "scalar_mix" (ELMo) -> gamma * sum_i softmax(w)_i * layer_i,
      [..., H], with `scalar_mix/layer_weights` float32 [n] (init 0: an
      equal mix) and `scalar_mix/gamma` float32 [] (init 1).

  Returns:
    float32 tensor; a single layer comes back unchanged for concat and mean.

  Example: layers [[1., 2.]] and [[3., 4.]] -> concat [[1., 2., 3., 4.]],
  mean [[2., 3.]], scalar_mix at init [[2., 3.]].
  """
  if combination not in schema.LAYER_COMBINATIONS:
    raise ValueError(f"Unknown --layer_combination {combination!r}; allowed: "
                     f"{', '.join(schema.LAYER_COMBINATIONS)}.")
  layers = list(layers)
  if combination == "scalar_mix":
    with tf1.variable_scope(SCALAR_MIX_SCOPE):
      weights = tf1.get_variable("layer_weights", [len(layers)],
                                 initializer=tf1.zeros_initializer())
      gamma = tf1.get_variable("gamma", [],
                               initializer=tf1.ones_initializer())
    normalized = tf.nn.softmax(weights)
    return gamma * tf.add_n([normalized[index] * layer
                             for index, layer in enumerate(layers)])
  if len(layers) == 1:
    return layers[0]
  if combination == "concat":
    return tf.concat(layers, axis=-1)
  return tf.add_n(layers) / float(len(layers))


def _dense_logits(inputs, num_labels, is_training=False):
  """[..., H] -> float32 [..., L] with the head's output layer variables."""
  hidden_size = inputs.shape[-1]
  kernel = tf1.get_variable(
      "output_weights", [hidden_size, num_labels],
      initializer=tf1.truncated_normal_initializer(stddev=0.02))
  bias = tf1.get_variable("output_bias", [num_labels],
                          initializer=tf1.zeros_initializer())
  if is_training:
    return _project(inputs, kernel) + bias
  return tf.einsum("...h,hl->...l", inputs, kernel) + bias


@tf.custom_gradient
def _project(inputs, kernel):
  """`einsum("...h,hl->...l")` whose kernel gradient is one matmul.

  TensorFlow's einsum gradient for a kernel shared over the "..." positions
  forms every position's outer product ([..., H, L]) and then sums them; one
  [H, N] x [N, L] matmul gives the same gradient several times faster (13x
  for N 1000, H 1536, L 9 on a 2-core CPU). The forward op is the one
  inference uses, so outputs are bit-identical.
  """
  outputs = tf.einsum("...h,hl->...l", inputs, kernel)

  def gradient(upstream):
    hidden_size, num_labels = tf.unstack(tf.shape(kernel))
    kernel_gradient = tf.matmul(tf.reshape(inputs, [-1, hidden_size]),
                                tf.reshape(upstream, [-1, num_labels]),
                                transpose_a=True)
    return tf.einsum("...l,hl->...h", upstream, kernel), kernel_gradient

  return outputs, gradient


def _bilstm(inputs, lengths, head, is_training):
  """Stacked BiLSTM over [B, W, H] words -> float32 [B, W, 2 * units].

  `trainer.model.bilstm`: the variables of `tf1.nn.bidirectional_dynamic_rnn`
  over two `LSTMCell`s (checkpoints of either load), computed several times
  faster.
  """
  return bilstm_lib.stacked_bilstm(inputs, lengths, head.lstm_units,
                                   head.lstm_layers, head.dropout,
                                   is_training)


class _Head:
  """Built head: predictions, loss function and per-position label scores."""

  def __init__(self, outputs, loss_fn, emissions, log_distribution):
    self.outputs = outputs    # {tags, label_ids, scores}: [B, T] each
    self.loss_fn = loss_fn    # label_ids [B, T] -> (loss, values, weights)
    # float32 [B, T, L] (distillation): softmax logits / CRF potentials, and
    # log_softmax(logits) / log CRF marginals; a CRF's are 0 off word starts.
    self.emissions = emissions
    self.log_distribution = log_distribution


def _softmax_head(sequence_output, label_names, is_training):
  logits = _dense_logits(sequence_output, len(label_names),
                         is_training)                        # [B, T, L]
  probabilities = tf.nn.softmax(logits, axis=-1)
  pred_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)

  def loss_fn(label_ids):
    loss, per_position, weights = masked_token_loss(logits, label_ids)
    return loss, per_position, weights

  return _Head({schema.OUTPUT_LABEL_IDS: pred_ids,
                schema.OUTPUT_SCORES: tf.reduce_max(probabilities, -1)},
               loss_fn, logits, tf.nn.log_softmax(logits, axis=-1))


def _crf_head(sequence_output, starts, label_names, head, is_training):
  """Dense (+ BiLSTM) and a CRF over the first piece of each word."""
  num_labels = len(label_names)
  max_time = tf.shape(sequence_output)[1]
  words, lengths, indices = crf_lib.gather_word_positions(sequence_output,
                                                          starts)
  if head.kind == "bilstm_crf":
    words = _bilstm(words, lengths, head, is_training)
    if is_training and head.dropout:
      words = tf.nn.dropout(words, rate=head.dropout)
  potentials = _dense_logits(words, num_labels, is_training)     # [B, W, L]
  with tf1.variable_scope("crf"):
    transitions = tf1.get_variable(
        "transitions", [num_labels, num_labels],
        initializer=tf1.zeros_initializer())
    start = tf1.get_variable("start_transitions", [num_labels],
                             initializer=tf1.zeros_initializer())
    end = tf1.get_variable("end_transitions", [num_labels],
                           initializer=tf1.zeros_initializer())
  allowed = allowed_start = allowed_end = None
  if head.crf_constrain_bio:
    allowed, allowed_start = crf_lib.bio_allowed_transitions(label_names)
    allowed_end = crf_lib.bio_allowed_end(label_names)
  word_tags, _ = crf_lib.crf_viterbi_decode(
      potentials, lengths, transitions, start, end,
      allowed_transitions=allowed, allowed_start=allowed_start,
      allowed_end=allowed_end)                                   # [B, W]
  marginals = crf_lib.crf_marginals(potentials, lengths, transitions, start,
                                    end)                         # [B, W, L]
  word_scores = tf.reduce_sum(
      marginals * tf.one_hot(word_tags, num_labels), axis=-1)    # [B, W]
  pred_ids = crf_lib.scatter_to_positions(word_tags, indices, max_time, 0)
  scores = crf_lib.scatter_to_positions(word_scores, indices, max_time, 0.0)

  def loss_fn(label_ids):
    gold, _, _ = crf_lib.gather_word_positions(label_ids, starts)
    # Windows without tags (-1 on every word) get length 0: no gold loss.
    gold_lengths = lengths * tf.cast(tf.reduce_all(gold >= 0, 1), tf.int32)
    log_likelihood = crf_lib.crf_log_likelihood(
        potentials, gold, gold_lengths, transitions, start, end)  # [B]
    words_per_row = tf.cast(gold_lengths, tf.float32)
    loss = -tf.reduce_sum(log_likelihood) / tf.maximum(
        tf.reduce_sum(words_per_row), 1.0)
    # Per-row negative log-likelihood per word, weighted by words, so the
    # eval mean is the corpus NLL per word whatever the batching.
    return (loss, -log_likelihood / tf.maximum(words_per_row, 1.0),
            words_per_row)

  log_marginals = tf.maximum(tf.math.log(tf.maximum(  # never log 0 = -inf
      marginals, np.finfo(np.float32).tiny)), LOG_PROBABILITY_FLOOR)
  return _Head({schema.OUTPUT_LABEL_IDS: pred_ids,
                schema.OUTPUT_SCORES: scores}, loss_fn,
               crf_lib.scatter_to_positions(potentials, indices, max_time, 0.0),
               crf_lib.scatter_to_positions(log_marginals, indices, max_time,
                                            0.0))


def build_head(bert_config, label_names, features, is_training=False,
               head=None, use_one_hot_embeddings=False):
  """BERT + task head on a feature dict: the one definition of predictions.

  Used by the Estimator `model_fn` and by every exported signature, so
  training-time prediction and serving cannot drift apart.

  Args:
    bert_config: `modeling.BertConfig`.
    label_names: list of str, index = label id.
    features: dict with int32 [B, T] `input_ids`, `input_mask`,
      `segment_ids`, and optionally `word_positions`.
    is_training: enables dropout.
    head: `HeadConfig` (default: softmax on the last layer).

  Returns:
    `_Head` with `outputs` {tags: string [B, T], label_ids: int32 [B, T],
    scores: float32 [B, T]} and `loss_fn(label_ids) -> (loss [], values,
    weights)` (the last two for the batching-invariant `token_loss` metric),
    `emissions` and `log_distribution` float32 [B, T, L] (see `_Head`).
    With a CRF head only first word-piece positions carry a predicted tag;
    other positions get label id 0 and score 0.
  """
  head = _checked(head)
  layers = encoder_layers(bert_config, is_training, features,
                          head.bert_layers, use_one_hot_embeddings)
  return _task_head(layers, features, label_names, head, is_training)


def build_head_on_cached_features(bert_config, label_names, features,
                                  is_training=False, head=None):
  """The task head on encoder layers computed earlier (cached training).

  The head only ever reads first word-pieces (the softmax loss masks the
  other positions, CRF heads gather word starts), so a window arrives as the
  compact sequence of its words: `input_mask` 1 and `word_positions` 0..n-1
  on its words. The loss equals that of `build_head` on the window with
  BERT's dropout off. BERT's variables are created (never run), so the
  checkpoint restore and the saved checkpoints are those of `build_head`.

  Args:
    bert_config: `modeling.BertConfig`.
    label_names: list of str, index = label id.
    features: `schema.ENCODER_FEATURES` float16 or float32 [B, W, n, H] with
      a static n (the stored layers: len(head.bert_layers), or 1 when
      `layer_combination` is "mean", stored already averaged), int32
      [B, W] `input_mask` and `word_positions` (0 and -1 on padding).
    is_training: enables the head's dropout.
    head: `HeadConfig` the cache was built for.

  Returns:
    `_Head`, as `build_head`, over the W word positions.
  """
  head = _checked(head)
  create_bert_variables(bert_config)
  stacked = tf.cast(features[schema.ENCODER_FEATURES], tf.float32)
  layers = tf.unstack(stacked, axis=2)                     # n x [B, W, H]
  return _task_head(layers, features, label_names, head, is_training)


def _checked(head):
  head = head or HeadConfig()
  if head.kind not in schema.HEADS:
    raise ValueError(f"Unknown head {head.kind!r}; allowed: "
                     f"{', '.join(schema.HEADS)}.")
  return head


def _task_head(layers, features, label_names, head, is_training):
  """Combination, dropout and the head of `head.kind` on encoder layers."""
  with tf1.variable_scope(HEAD_SCOPE):
    sequence_output = combine_layers(layers, head.layer_combination)
    if is_training and head.dropout:
      sequence_output = tf.nn.dropout(sequence_output, rate=head.dropout)
    if head.uses_crf:
      built = _crf_head(sequence_output,
                        word_start_mask(features, head.continuation_ids),
                        label_names, head, is_training)
    else:
      built = _softmax_head(sequence_output, label_names, is_training)
  built.outputs[schema.OUTPUT_TAGS] = tf.gather(
      tf.constant(list(label_names)), built.outputs[schema.OUTPUT_LABEL_IDS])
  return built


def build_outputs(bert_config, label_names, features, is_training=False,
                  head=None):
  """Predictions only: {tags, label_ids, scores}, see `build_head`."""
  return build_head(bert_config, label_names, features, is_training,
                    head).outputs


def masked_token_loss(logits, label_ids):
  """Mean cross-entropy over labelled positions.

  Args:
    logits: float32 [B, T, L].
    label_ids: int32 [B, T], `schema.PAD_LABEL_ID` where unlabelled.

  Returns:
    (loss float32 [], per_position float32 [B, T] (0 where unlabelled),
     weights float32 [B, T] (1 where labelled)).
  """
  weights = tf.cast(tf.not_equal(label_ids, schema.PAD_LABEL_ID), tf.float32)
  safe_labels = tf.maximum(label_ids, 0)
  per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=safe_labels, logits=logits) * weights
  loss = tf.reduce_sum(per_position) / tf.maximum(tf.reduce_sum(weights), 1.0)
  return loss, per_position, weights
