"""Tests for trainer.evaluation.metrics."""

import os
import subprocess
import sys

import numpy as np
import pytest

from trainer.evaluation import metrics

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "testdata")


def _read_gold_pred(path):
  """Reads conlleval input: 'TOKEN GOLD PRED' lines, blank between sentences."""
  gold, pred = [[]], [[]]
  with open(path, encoding="utf-8") as file:
    for line in file:
      columns = line.split()
      if not columns:
        gold.append([])
        pred.append([])
        continue
      gold[-1].append(columns[1])
      pred[-1].append(columns[2])
  return ([tags for tags in gold if tags], [tags for tags in pred if tags])


def test_conlleval_oracle():
  # testdata/conlleval_oracle.txt, worked out by hand as conlleval counts it:
  #   gold entities (7): s1 PER[0,2) LOC[4,6); s2 ORG[0,1) MISC[2,3);
  #                      s3 PER[0,2) LOC[3,4) LOC[5,6)
  #   pred entities (8): s1 PER[0,2) ok, LOC[4,5) LOC[5,6) (boundary error);
  #                      s2 MISC[0,1) (type error), PER[3,4) (spurious),
  #                         gold MISC missed;
  #                      s3 'I-PER I-PER' -> PER[0,2) ok (I- after sentence
  #                         start opens a chunk), 'O I-LOC' -> LOC[3,4) ok,
  #                         LOC[5,6) ok.
  #   correct 4: P = 4/8 = 0.5, R = 4/7, F1 = 2*4/(8+7) = 8/15.
  #   PER: 2 correct of 3 predicted, 2 gold -> P 2/3, R 1, F1 0.8.
  #   LOC: 2 of 4 predicted, 3 gold -> P 0.5, R 2/3, F1 2*2/(4+3) = 4/7.
  #   ORG: 0 of 0, 1 gold; MISC: 0 of 1, 1 gold -> all 0.
  #   Tokens: 18, wrong tags 6 (York, EU, German, call, Peter, Paris) -> 2/3.
  #   conlleval prints: accuracy 66.67%; precision 50.00%; recall 57.14%;
  #   FB1 53.33.
  gold, pred = _read_gold_pred(os.path.join(TESTDATA, "conlleval_oracle.txt"))
  result = metrics.entity_metrics(gold, pred)
  assert result == {
      "precision": pytest.approx(4 / 8),
      "recall": pytest.approx(4 / 7),
      "f1": pytest.approx(8 / 15),
      "token_accuracy": pytest.approx(12 / 18),
      "num_sentences": 3,
      "num_tokens": 18,
      "per_type": {
          "LOC": {"precision": pytest.approx(0.5),
                  "recall": pytest.approx(2 / 3),
                  "f1": pytest.approx(4 / 7), "support": 3},
          "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
          "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
          "PER": {"precision": pytest.approx(2 / 3), "recall": 1.0,
                  "f1": pytest.approx(0.8), "support": 2},
      },
  }
  assert [f"{100 * result[k]:.2f}" for k in ("token_accuracy", "precision",
                                             "recall", "f1")] == [
                                                 "66.67", "50.00", "57.14",
                                                 "53.33"]


