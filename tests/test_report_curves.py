"""Tests for trainer.report.curves (event files, CSV log) and report_plots."""

import os

import pytest

from trainer.report import curves as report_curves
from trainer.report import plots as report_plots


def test_read_csv_log():
  lines = ["step,loss,learning_rate,eval_entity_f1\n", "1,2.0,0.001,\n",
           "100,0.5,5e-4,0.7\n"]
  assert report_curves.read_csv_log(lines) == {
      "train": {"loss": {1: 2.0, 100: 0.5},
                "learning_rate": {1: 0.001, 100: 0.0005}},
      "eval": {"entity_f1": {100: 0.7}}}


def test_read_csv_log_errors_name_the_line():
  with pytest.raises(ValueError, match=r"log\.csv:1: a CSV log needs a "
                                       r"'step' column"):
    report_curves.read_csv_log(["loss\n", "1\n"], "log.csv")
  with pytest.raises(ValueError, match=r"log\.csv:3: expected numbers"):
    report_curves.read_csv_log(["step,loss\n", "1,2\n", "2,high\n"],
                               "log.csv")


def _write_v1_events(folder, name, points):
  """Event file of tf.compat.v1 `simple_value` scalars, as the Estimator."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  with tf.io.TFRecordWriter(os.path.join(folder, name)) as writer:
    writer.write(tf.compat.v1.Event(file_version="brain.Event:2")
                 .SerializeToString())
    for step, tag, value in points:
      summary = tf.compat.v1.Summary(
          value=[tf.compat.v1.Summary.Value(tag=tag, simple_value=value)])
      writer.write(tf.compat.v1.Event(step=step, summary=summary)
                   .SerializeToString())


def test_read_curves_from_event_files(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _write_v1_events(tmp_path, "events.out.tfevents.100.host",
                   [(1, "loss", 2.0), (1, "learning_rate", 0.25),
                    (101, "loss", 0.5)])
  # A resumed run: its newer file wins for a repeated step.
  _write_v1_events(tmp_path, "events.out.tfevents.200.host",
                   [(101, "loss", 0.75)])
  _write_v1_events(tmp_path / "eval", "events.out.tfevents.150.host",
                   [(101, "entity_f1", 0.5), (101, "loss", 1.0)])
  # TF2 summaries store scalars as rank-0 tensors.
  writer = tf.summary.create_file_writer(str(tmp_path / "eval_extra"))
  with writer.as_default():
    tf.summary.scalar("entity_f1", 0.625, step=201)
  writer.close()
  assert report_curves.read_curves(str(tmp_path)) == {
      "train": {"loss": {1: 2.0, 101: 0.75}, "learning_rate": {1: 0.25}},
      "eval": {"entity_f1": {101: 0.5, 201: 0.625}, "loss": {101: 1.0}}}


def test_truncated_event_file_keeps_what_was_read(tmp_path):
  _write_v1_events(tmp_path, "events.out.tfevents.1.host",
                   [(1, "loss", 2.0), (2, "loss", 1.0)])
  path = tmp_path / "events.out.tfevents.1.host"
  data = path.read_bytes()
  path.write_bytes(data[:-5])  # a run still writing its last record
  assert report_curves.read_event_scalars(str(path)) == {"loss": {1: 2.0}}


def test_csv_log_wins_over_event_files(tmp_path):
  _write_v1_events(tmp_path, "events.out.tfevents.1.host", [(1, "loss", 2.0)])
  (tmp_path / report_curves.CSV_LOG_FILENAME).write_text("step,loss\n5,1.5\n")
  assert report_curves.read_curves(str(tmp_path)) == {
      "train": {"loss": {5: 1.5}}, "eval": {}}


def test_curves_svg():
  assert report_plots.curves_svg({"train": {}, "eval": {}}) is None
  curves = {"train": {"loss": {1: 2.0, 50: 1.0}},
            "eval": {"entity_f1": {50: 0.5}}}
  svg = report_plots.curves_svg(curves)
  assert svg.startswith("<svg") and "<?xml" not in svg
  assert ">Loss<" in svg and ">Dev entity F1<" in svg
  assert ">Learning rate<" not in svg  # no data, no panel
  assert report_plots.curves_svg(curves) == svg  # no dates: reproducible
