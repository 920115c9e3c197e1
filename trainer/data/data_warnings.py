"""A collector for what the readers accepted but a user should hear about.

Readers refuse bad data with a ValueError. Some data is usable but not as
written: a CLUENER record whose entities overlap (one span is dropped), a file
that mixes tag schemes. Nothing may be dropped silently, so readers record
each such case in a `DataWarnings` collector; the run logs `summary_lines()`
and writes every record, `format_lines()`, to a file in the output dir.

Example:
  warnings = DataWarnings()
  warnings.add("overlapping_span", "train.json:7",
               "dropped company '银行' at [2, 3]: inside book '浙商银行' at "
               "[0, 3] (overlapping_spans=keep_longest)")
  warnings.format_lines()
      -> ["train.json:7: overlapping_span: dropped company '银行' at [2, 3]: "
          "inside book '浙商银行' at [0, 3] (overlapping_spans=keep_longest)"]
  warnings.summary_lines()
      -> ["1 overlapping_span warning, first at train.json:7: dropped "
          "company '银行' at [2, 3]: ..."]

Pure Python: never imports TensorFlow.
"""

import collections
import contextlib
import dataclasses
import logging
from typing import Any, Iterator, Optional

# Kinds of warning the readers record.
OVERLAPPING_SPAN = "overlapping_span"
MIXED_TAG_SCHEMES = "mixed_tag_schemes"

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataWarning:
  """One thing a reader accepted with a change or a doubt.

  Attributes:
    kind: what happened, e.g. `OVERLAPPING_SPAN`.
    source: "path:line" where it happened.
    message: one line saying what was done and why.
    details: machine-readable fields, e.g. for a dropped span
      {"type": "company", "text": "银行", "start": 2, "end": 3}
      (inclusive character offsets, as CLUENER writes them).
  """
  kind: str
  source: str
  message: str
  details: dict[str, Any] = dataclasses.field(default_factory=dict)


class DataWarnings:
  """An ordered list of `DataWarning`s, filled by readers, read by the run."""

  def __init__(self) -> None:
    self.records: list[DataWarning] = []

  def add(self, kind: str, source: str, message: str, **details: Any) -> None:
    """Records one warning; `details` become `DataWarning.details`."""
    self.records.append(DataWarning(kind, source, message, dict(details)))

  def extend(self, other: "DataWarnings") -> None:
    """Appends every record of `other`, in order."""
    self.records.extend(other.records)

  def __len__(self) -> int:
    return len(self.records)

  def __iter__(self) -> Iterator[DataWarning]:
    return iter(self.records)

  def counts(self) -> dict[str, int]:
    """Number of records per kind, kinds in order of first appearance.

    Example: {'overlapping_span': 2, 'mixed_tag_schemes': 1}
    """
    return dict(collections.Counter(record.kind for record in self.records))

  def format_lines(self) -> list[str]:
    """One 'path:line: kind: message' line per record, in order."""
    return [f"{record.source}: {record.kind}: {record.message}"
            for record in self.records]

  def summary_lines(self, max_places: int = 3) -> list[str]:
    """One line per kind for the log: the count, the first record, more places.

    Example (3 overlapping spans, max_places 2):
      ["3 overlapping_span warnings, first at a.json:4: dropped ...; also at
        a.json:9 and 1 more"]
    """
    by_kind: dict[str, list[DataWarning]] = {}
    for record in self.records:
      by_kind.setdefault(record.kind, []).append(record)
    lines = []
    for kind, records in by_kind.items():
      first = records[0]
      plural = "" if len(records) == 1 else "s"
      line = (f"{len(records)} {kind} warning{plural}, first at "
              f"{first.source}: {first.message}")
      others = [record.source for record in records[1:max_places]]
      if others:
        line += f"; also at {', '.join(others)}"
      hidden = len(records) - 1 - len(others)
      if hidden > 0:
        line += f" and {hidden} more"
      lines.append(line)
    return lines

  def log(self, logger: Optional[logging.Logger] = None) -> None:
    """Logs `summary_lines()` as warnings (stdlib logging; absl shows them)."""
    for line in self.summary_lines():
      (logger or _LOGGER).warning("Data warning: %s", line)


@contextlib.contextmanager
def collecting(warnings: Optional[DataWarnings]) -> Iterator[DataWarnings]:
  """Yields `warnings`; when None, a fresh collector logged on a clean exit.

  Readers take an optional collector; this keeps "no collector" from meaning
  "no warning": the caller either gets the records or sees them in the log.

  Example:
    with collecting(None) as warnings:
      warnings.add(...)      # logged as a summary when the block ends
  """
  if warnings is not None:
    yield warnings
    return
  collector = DataWarnings()
  yield collector
  collector.log()
