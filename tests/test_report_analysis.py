"""Tests for trainer.report.analysis: exact outcomes on hand-made sentences."""


import pytest

from tests.import_checks import assert_imports_without_tensorflow
from trainer.evaluation import metrics
from trainer.report import analysis as ra
from trainer.report.analysis import Outcome
from trainer.report.analysis import Span
@pytest.mark.parametrize("gold, pred, expected", [
    # Each outcome on its own.
    (["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"],
     [Outcome(ra.CORRECT, Span("PER", 0, 2), Span("PER", 0, 2))]),
    (["B-PER", "I-PER"], ["B-LOC", "I-LOC"],
     [Outcome(ra.WRONG_TYPE, Span("PER", 0, 2), Span("LOC", 0, 2))]),
    (["B-PER", "I-PER", "I-PER"], ["B-PER", "I-PER", "O"],
     [Outcome(ra.WRONG_BOUNDARY, Span("PER", 0, 3), Span("PER", 0, 2))]),
    (["B-LOC", "I-LOC", "I-LOC"], ["O", "B-ORG", "I-ORG"],
     [Outcome(ra.WRONG_TYPE_AND_BOUNDARY, Span("LOC", 0, 3),
              Span("ORG", 1, 3))]),
    (["B-ORG"], ["O"], [Outcome(ra.MISSED, Span("ORG", 0, 1), None)]),
    (["O"], ["B-MISC"], [Outcome(ra.SPURIOUS, None, Span("MISC", 0, 1))]),
    # A same-type overlap wins over a larger other-type overlap.
    (["B-PER", "I-PER", "I-PER", "I-PER"], ["B-PER", "B-LOC", "I-LOC", "I-LOC"],
     [Outcome(ra.WRONG_BOUNDARY, Span("PER", 0, 4), Span("PER", 0, 1))]),
    # Among other types, the largest overlap is the match.
    (["B-PER", "I-PER", "I-PER", "I-PER"], ["B-LOC", "B-ORG", "I-ORG", "I-ORG"],
     [Outcome(ra.WRONG_TYPE_AND_BOUNDARY, Span("PER", 0, 4),
              Span("ORG", 1, 4))]),
    # One prediction over two gold entities: both matched to it, no spurious.
    (["B-PER", "B-LOC"], ["B-ORG", "I-ORG"],
     [Outcome(ra.WRONG_TYPE_AND_BOUNDARY, Span("PER", 0, 1), Span("ORG", 0, 2)),
      Outcome(ra.WRONG_TYPE_AND_BOUNDARY, Span("LOC", 1, 2),
              Span("ORG", 0, 2))]),
    # BIOES spans come from the same span function as the metrics.
    (["S-PER", "B-LOC", "E-LOC"], ["S-PER", "S-LOC", "O"],
     [Outcome(ra.CORRECT, Span("PER", 0, 1), Span("PER", 0, 1)),
      Outcome(ra.WRONG_BOUNDARY, Span("LOC", 1, 3), Span("LOC", 1, 2))]),
    # The module docstring's example, ordered by position.
    (["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"],
     ["B-PER", "O", "B-ORG", "B-ORG", "I-ORG", "O"],
     [Outcome(ra.WRONG_BOUNDARY, Span("PER", 0, 2), Span("PER", 0, 1)),
      Outcome(ra.SPURIOUS, None, Span("ORG", 2, 3)),
      Outcome(ra.WRONG_TYPE_AND_BOUNDARY, Span("LOC", 3, 6),
              Span("ORG", 3, 5))]),
])
def test_classify_entities(gold, pred, expected):
  assert ra.classify_entities(gold, pred) == expected


def test_classify_entities_rejects_length_mismatch():
  with pytest.raises(ValueError, match="2 gold tags but 1 predicted"):
    ra.classify_entities(["O", "O"], ["O"])


def _sentence(index, rows):
  tokens, gold, pred = zip(*(row.split() for row in rows))
  return ra.LabelledSentence(tokens, gold, pred, index, 1 + 4 * index)


SENTENCES = [
    # 1 correct PER, 1 wrong-type LOC->ORG.
    _sentence(0, ["John B-PER B-PER", "in O O", "Paris B-LOC B-ORG"]),
    # 1 missed ORG, 1 spurious LOC, 1 wrong-boundary PER.
    _sentence(1, ["UN B-ORG O", "met O B-LOC", "Mary B-PER B-PER",
                  "Smith I-PER O"]),
    # All correct: listed nowhere.
    _sentence(2, ["Rome B-LOC B-LOC", ". O O"]),
]


