"""Entity-level NER metrics (seqeval, conlleval-compatible) and their report.

Pure Python: never imports TensorFlow. During eval, `EntityMetricAccumulator`
collects the windows' gold and predicted label ids (through `py_func`s built in
`trainer.training.model_fn`), merges windows back into sentences, maps ids back
to tag strings and calls `entity_metrics`.
"""

from typing import Any, Sequence

import numpy as np
from seqeval.metrics import sequence_labeling

from trainer.features import windows as features_lib
from trainer import schema
from trainer.data import tag_schemes

OVERALL_KEYS = ("precision", "recall", "f1", "token_accuracy",
                "num_sentences", "num_tokens")
PER_TYPE_KEYS = ("precision", "recall", "f1", "support")


def entity_metrics(gold_tag_seqs: Sequence[Sequence[str]],
                   pred_tag_seqs: Sequence[Sequence[str]]) -> dict[str, Any]:
  """Scores predicted tags against gold tags.

  Entities are exact (type, start, end) matches, as in conlleval; seqeval's
  default mode is used, after mapping BMES 'M-' to 'I-'. A precision or recall
  with a zero denominator is 0.0.

  Example:
    gold [['B-PER', 'I-PER', 'O', 'B-LOC']], pred [['B-PER', 'I-PER', 'O', 'O']]
        -> {'precision': 1.0, 'recall': 0.5, 'f1': 0.6667 (2/3),
            'token_accuracy': 0.75, 'num_sentences': 1, 'num_tokens': 4,
            'per_type': {'LOC': {'precision': 0.0, 'recall': 0.0, 'f1': 0.0,
                                 'support': 1},
                         'PER': {'precision': 1.0, 'recall': 1.0, 'f1': 1.0,
                                 'support': 1}}}

  Args:
    gold_tag_seqs: gold tags, one list per sentence.
    pred_tag_seqs: predicted tags, same shape.

  Returns:
    A dict with the keys of `OVERALL_KEYS` (floats; counts as ints) and
    'per_type': {TYPE: {'precision', 'recall', 'f1', 'support'}} for every
    type in gold or predictions (support = gold entities of that type).

  Raises:
    ValueError: if the sentence counts or any sentence's lengths differ, or
      there are no tokens.
  """
  if len(gold_tag_seqs) != len(pred_tag_seqs):
    raise ValueError(f"Got {len(gold_tag_seqs)} gold sentences but "
                     f"{len(pred_tag_seqs)} predicted; they must be equal.")
  for index, (gold, pred) in enumerate(zip(gold_tag_seqs, pred_tag_seqs)):
    if len(gold) != len(pred):
      raise ValueError(f"Sentence {index} has {len(gold)} gold tags but "
                       f"{len(pred)} predicted; they must be equal.")
  gold = tag_schemes.normalize_tag_sequences(gold_tag_seqs)
  pred = tag_schemes.normalize_tag_sequences(pred_tag_seqs)
  num_tokens = sum(len(tags) for tags in gold)
  if num_tokens == 0:
    raise ValueError("Cannot compute metrics: there are no tokens to score.")
  correct_tokens = sum(g == p for gold_tags, pred_tags in zip(gold, pred)
                       for g, p in zip(gold_tags, pred_tags))
  precision, recall, f1, _ = sequence_labeling.precision_recall_fscore_support(
      gold, pred, average="micro", zero_division=0)
  return {
      "precision": float(precision),
      "recall": float(recall),
      "f1": float(f1),
      "token_accuracy": correct_tokens / num_tokens,
      "num_sentences": len(gold),
      "num_tokens": num_tokens,
      "per_type": _per_type_scores(gold, pred),
  }


def _per_type_scores(gold: list[list[str]],
                     pred: list[list[str]]) -> dict[str, dict[str, Any]]:
  """{TYPE: precision, recall, f1, support} over normalized tag sequences."""
  # Same span extraction as seqeval, so these types line up with its arrays
  # (it orders types with sorted()).
  entity_types = sorted({
      entity_type for tags in gold + pred
      for entity_type, _, _ in tag_schemes.get_entities(tags)})
  if not entity_types:  # seqeval warns on averages over zero types
    return {}
  type_scores = sequence_labeling.precision_recall_fscore_support(
      gold, pred, average=None, zero_division=0)
  return {entity_type: {"precision": float(type_scores[0][index]),
                        "recall": float(type_scores[1][index]),
                        "f1": float(type_scores[2][index]),
                        "support": int(type_scores[3][index])}
          for index, entity_type in enumerate(entity_types)}


