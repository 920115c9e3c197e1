"""Tests for trainer.data.data_warnings: the collector readers fill."""

import logging

from trainer.data import data_warnings
from trainer.data.data_warnings import DataWarning
from trainer.data.data_warnings import DataWarnings


def _three_spans_and_a_scheme():
  warnings = DataWarnings()
  for line in (4, 9, 12):
    warnings.add("overlapping_span", f"a.json:{line}", f"dropped X {line}",
                 start=line, end=line + 1)
  warnings.add("mixed_tag_schemes", "b.txt:7", "b.txt mixes tag schemes")
  return warnings


def test_add_keeps_order_and_details():
  warnings = _three_spans_and_a_scheme()
  assert len(warnings) == 4
  assert list(warnings)[0] == DataWarning(
      "overlapping_span", "a.json:4", "dropped X 4", {"start": 4, "end": 5})
  assert list(warnings)[3].details == {}
  assert warnings.counts() == {"overlapping_span": 3, "mixed_tag_schemes": 1}


def test_format_lines_one_per_record():
  assert _three_spans_and_a_scheme().format_lines() == [
      "a.json:4: overlapping_span: dropped X 4",
      "a.json:9: overlapping_span: dropped X 9",
      "a.json:12: overlapping_span: dropped X 12",
      "b.txt:7: mixed_tag_schemes: b.txt mixes tag schemes",
  ]


def test_summary_lines_one_per_kind_with_first_places():
  warnings = _three_spans_and_a_scheme()
  assert warnings.summary_lines(max_places=2) == [
      "3 overlapping_span warnings, first at a.json:4: dropped X 4; also at "
      "a.json:9 and 1 more",
      "1 mixed_tag_schemes warning, first at b.txt:7: b.txt mixes tag schemes",
  ]
  assert warnings.summary_lines()[0] == (
      "3 overlapping_span warnings, first at a.json:4: dropped X 4; also at "
      "a.json:9, a.json:12")
  assert DataWarnings().summary_lines() == []


def test_extend_appends_in_order():
  first, second = DataWarnings(), DataWarnings()
  first.add("k", "a:1", "one")
  second.add("k", "b:2", "two")
  first.extend(second)
  assert [record.source for record in first] == ["a:1", "b:2"]


def test_log_writes_summary_lines_as_warnings(caplog):
  warnings = _three_spans_and_a_scheme()
  with caplog.at_level(logging.WARNING, logger=data_warnings.__name__):
    warnings.log()
  assert [record.getMessage() for record in caplog.records] == [
      "Data warning: " + line for line in warnings.summary_lines()]
  assert {record.levelno for record in caplog.records} == {logging.WARNING}
