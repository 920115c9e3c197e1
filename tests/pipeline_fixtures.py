"""Shared corpora and checks for the end-to-end pipeline tests.

The tiny CoNLL corpus (three sentences; the third is longer than one window
at max_seq_length 10) and the check that a served export gives exactly the
tags and scores that --do_predict wrote.
"""

import json

import numpy as np

DOCSTART = "-DOCSTART- O\n"
JOHN_LIVES_IN_NEW_YORK = """\
John B-PER
lives O
in O
New B-LOC
York I-LOC
. O
"""
MARY_WENT_TO_PARIS = """\
Mary B-PER
went O
to O
Paris B-LOC
. O
"""
# 19 words: longer than one window at max_seq_length 10 (8 pieces).
THE_UN_MET = """\
The O
UN B-ORG
met O
in O
New B-LOC
York I-LOC
City I-LOC
and O
John B-PER
went O
to O
Paris B-LOC
and O
Mary B-PER
lives O
in O
New B-LOC
York I-LOC
. O
"""
# One document of three sentences.
TRAIN = "\n".join([DOCSTART, JOHN_LIVES_IN_NEW_YORK, MARY_WENT_TO_PARIS,
                   THE_UN_MET])
# Two dev sentences, the second longer than one window.
DEV = "\n".join([MARY_WENT_TO_PARIS, THE_UN_MET])


def assert_served_like_predict(summary, compare_entities=False):
  """Both predict signatures of the run's export give --do_predict's output.

  Tags must be equal, per-word scores equal to 1e-5; with compare_entities
  the entity spans too (their scores, rounded to 6 digits, to 1e-5).
  """
  from serving.client import client as client_lib  # pylint: disable=import-outside-toplevel
  from serving.client import transports  # pylint: disable=import-outside-toplevel
  with open(summary["predict"]["jsonl"], encoding="utf-8") as reader:
    expected = [json.loads(line) for line in reader]
  texts = [record["text"] for record in expected]
  for signature in ("predict_examples", "serving_default"):
    client = client_lib.NerClient(
        export_dir=summary["export"], signature=signature,
        transport=transports.SavedModelTransport(summary["export"]))
    served = client.predict_records(texts)
    assert [r["tags"] for r in served] == [r["tags"] for r in expected]
    for got, want in zip(served, expected):
      np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-5)
      if compare_entities:
        assert [_without_score(e) for e in got["entities"]] == [
            _without_score(e) for e in want["entities"]]
        np.testing.assert_allclose([e["score"] for e in got["entities"]],
                                   [e["score"] for e in want["entities"]],
                                   atol=1e-5)


def _without_score(entity):
  return {k: v for k, v in entity.items() if k != "score"}
