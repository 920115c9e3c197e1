"""Entity error analysis for the evaluation report (pure Python).

Every gold entity gets exactly one outcome, decided by the predicted entities
that overlap it (spans come from `tag_schemes.get_entities`, the one span
function, so the counts agree with `metrics.entity_metrics`):

  ``correct``                  a prediction with the same span and type;
  ``wrong_type``               a prediction with the same span, another type;
  ``wrong_boundary``           an overlapping prediction of the same type
                               (a different span);
  ``wrong_type_and_boundary``  only overlapping predictions of other types;
  ``missed``                   no overlapping prediction.

A predicted entity that overlaps no gold entity is ``spurious``. Predictions
that overlap a gold entity are accounted for by that gold entity's outcome, so
``correct`` equals seqeval's true positives and the outcomes of one type sum
to its support.

Example (tokens "John Smith visited New York City"):
  gold B-PER I-PER O     B-LOC I-LOC I-LOC
  pred B-PER O     B-ORG B-ORG I-ORG O
  -> PER[0,2) wrong_boundary (pred PER[0,1)), LOC[3,6) wrong_type_and_boundary
     (pred ORG[3,5)), ORG[2,3) spurious. Confusion: PER->PER, LOC->ORG,
     none->ORG.

Pure Python: never imports TensorFlow.
"""

import dataclasses
from typing import Any, Iterable, Optional, Sequence

from trainer.evaluation import metrics as metrics_lib
from trainer.data import tag_schemes

CORRECT = "correct"
WRONG_TYPE = "wrong_type"
WRONG_BOUNDARY = "wrong_boundary"
WRONG_TYPE_AND_BOUNDARY = "wrong_type_and_boundary"
MISSED = "missed"
SPURIOUS = "spurious"
# Every outcome, in the order the report shows them.
OUTCOMES = (CORRECT, WRONG_TYPE, WRONG_BOUNDARY, WRONG_TYPE_AND_BOUNDARY,
            MISSED, SPURIOUS)
ERROR_KINDS = OUTCOMES[1:]
OUTCOME_TITLES = {
    CORRECT: "correct",
    WRONG_TYPE: "wrong type",
    WRONG_BOUNDARY: "wrong boundary",
    WRONG_TYPE_AND_BOUNDARY: "wrong type and boundary",
    MISSED: "missed",
    SPURIOUS: "spurious",
}
# Row/column of the confusion table for "no entity" (missed or spurious).
NO_ENTITY = ""


@dataclasses.dataclass(frozen=True)
class Span:
  """One entity: type and token range [start, end)."""
  entity_type: str
  start: int
  end: int

  def overlap(self, other: "Span") -> int:
    """Tokens shared with `other` (0 when disjoint)."""
    return max(0, min(self.end, other.end) - max(self.start, other.start))


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What happened to one gold entity, or one spurious prediction.

  Attributes:
    kind: one of `OUTCOMES`.
    gold: the gold entity; None for `SPURIOUS`.
    pred: the prediction it was matched with; None for `MISSED`.
  """
  kind: str
  gold: Optional[Span]
  pred: Optional[Span]

  @property
  def entity_type(self) -> str:
    """The type the outcome is counted under: gold's, or pred's if spurious."""
    return self.gold.entity_type if self.gold else self.pred.entity_type


@dataclasses.dataclass(frozen=True)
class LabelledSentence:
  """Tokens with gold and predicted tags (one prediction-file sentence).

  Attributes:
    index: 0-based position of the sentence in its file.
    line: 1-based line number of its first token.
  """
  tokens: tuple[str, ...]
  gold_tags: tuple[str, ...]
  pred_tags: tuple[str, ...]
  index: int = 0
  line: int = 1


def spans_of(tags: Sequence[str]) -> list[Span]:
  """`Span`s of one tag sequence (`tag_schemes.get_entities`)."""
  return [Span(*entity) for entity in tag_schemes.get_entities(tags)]


def _match_gold(gold: Span, preds: Sequence[Span]) -> Outcome:
  """The outcome of one gold entity against one sentence's predictions."""
  overlapping = [pred for pred in preds if gold.overlap(pred)]
  for pred in overlapping:
    if (pred.start, pred.end) == (gold.start, gold.end):
      kind = CORRECT if pred.entity_type == gold.entity_type else WRONG_TYPE
      return Outcome(kind, gold, pred)
  same_type = [p for p in overlapping if p.entity_type == gold.entity_type]
  if same_type or overlapping:
    # Largest overlap first, then the earliest (max keeps the first of ties).
    best = max(same_type or overlapping, key=gold.overlap)
    return Outcome(WRONG_BOUNDARY if same_type else WRONG_TYPE_AND_BOUNDARY,
                   gold, best)
  return Outcome(MISSED, gold, None)