@pytest.mark.parametrize("gold, pred, precision, recall, f1, accuracy", [
    ([["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]], 1.0, 1.0, 1.0, 1.0),
    ([["B-PER", "I-PER", "O"]], [["O", "O", "O"]], 0.0, 0.0, 0.0, 1 / 3),
    ([["O", "O"]], [["B-PER", "O"]], 0.0, 0.0, 0.0, 0.5),
    ([["O", "O"]], [["O", "O"]], 0.0, 0.0, 0.0, 1.0),
    # Boundary error: no partial credit.
    ([["B-PER", "I-PER"]], [["B-PER", "O"]], 0.0, 0.0, 0.0, 0.5),
    # IOB1 prediction of an IOB2 gold entity counts as correct.
    ([["O", "B-LOC", "I-LOC"]], [["O", "I-LOC", "I-LOC"]], 1.0, 1.0, 1.0,
     2 / 3),
    # BMES, M- is inside.
    ([["B-LOC", "M-LOC", "E-LOC", "S-PER"]], [["B-LOC", "M-LOC", "E-LOC",
                                               "O"]], 1.0, 0.5, 2 / 3, 0.75),
    # BIOES.
    ([["B-LOC", "E-LOC"], ["S-PER"]], [["B-LOC", "E-LOC"], ["S-LOC"]], 0.5,
     0.5, 0.5, 2 / 3),
])
def test_entity_metrics_table(gold, pred, precision, recall, f1, accuracy):
  result = metrics.entity_metrics(gold, pred)
  assert (result["precision"], result["recall"], result["f1"],
          result["token_accuracy"]) == pytest.approx(
              (precision, recall, f1, accuracy))


def test_entity_metrics_per_type_includes_predicted_only_types():
  result = metrics.entity_metrics([["B-PER", "O"]], [["B-PER", "B-ORG"]])
  assert result["per_type"] == {
      "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
      "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
  }
  assert result["num_sentences"] == 1 and result["num_tokens"] == 2


@pytest.mark.parametrize("gold, pred, message", [
    ([["O"]], [["O"], ["O"]], r"Got 1 gold sentences but 2 predicted"),
    ([["O"], ["O", "O"]], [["O"], ["O"]],
     r"Sentence 1 has 2 gold tags but 1 predicted"),
    ([], [], r"no tokens"),
])
def test_entity_metrics_errors(gold, pred, message):
  with pytest.raises(ValueError, match=message):
    metrics.entity_metrics(gold, pred)


def test_format_report():
  result = metrics.entity_metrics([["B-PER", "I-PER", "O", "B-LOC"]],
                                  [["B-PER", "I-PER", "O", "O"]])
  assert metrics.format_report(result) == (
      "precision = 1.0000\n"
      "recall = 0.5000\n"
      "f1 = 0.6667\n"
      "token_accuracy = 0.7500\n"
      "num_sentences = 1\n"
      "num_tokens = 4\n"
      "LOC_precision = 0.0000\n"
      "LOC_recall = 0.0000\n"
      "LOC_f1 = 0.0000\n"
      "LOC_support = 1\n"
      "PER_precision = 1.0000\n"
      "PER_recall = 1.0000\n"
      "PER_f1 = 1.0000\n"
      "PER_support = 1\n"
      "# type     precision   recall       f1  support\n"
      "# LOC         0.0000   0.0000   0.0000        1\n"
      "# PER         1.0000   1.0000   1.0000        1\n"
      "# overall     1.0000   0.5000   0.6667        2\n")


def test_format_report_is_key_value_parsable():
  gold = [["B-PER", "O", "B-GPE-X"]]
  report = metrics.format_report(metrics.entity_metrics(gold, gold))
  values = dict(line.split(" = ") for line in report.splitlines()
                if not line.startswith("#"))
  assert values["f1"] == "1.0000"
  assert values["GPE-X_support"] == "1"
  assert values["num_tokens"] == "3"


LABELS = ["O", "B-PER", "I-PER", "B-LOC"]


def _window(example, positions, mask, gold, pred):
  return ([example], [positions], [mask], [gold], [pred])


def test_entity_metric_accumulator_merges_windows_and_skips_padding():
  accumulator = metrics.EntityMetricAccumulator(LABELS)
  # Sentence 7 (3 words: B-PER I-PER B-LOC) in two windows: the first
  # scores words 0-1, the second word 2 (whose other copy, and the copy of
  # word 1, are ignored).
  first = _window(7, [-1, 0, 1, 2, -1], [0, 1, 1, 0, 0],
                  [-1, 1, 2, 3, -1], [0, 1, 2, 0, 0])
  second = _window(7, [-1, 1, 2, -1, -1], [0, 0, 1, 0, 0],
                   [-1, 2, 3, -1, -1], [0, 0, 3, 0, 0])
  # Sentence 3 (1 word, B-LOC predicted as O), then a padding window.
  third = _window(3, [-1, 0, -1, -1, -1], [0, 1, 0, 0, 0],
                  [-1, 3, -1, -1, -1], [0, 0, 0, 0, 0])
  padding = _window(-1, [0] * 5, [1] * 5, [0] * 5, [1] * 5)
  for batch in (first, second):
    assert accumulator.update(*[np.array(part) for part in batch]) == 0
  batch = [np.concatenate([a, b]) for a, b in
           zip([np.array(p) for p in third], [np.array(p) for p in padding])]
  accumulator.update(*batch)
  result = accumulator.result()
  # Examples 3 and 7 are renumbered 0 and 1: 2 sentences, 4 words.
  assert (result["num_sentences"], result["num_tokens"]) == (2, 4)
  # Gold PER, LOC, LOC; predicted PER, LOC: 2 correct.
  assert result["precision"] == 1.0
  assert result["recall"] == pytest.approx(2 / 3)
  assert result["token_accuracy"] == 0.75
  assert accumulator.value("f1") == np.float32(0.8)
  assert accumulator.value("LOC_recall") == np.float32(0.5)
  assert accumulator.value("PER_f1") == np.float32(1.0)
  assert accumulator.value("ORG_f1") == np.float32(0.0)  # absent type
  assert isinstance(accumulator.value("f1"), np.float32)


def test_entity_metric_accumulator_rescored_after_update():
  accumulator = metrics.EntityMetricAccumulator(LABELS)
  accumulator.update(*[np.array(p) for p in _window(
      0, [-1, 0, -1], [0, 1, 0], [-1, 1, -1], [0, 1, 0])])
  assert accumulator.value("f1") == 1.0
  accumulator.update(*[np.array(p) for p in _window(
      1, [-1, 0, -1], [0, 1, 0], [-1, 3, -1], [0, 0, 0])])
  assert accumulator.value("recall") == 0.5


def test_metrics_never_imports_tensorflow():
  code = ("import sys, numpy; from trainer.evaluation import metrics; "
          "a = metrics.EntityMetricAccumulator(['O', 'B-X']); "
          "a.update([0], numpy.array([[0]]), numpy.array([[1]]), "
          "numpy.array([[1]]), numpy.array([[1]])); "
          "assert a.value('f1') == 1.0; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True)
