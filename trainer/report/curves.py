"""Training curves for the report: scalars from event files or a CSV log.

The Estimator writes TensorBoard event files: training scalars (``loss``,
``learning_rate``) in the output folder, evaluation scalars (``entity_f1``,
``loss``, ...) in ``eval*/`` subfolders, one event per evaluation. A run
that logs elsewhere can leave a CSV log instead (`CSV_LOG_FILENAME`), which
is read without TensorFlow.

This is the only report module that touches TensorFlow, and only inside
`read_event_scalars` (imported there, so the rest of the report, and a run
with a CSV log, never loads it).
"""

import csv
import glob
import os
from typing import Iterable

# step -> value, per scalar tag, per phase ("train" or "eval").
Curves = dict[str, dict[str, dict[int, float]]]

TRAIN = "train"
EVAL = "eval"
# Wide CSV log: a 'step' column, then one column per scalar; columns named
# 'eval_<tag>' are evaluation scalars, the others training scalars. Empty
# cells are skipped.
CSV_LOG_FILENAME = "training_log.csv"
EVAL_COLUMN_PREFIX = "eval_"
EVENT_FILE_PATTERN = "events.out.tfevents*"


def read_csv_log(lines: Iterable[str], source: str = "") -> Curves:
  """Parses a wide CSV log (see `CSV_LOG_FILENAME`).

  Example:
    step,loss,learning_rate,eval_entity_f1
    1,2.0,0.001,
    100,0.5,0.0005,0.7
      -> {'train': {'loss': {1: 2.0, 100: 0.5},
                    'learning_rate': {1: 0.001, 100: 0.0005}},
          'eval': {'entity_f1': {100: 0.7}}}

  Raises:
    ValueError: naming `source`:line for a missing 'step' column or a cell
      that is not a number.
  """
  curves: Curves = {TRAIN: {}, EVAL: {}}
  reader = csv.DictReader(lines)
  if not reader.fieldnames or "step" not in reader.fieldnames:
    raise ValueError(f"{source}:1: a CSV log needs a 'step' column; got "
                     f"{reader.fieldnames}.")
  for row in reader:
    try:
      step = int(float(row["step"]))
      for column, cell in row.items():
        if column == "step" or column is None or cell in (None, ""):
          continue
        phase, tag = ((EVAL, column[len(EVAL_COLUMN_PREFIX):])
                      if column.startswith(EVAL_COLUMN_PREFIX)
                      else (TRAIN, column))
        curves[phase].setdefault(tag, {})[step] = float(cell)
    except ValueError:
      raise ValueError(f"{source}:{reader.line_num}: expected numbers, got "
                       f"{row}.") from None
  return curves


def read_event_scalars(path: str) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of the scalar summaries in one event file.

  Reads `simple_value` scalars (tf.compat.v1 summaries, what the Estimator
  writes) and rank-0 float tensors (TF2 summaries). A later event for the
  same step wins. A truncated last record (a run still writing) ends the
  read without an error.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if tf.executing_eagerly():
    records = (record.numpy() for record in tf.data.TFRecordDataset(path))
  else:  # a caller that turned eager execution off
    records = tf.compat.v1.io.tf_record_iterator(path)
  scalars = {}
  try:
    for record in records:
      event = tf.compat.v1.Event.FromString(record)
      for value in event.summary.value:
        kind = value.WhichOneof("value")
        if kind == "simple_value":
          number = value.simple_value
        elif kind == "tensor" and not value.tensor.tensor_shape.dim and (
            value.tensor.dtype in (tf.float32.as_datatype_enum,
                                   tf.float64.as_datatype_enum)):
          number = tf.make_ndarray(value.tensor)
        else:
          continue
        scalars.setdefault(value.tag, {})[int(event.step)] = float(number)
  except tf.errors.DataLossError:
    pass
  return scalars


def _merge(into: dict[str, dict[int, float]],
           scalars: dict[str, dict[int, float]]) -> None:
  for tag, points in scalars.items():
    into.setdefault(tag, {}).update(points)


def read_curves(output_dir: str) -> Curves:
  """Curves of a run: its CSV log if present, else its event files.

  Event files are read in name order (their names start with the creation
  time), so a resumed run's newer values win for repeated steps.

  Returns:
    {'train': {tag: {step: value}}, 'eval': {tag: {step: value}}}; empty
    dicts when the run left neither.
  """
  csv_path = os.path.join(output_dir, CSV_LOG_FILENAME)
  if os.path.exists(csv_path):
    with open(csv_path, encoding="utf-8", newline="") as reader:
      return read_csv_log(reader, csv_path)
  curves: Curves = {TRAIN: {}, EVAL: {}}
  train_files = sorted(glob.glob(os.path.join(output_dir,
                                              EVENT_FILE_PATTERN)))
  eval_files = sorted(glob.glob(os.path.join(output_dir, "eval*",
                                             EVENT_FILE_PATTERN)))
  for phase, paths in ((TRAIN, train_files), (EVAL, eval_files)):
    for path in paths:
      _merge(curves[phase], read_event_scalars(path))
  return curves