def classify_entities(gold_tags: Sequence[str],
                      pred_tags: Sequence[str]) -> list[Outcome]:
  """Outcomes of one sentence, ordered by position (see module docstring).

  Example:
    gold ['B-PER', 'I-PER', 'O', 'B-LOC'], pred ['B-LOC', 'I-LOC', 'O', 'O']
        -> [Outcome('wrong_type', Span('PER', 0, 2), Span('LOC', 0, 2)),
            Outcome('missed', Span('LOC', 3, 4), None)]

  Raises:
    ValueError: if the two sequences differ in length.
  """
  if len(gold_tags) != len(pred_tags):
    raise ValueError(f"Got {len(gold_tags)} gold tags but {len(pred_tags)} "
                     f"predicted; they must be equal.")
  golds, preds = spans_of(gold_tags), spans_of(pred_tags)
  outcomes = [_match_gold(gold, preds) for gold in golds]
  outcomes += [Outcome(SPURIOUS, None, pred) for pred in preds
               if not any(pred.overlap(gold) for gold in golds)]
  return sorted(outcomes, key=lambda o: ((o.gold or o.pred).start,
                                         o.gold is None))


@dataclasses.dataclass(frozen=True)
class SentenceErrors:
  """One sentence with its outcomes; `errors` excludes correct ones."""
  sentence: LabelledSentence
  outcomes: tuple[Outcome, ...]

  @property
  def errors(self) -> tuple[Outcome, ...]:
    return tuple(o for o in self.outcomes if o.kind != CORRECT)


@dataclasses.dataclass
class Analysis:
  """Everything the report shows about one labelled prediction set.

  Attributes:
    metrics: `metrics.entity_metrics` of the whole set.
    entity_types: every type in gold or predictions, sorted.
    outcome_counts: {type: {outcome: count}}, every outcome of `OUTCOMES`.
    predicted_counts: {type: predicted entities}.
    confusion: {gold type or NO_ENTITY: {predicted type or NO_ENTITY: count}};
      a gold entity's column is the type of the prediction it was matched
      with (`Outcome.pred`), NO_ENTITY when missed; spurious predictions
      count in row NO_ENTITY.
    sentences: sentences with at least one error, worst first (most errors,
      then file order).
  """
  metrics: dict[str, Any]
  entity_types: list[str]
  outcome_counts: dict[str, dict[str, int]]
  predicted_counts: dict[str, int]
  confusion: dict[str, dict[str, int]]
  sentences: list[SentenceErrors]

  def total(self, outcome: str) -> int:
    """Count of `outcome` over every type."""
    return sum(counts[outcome] for counts in self.outcome_counts.values())


def analyze(sentences: Sequence[LabelledSentence]) -> Analysis:
  """Metrics, outcome counts, confusion and error sentences of a set.

  Raises:
    ValueError: from `metrics.entity_metrics` (no tokens, length mismatch).
  """
  metrics = metrics_lib.entity_metrics([s.gold_tags for s in sentences],
                                       [s.pred_tags for s in sentences])
  per_sentence = [SentenceErrors(s, tuple(classify_entities(s.gold_tags,
                                                            s.pred_tags)))
                  for s in sentences]
  outcomes = [o for item in per_sentence for o in item.outcomes]
  entity_types = sorted({o.entity_type for o in outcomes}
                        | {o.pred.entity_type for o in outcomes if o.pred})
  outcome_counts = {t: dict.fromkeys(OUTCOMES, 0) for t in entity_types}
  confusion = {row: dict.fromkeys(entity_types + [NO_ENTITY], 0)
               for row in entity_types + [NO_ENTITY]}
  for outcome in outcomes:
    outcome_counts[outcome.entity_type][outcome.kind] += 1
    row = outcome.gold.entity_type if outcome.gold else NO_ENTITY
    column = outcome.pred.entity_type if outcome.pred else NO_ENTITY
    confusion[row][column] += 1
  predicted_counts = dict.fromkeys(entity_types, 0)
  for sentence in sentences:
    for span in spans_of(sentence.pred_tags):
      predicted_counts[span.entity_type] += 1
  with_errors = [item for item in per_sentence if item.errors]
  with_errors.sort(key=lambda item: -len(item.errors))  # stable: file order
  return Analysis(metrics, entity_types, outcome_counts, predicted_counts,
                  confusion, with_errors)


