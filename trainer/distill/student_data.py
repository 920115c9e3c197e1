"""What distillation changes in a student's data; pure Python, no TensorFlow.

  `labels_in_teacher_order`  the student's label ids follow the teacher's
                             labels.txt, so both distributions index the
                             same tags without a --labels_file.
  `read_unlabelled`          the sentences of --distill_unlabelled_file:
                             text (one sentence a line, split into words as
                             --do_predict splits text) or JSON lines with a
                             "text" field (one token per character, as
                             CLUENER data). The student learns them from the
                             teacher alone: their windows carry label -1 on
                             every position, so they add only the KL term.

`trainer.run.run_inputs` appends the unlabelled sentences' windows to the
training features, after the labelled ones, example indices continuing.
"""

import dataclasses
import os
from typing import Sequence

from absl import logging

from trainer.data import readers
from trainer.data.formats.reader_common import Sentence
from trainer.errors import UserError

UNLABELLED_FLAG = "--distill_unlabelled_file"


def labels_in_teacher_order(labels: Sequence[str],
                            teacher_labels: Sequence[str]) -> list[str]:
  """The teacher's label list when it holds every student label, else labels.

  The KL term compares the two models' distributions label by label, so
  they must share one label list in one order. A student whose training
  data lacks a rare tag of the teacher's still predicts (and learns from the
  teacher) the teacher's full list.

  Example: labels ["O", "B-PER", "I-PER"], teacher ["O", "B-LOC", "B-PER",
  "I-LOC", "I-PER"] -> the teacher's list; labels ["O", "B-MISC"] with the
  same teacher -> ["O", "B-MISC"] unchanged (the teacher-targets check then
  names the difference).
  """
  if set(labels) <= set(teacher_labels):
    return list(teacher_labels)
  return list(labels)


def require_unlabelled_file(path: str) -> None:
  """Raises a `UserError` naming the flag when `path` is not a file."""
  if not os.path.isfile(path):
    raise UserError(f"{UNLABELLED_FLAG}={path}: no such file. Pass a text "
                    "file (one sentence a line) or JSON lines with a \"text\" "
                    "field.")


def read_unlabelled(path: str) -> list[Sentence]:
  """The sentences of an unlabelled file, every `tags` None.

  The format is detected as for --predict_file (`readers.detect_format`):
  `.jsonl`/`.json` -> JSON lines, else text. A file that turns out to hold
  tags (CoNLL, a parallel pair, labelled JSON lines) is read with its
  reader and the tags are dropped, with a log line saying so.

  Example: "John lives in Paris .\\nMary went home .\\n" -> two sentences,
  tokens ("John", "lives", "in", "Paris", ".") and ("Mary", "went",
  "home", "."), tags None.

  Raises:
    UserError: when the file does not exist.
    ValueError: for bad content, naming file:line.
  """
  require_unlabelled_file(path)
  sentences = readers.read_sentences(path, "auto")
  if any(sentence.tags is not None for sentence in sentences):
    logging.info("%s=%s holds tags (read as %s); they are ignored: the "
                 "student learns these sentences from the teacher only.",
                 UNLABELLED_FLAG, path, readers.detect_format(path))
  return [dataclasses.replace(sentence, tags=None) for sentence in sentences]