def test_analyze_counts_outcomes_per_type_and_confusion():
  analysis = ra.analyze(SENTENCES)
  assert analysis.entity_types == ["LOC", "ORG", "PER"]
  zero = dict.fromkeys(ra.OUTCOMES, 0)
  assert analysis.outcome_counts == {
      "LOC": dict(zero, correct=1, wrong_type=1, spurious=1),
      "ORG": dict(zero, missed=1),
      "PER": dict(zero, correct=1, wrong_boundary=1),
  }
  assert analysis.predicted_counts == {"LOC": 2, "ORG": 1, "PER": 2}
  assert analysis.confusion == {
      "LOC": {"LOC": 1, "ORG": 1, "PER": 0, "": 0},
      "ORG": {"LOC": 0, "ORG": 0, "PER": 0, "": 1},
      "PER": {"LOC": 0, "ORG": 0, "PER": 2, "": 0},
      "": {"LOC": 1, "ORG": 0, "PER": 0, "": 0},
  }
  assert analysis.total(ra.CORRECT) == 2
  assert analysis.total(ra.SPURIOUS) == 1
  # Worst first (3 errors, then 1); the error-free sentence is left out.
  assert [item.sentence.index for item in analysis.sentences] == [1, 0]
  assert [o.kind for o in analysis.sentences[0].errors] == [
      ra.MISSED, ra.SPURIOUS, ra.WRONG_BOUNDARY]
  assert analysis.metrics == metrics.entity_metrics(
      [s.gold_tags for s in SENTENCES], [s.pred_tags for s in SENTENCES])


def test_outcomes_agree_with_entity_metrics():
  # correct == true positives; a type's gold outcomes sum to its support.
  analysis = ra.analyze(SENTENCES)
  for entity_type, scores in analysis.metrics["per_type"].items():
    counts = analysis.outcome_counts[entity_type]
    assert sum(counts[o] for o in ra.OUTCOMES if o != ra.SPURIOUS) == (
        scores["support"])
    predicted = analysis.predicted_counts[entity_type]
    assert scores["precision"] == pytest.approx(counts[ra.CORRECT] / predicted)
  assert analysis.metrics["recall"] == pytest.approx(2 / 5)
  assert analysis.metrics["precision"] == pytest.approx(2 / 5)


def test_read_prediction_conll():
  lines = ["John B-PER B-PER\n", "runs O O\n", "\n", "\n",
           "New York B-LOC I-LOC\n"]
  assert ra.read_prediction_conll(lines, "p.conll") == [
      ra.LabelledSentence(("John", "runs"), ("B-PER", "O"), ("B-PER", "O"),
                          0, 1),
      # The last two columns are the tags: a token may hold a space.
      ra.LabelledSentence(("New York",), ("B-LOC",), ("I-LOC",), 1, 5),
  ]


def test_read_prediction_conll_unlabelled_and_malformed():
  assert ra.read_prediction_conll(["John B-PER\n", "\n"]) is None
  with pytest.raises(ValueError, match=r"p\.conll:2: expected 3 columns .* "
                                       r"got 'runs O'"):
    ra.read_prediction_conll(["John B-PER B-PER\n", "runs O\n"], "p.conll")
  with pytest.raises(ValueError, match=r"p\.conll:1: expected 2 columns"):
    ra.read_prediction_conll(["John\n"], "p.conll")


def test_read_key_values_and_eval_results_metrics():
  values = ra.read_key_values([
      "entity_LOC_f1 = 0.5\n", "entity_LOC_precision = 0.25\n",
      "entity_LOC_recall = 1.0\n", "entity_f1 = 0.75\n",
      "entity_precision = 0.6\n", "entity_recall = 1\n",
      "global_step = 30\n", "# a comment = 3\n", "note = ok\n"])
  assert values == {"entity_LOC_f1": 0.5, "entity_LOC_precision": 0.25,
                    "entity_LOC_recall": 1.0, "entity_f1": 0.75,
                    "entity_precision": 0.6, "entity_recall": 1,
                    "global_step": 30, "note": "ok"}
  assert ra.metrics_from_eval_results(values) == {
      "precision": 0.6, "recall": 1, "f1": 0.75,
      "per_type": {"LOC": {"precision": 0.25, "recall": 1.0, "f1": 0.5,
                           "support": None}}}


def test_report_modules_do_not_import_tensorflow():
  assert_imports_without_tensorflow(
      "trainer.report.writer, trainer.report.analysis, trainer.report.page, "
      "trainer.report.plots, trainer.report.curves, trainer.report.assets")