def read_prediction_conll(lines: Iterable[str], source: str = ""
                          ) -> Optional[list[LabelledSentence]]:
  """Parses `predictions.conll` lines: ``token gold predicted``.

  A blank line ends a sentence. Tokens may contain spaces (the last two
  columns are the tags). A file of unlabelled predictions (``token
  predicted``) has no gold tags to analyse: None is returned.

  Example:
    ["John B-PER B-PER\\n", "runs O O\\n", "\\n"]
        -> [LabelledSentence(('John', 'runs'), ('B-PER', 'O'),
                             ('B-PER', 'O'), index=0, line=1)]

  Raises:
    ValueError: naming `source`:line when a line has another column count
      than the first one, or a single column.
  """
  sentences, rows, first_line, width = [], [], 1, None
  def flush():
    if rows:
      tokens, gold, pred = zip(*rows)
      sentences.append(LabelledSentence(tokens, gold, pred, len(sentences),
                                        first_line))
      rows.clear()
  for number, line in enumerate(lines, start=1):
    columns = line.rstrip("\r\n").rsplit(None, 2)
    if not columns:
      flush()
      continue
    if width is None:
      width = len(columns)
    if len(columns) != width or width < 2:
      raise ValueError(
          f"{source}:{number}: expected {max(width, 2)} columns (token gold "
          f"predicted, or token predicted) but got {line.strip()!r}.")
    if width == 2:
      return None
    if not rows:
      first_line = number
    rows.append(tuple(columns))
  flush()
  return sentences


def read_key_values(lines: Iterable[str]) -> dict[str, Any]:
  """Parses ``key = value`` lines (eval_results.txt); '#' lines are skipped.

  Values that parse as int or float become numbers, others stay strings.

  Example: ["f1 = 0.5\\n", "# table\\n", "num_tokens = 4\\n"]
      -> {'f1': 0.5, 'num_tokens': 4}
  """
  values = {}
  for line in lines:
    key, separator, value = line.partition("=")
    if not separator or line.lstrip().startswith("#"):
      continue
    value = value.strip()
    for convert in (int, float):
      try:
        value = convert(value)
        break
      except ValueError:
        pass
    values[key.strip()] = value
  return values


def metrics_from_eval_results(values: dict[str, Any]) -> dict[str, Any]:
  """`entity_metrics`-shaped dict from eval_results.txt keys.

  The estimator writes ``entity_precision`` and ``entity_TYPE_f1``; support
  is not recorded, so it is None.

  Example:
    {'entity_f1': 0.5, 'entity_precision': 0.4, 'entity_recall': 0.6,
     'entity_PER_f1': 0.5, ...}
        -> {'precision': 0.4, 'recall': 0.6, 'f1': 0.5,
            'per_type': {'PER': {'f1': 0.5, ..., 'support': None}}}
  """
  result = {key: values[f"entity_{key}"] for key in ("precision", "recall",
                                                     "f1")
            if f"entity_{key}" in values}
  per_type = {}
  for key, value in values.items():
    name, _, metric = key.rpartition("_")
    if (name.startswith("entity_") and metric in ("precision", "recall", "f1")
        and isinstance(value, (int, float))):
      per_type.setdefault(name[len("entity_"):], {"support": None})[metric] = (
          float(value))
  result["per_type"] = dict(sorted(per_type.items()))
  return result