def _format_value(value: Any) -> str:
  return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_report(metrics: dict[str, Any]) -> str:
  """Formats `entity_metrics` output for eval_results.txt.

  One greppable `key = value` line per number (per-type keys are
  `TYPE_precision` etc.), then the same per-type numbers as a table whose
  lines start with '#', so a `key = value` parser can skip them.

  Example:
    precision = 1.0000
    ...
    num_tokens = 4
    LOC_precision = 0.0000
    ...
    PER_support = 1
    # type     precision   recall       f1  support
    # LOC         0.0000   0.0000   0.0000        1
    # PER         1.0000   1.0000   1.0000        1
    # overall     1.0000   0.5000   0.6667        2
  """
  lines = [f"{key} = {_format_value(metrics[key])}" for key in OVERALL_KEYS]
  per_type = metrics.get("per_type", {})
  for entity_type, scores in per_type.items():
    lines.extend(f"{entity_type}_{key} = {_format_value(scores[key])}"
                 for key in PER_TYPE_KEYS)
  width = max([len("overall")] + [len(t) for t in per_type])
  lines.append(f"# {'type':<{width}} {'precision':>10} {'recall':>8} "
               f"{'f1':>8} {'support':>8}")
  for entity_type, scores in per_type.items():
    lines.append(f"# {entity_type:<{width}} {scores['precision']:>10.4f} "
                 f"{scores['recall']:>8.4f} {scores['f1']:>8.4f} "
                 f"{scores['support']:>8d}")
  lines.append(f"# {'overall':<{width}} {metrics['precision']:>10.4f} "
               f"{metrics['recall']:>8.4f} {metrics['f1']:>8.4f} "
               f"{sum(s['support'] for s in per_type.values()):>8d}")
  return "\n".join(lines) + "\n"


class EntityMetricAccumulator:
  """Collects eval windows and scores whole sentences with seqeval.

  Windows are merged with `features.merge_window_outputs` (each word scored
  in the window where it has most context), exactly as at prediction time, so
  eval metrics equal the metrics of `--do_predict` output. Its methods are
  the bodies of the eval metric `py_func`s, hence the numpy return types.

  Example (labels ["O", "B-PER"], one sentence of two words in one window)::

    accumulator.update(example_index=[0], word_positions=[[-1, 0, 1, -1]],
                       score_mask=[[0, 1, 1, 0]], gold_ids=[[-1, 1, 0, -1]],
                       pred_ids=[[0, 1, 1, 0]])
    accumulator.value("precision") -> 0.5   (gold B-PER O, pred B-PER B-PER)
    accumulator.value("PER_recall") -> 1.0
  """

  def __init__(self, label_names: Sequence[str]):
    self._label_names = list(label_names)
    self._windows = []
    self._result = None

  def update(self, example_index, word_positions, score_mask, gold_ids,
             pred_ids) -> np.int32:
    """Adds one batch (int arrays [B] and [B, T]); returns 0 (for py_func).

    Windows with a negative example index (padding windows of fixed-size TPU
    batches) are skipped.
    """
    for i in range(len(example_index)):
      if example_index[i] < 0:
        continue
      self._windows.append({
          schema.EXAMPLE_INDEX: int(example_index[i]),
          schema.WORD_POSITIONS: np.asarray(word_positions[i]).tolist(),
          schema.SCORE_MASK: np.asarray(score_mask[i]).tolist(),
          "gold": np.asarray(gold_ids[i]).tolist(),
          "pred": np.asarray(pred_ids[i]).tolist(),
      })
    self._result = None
    return np.int32(0)

  def result(self) -> dict[str, Any]:
    """Dict of metrics from `entity_metrics` over every window added."""
    if self._result is None:
      num_words = {}
      for window in self._windows:
        example = window[schema.EXAMPLE_INDEX]
        scored = [w for w, s in zip(window[schema.WORD_POSITIONS],
                                    window[schema.SCORE_MASK]) if s]
        num_words[example] = max([num_words.get(example, 0)]
                                 + [w + 1 for w in scored])
      # Renumber examples densely: eval may run on a subset of steps.
      order = sorted(num_words)
      dense = {example: i for i, example in enumerate(order)}
      windows = [dict(w, **{schema.EXAMPLE_INDEX:
                            dense[w[schema.EXAMPLE_INDEX]]})
                 for w in self._windows]
      merged = features_lib.merge_window_outputs(
          windows, [num_words[e] for e in order])
      gold = [[self._label_names[i] for i in m["gold"]] for m in merged]
      pred = [[self._label_names[i] for i in m["pred"]] for m in merged]
      self._result = entity_metrics(gold, pred)
    return self._result

  def value(self, name: str) -> np.float32:
    """float32 metric value: "precision", "f1", or "<TYPE>_f1" etc.

    A type that occurs in neither gold nor predictions scores 0.
    """
    result = self.result()
    if name in result:
      return np.float32(result[name])
    entity_type, key = name.rsplit("_", 1)
    return np.float32(result["per_type"].get(entity_type, {}).get(key, 0.0))
