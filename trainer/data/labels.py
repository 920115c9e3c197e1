"""The label list: which tags the model predicts, in which id order.

The list is built once from the training data (or read from a labels file),
written next to the model as `schema.LABELS_FILENAME`, and mapped to ids with
`label_map`. Pure Python: never imports TensorFlow.
"""

from typing import Iterable, Sequence

from trainer import schema
from trainer.data import tag_schemes
from trainer.data.formats import reader_common


def build_label_list(
    sentence_lists: Iterable[Sequence[reader_common.Sentence]]) -> list[str]:
  """Collects every tag of the labelled sentences, in a deterministic order.

  'O' comes first (always present, so id 0 is the outside tag), then the
  other tags in plain `sorted()` order, i.e. by prefix then type. Unlabelled
  sentences (tags None) are ignored.

  Example:
    tags {'I-PER', 'O', 'B-LOC', 'B-PER'} -> ['O', 'B-LOC', 'B-PER', 'I-PER']

  Args:
    sentence_lists: e.g. [train_sentences, dev_sentences].

  Raises:
    ValueError: if no sentence is labelled.
  """
  tags = set()
  labelled = False
  for sentences in sentence_lists:
    for sentence in sentences:
      if sentence.tags is not None:
        labelled = True
        tags.update(sentence.tags)
  if not labelled:
    raise ValueError("Cannot build a label list: none of the sentences has "
                     "tags; give labelled training data or --labels_file.")
  tags.discard(schema.OUTSIDE_TAG)
  return [schema.OUTSIDE_TAG] + sorted(tags)


def _check_label_list(labels: Sequence[str], where: Sequence[str]) -> None:
  """Checks labels are valid tags, unique, and include 'O'.

  Args:
    labels: the label list.
    where: per label, its "file:line" (or a description) for messages.
  """
  first_seen = {}
  for label, location in zip(labels, where):
    tag_schemes.validate_tag(label, source=location)
    if label in first_seen:
      raise ValueError(f"{location}: duplicate label {label!r} (first at "
                       f"{first_seen[label]}); each label must appear once.")
    first_seen[label] = location
  if schema.OUTSIDE_TAG not in first_seen:
    source = where[0].rsplit(":", 1)[0] if where else "label list"
    raise ValueError(f"{source}: the labels {list(labels)} lack the outside "
                     f"tag {schema.OUTSIDE_TAG!r}; it must be present.")


def _read_bytes_locally(path: str) -> bytes:
  with open(path, "rb") as file:
    return file.read()


def read_labels_file(path: str, read_bytes=_read_bytes_locally) -> list[str]:
  r"""Reads one label per line (blank lines ignored), keeping file order.

  Example: 'O\nB-PER\n\nI-PER\n' -> ['O', 'B-PER', 'I-PER']

  Args:
    path: the labels file.
    read_bytes: path -> bytes; the trainer passes a `tf.io.gfile` reader so
      gs:// paths work (this module stays free of TensorFlow).

  Raises:
    ValueError: for an invalid or duplicate label (naming file:line) or a
      missing 'O'.
  """
  labels, where = [], []
  text = read_bytes(path).decode("utf-8-sig")
  for number, line in enumerate(text.splitlines(), start=1):
    label = line.strip()
    if label:
      labels.append(label)
      where.append(f"{path}:{number}")
  if not labels:
    raise ValueError(f"{path}: contains no labels; expected one tag per line "
                     f"including {schema.OUTSIDE_TAG!r}.")
  _check_label_list(labels, where)
  return labels


def _write_bytes_locally(path: str, data: bytes) -> None:
  with open(path, "wb") as file:
    file.write(data)


def write_labels_file(labels: Sequence[str], path: str,
                      write_bytes=_write_bytes_locally) -> None:
  r"""Writes one label per line (UTF-8, '\n'), readable by `read_labels_file`.

  `write_bytes(path, data)` does the writing (see `read_labels_file`).

  Raises:
    ValueError: if the labels are invalid, duplicated or lack 'O'.
  """
  _check_label_list(labels, [f"labels[{i}]" for i in range(len(labels))])
  write_bytes(path, "".join(label + "\n" for label in labels).encode("utf-8"))


def check_labels_known(sentences: Iterable[reader_common.Sentence],
                       labels: Sequence[str],
                       labels_file_hint: str = "--labels_file") -> None:
  """Checks every tag of the labelled sentences is in `labels`.

  Raises:
    ValueError: for the first unknown tag, naming it, the sentence source
      (file:line of its first line) and token index, the known labels, and
      the fix.
  """
  known = set(labels)
  for sentence in sentences:
    if sentence.tags is None:
      continue
    for index, tag in enumerate(sentence.tags):
      if tag not in known:
        raise ValueError(
            f"{sentence.source}: tag {tag!r} of token {index} "
            f"({sentence.tokens[index]!r}) is not a known label; known: "
            f"{', '.join(labels)}. Add it to {labels_file_hint} or to the "
            f"training data.")


def label_map(labels: Sequence[str]) -> dict[str, int]:
  """Maps each label to its id (its index in `labels`).

  Example: ['O', 'B-PER', 'I-PER'] -> {'O': 0, 'B-PER': 1, 'I-PER': 2}
  """
  return {label: index for index, label in enumerate(labels)}
