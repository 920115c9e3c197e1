"""Tags files of any size with an exported model on Apache Beam.

    python -m serving.batch --export_dir RUN/export --input 'news/*.jsonl' \\
        --output tagged/news --format jsonl \\
        --direct_num_workers 2 --direct_running_mode multi_processing

The pipeline (each step a Beam transform, so Dataflow, Flink or Spark run it
as they run any Beam job):

    MatchFiles(--input) -> ReadMatches -> ReadRecords  (file, line, fields;
        dead letters for lines that cannot be read)
    -> Reshuffle        (records spread over workers, whatever the file sizes)
    -> RunInference(NerModelHandler)  (BatchElements; one model per worker
        process, shared by its threads, loaded once, not per bundle)
    -> SplitTagged      (output records; dead letters for records that failed)
    -> WriteToText(PREFIX-SSSSS-of-NNNNN.jsonl)
       WriteToText(PREFIX-errors-SSSSS-of-NNNNN.jsonl)

Tagging is the client's own code: `NerClient.predict_records` for texts and
`NerClient.records_for_sentences` for CoNLL tokens, over an in-process
`SavedModelTransport`, so a record gets exactly the entities a served model
gives the client for the same text. Counters in the namespace `ner_batch`
(records_read, records_tagged, records_failed, read_errors, blank_lines,
entities) are Beam metrics; `run` prints them at the end.
"""

import argparse
import json
import logging
import os
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference import base as inference_base
from apache_beam.options.pipeline_options import PipelineOptions

from serving.batch import records as records_lib
from serving.client import request_codec
from serving.client.client import NerClient
from serving.client.errors import PredictionError
from trainer.data import word_splitting
from trainer.data.formats import reader_common

NAMESPACE = "ner_batch"
DEAD_LETTERS = "dead_letters"
COUNTERS = ("records_read", "records_tagged", "records_failed", "read_errors",
            "blank_lines", "entities")
# Records per model call (BatchElements' bounds); the client splits them
# into requests of `--batch_size` windows.
DEFAULT_MIN_BATCH = 8
DEFAULT_MAX_BATCH = 256


def _counter(name: str):
  return Metrics.counter(NAMESPACE, name)


class ReadRecords(beam.DoFn):
  """A matched file -> its `SourceRecord`s (main) and `DeadLetter`s."""

  def __init__(self, data_format: str, text_field: str, max_text_chars: int):
    super().__init__()
    self._settings = (data_format, text_field, max_text_chars)
    self._read = _counter("records_read")
    self._errors = _counter("read_errors")
    self._blank = _counter("blank_lines")

  def process(self, readable_file):
    data_format, text_field, max_text_chars = self._settings
    path = readable_file.metadata.path
    report = records_lib.FileReport()
    with readable_file.open(compression_type=None) as handle:
      for item in records_lib.read_file(path, handle, data_format, text_field,
                                        max_text_chars, report):
        if isinstance(item, records_lib.DeadLetter):
          self._errors.inc()
          yield beam.pvalue.TaggedOutput(DEAD_LETTERS, item.to_json())
        else:
          self._read.inc()
          yield item
    self._blank.inc(report.blank_lines)


def _conll_sentence(record: records_lib.SourceRecord
                    ) -> reader_common.Sentence:
  """A CoNLL record as a Sentence of its tokens; text and character spans
  are those of `record.fields["text"]` (tokens joined by spaces)."""
  text = " ".join(record.words)
  where = f"{record.file}:{record.line}"
  return reader_common.Sentence(
      tokens=record.words, tags=None, source=where, text=text,
      char_spans=word_splitting.token_char_spans(text, record.words, where))


def _record_length(item: Tuple[int, records_lib.SourceRecord]) -> int:
  """Characters (text) or tokens (CoNLL) of an (index, record) pair; 0 for
  a text that is not a string, which the client then refuses."""
  record = item[1]
  if record.words is not None:
    return len(record.words)
  return len(record.text) if isinstance(record.text, str) else 0


def tag_records(client: NerClient, batch: Sequence[records_lib.SourceRecord]
                ) -> List[Dict[str, Any]]:
  """Output records for `batch`, in order (raises if any record fails).

  Texts go through `client.predict_records` (the client's word splitting,
  windowing and merging); CoNLL tokens through `records_for_sentences`.
  Each record's windows are its own, so the order records are sent in does
  not change their tags.
  """
  # Shortest first, so the client's model calls pad little (as
  # --do_predict's length buckets do); outputs go back in batch order.
  texts = sorted(((index, record) for index, record in enumerate(batch)
                  if record.words is None), key=_record_length)
  token_records = sorted(((index, record) for index, record in
                          enumerate(batch) if record.words is not None),
                         key=_record_length)
  outputs: List[Optional[Dict[str, Any]]] = [None] * len(batch)
  if texts:
    for (index, record), result in zip(texts, client.predict_records(
        [record.text for _, record in texts])):
      outputs[index] = records_lib.output_record(
          record, request_codec.entities_from_record(result))
  if token_records:
    results = client.records_for_sentences(
        [_conll_sentence(record) for _, record in token_records])
    for (index, record), result in zip(token_records, results):
      outputs[index] = records_lib.output_record(
          record, request_codec.entities_from_record(result),
          tags=list(result["tags"]))
  return outputs


class TaggingFailure:
  """The result of a record that could not be tagged (why, for its dead
  letter)."""

  def __init__(self, reason: str):
    self.reason = reason


class NerModelHandler(inference_base.ModelHandler):
  """Beam `ModelHandler`: `SourceRecord` in, output record dict out.

  The model is an export (base folder: its highest version; or a version
  folder) loaded in process as `NerClient` over `SavedModelTransport`.
  RunInference loads it once per worker process and shares it between the
  process's threads. A batch that fails is retried record by record, so one
  bad record fails alone (its result is a `TaggingFailure`).

  Args:
    export_dir: local path or gs:// of the export.
    batch_size: windows per model call (the client's `batch_size`).
    min_batch_size, max_batch_size: records per RunInference batch.
    intra_op_threads: threads of each TensorFlow op in a worker process;
      None: TensorFlow's default (all cores).
  """

  def __init__(self, export_dir: str, batch_size: int = 32,
               min_batch_size: int = DEFAULT_MIN_BATCH,
               max_batch_size: int = DEFAULT_MAX_BATCH,
               intra_op_threads: Optional[int] = None):
    super().__init__()
    self._export_dir = export_dir
    self._intra_op_threads = intra_op_threads
    self._batch_size = batch_size
    self._batch_bounds = (min_batch_size, max_batch_size)

  def load_model(self) -> NerClient:
    # Imported here: TensorFlow loads on the worker, not when the pipeline
    # is built (the launcher of a Dataflow job needs no model).
    from serving.client import transports  # pylint: disable=g-import-not-at-top
    from trainer.export import export_versions  # pylint: disable=g-import-not-at-top
    version_dir = export_versions.latest_version_dir(self._export_dir)
    logging.info("Loading the NER model %s (%s threads per op)", version_dir,
                 self._intra_op_threads or "all")
    return NerClient(export_dir=version_dir, batch_size=self._batch_size,
                     transport=transports.SavedModelTransport(
                         version_dir,
                         intra_op_threads=self._intra_op_threads))

  def run_inference(self, batch: Sequence[records_lib.SourceRecord],
                    model: NerClient,
                    inference_args: Optional[Dict[str, Any]] = None
                    ) -> Iterable[inference_base.PredictionResult]:
    del inference_args  # the export's own settings decide
    try:
      outputs = tag_records(model, batch)
    except (ValueError, PredictionError):
      outputs = []
      for record in batch:
        try:
          outputs.extend(tag_records(model, [record]))
        except (ValueError, PredictionError) as error:
          outputs.append(TaggingFailure(f"{type(error).__name__}: {error}"))
    return [inference_base.PredictionResult(record, output)
            for record, output in zip(batch, outputs)]

  def batch_elements_kwargs(self) -> Dict[str, int]:
    return {"min_batch_size": self._batch_bounds[0],
            "max_batch_size": self._batch_bounds[1]}

  def get_metrics_namespace(self) -> str:
    return NAMESPACE


class SplitTagged(beam.DoFn):
  """PredictionResult -> output record (main) or dead letter."""

  def __init__(self):
    super().__init__()
    self._tagged = _counter("records_tagged")
    self._failed = _counter("records_failed")
    self._entities = _counter("entities")

  def process(self, result):
    record, output = result.example, result.inference
    if isinstance(output, TaggingFailure):
      self._failed.inc()
      yield beam.pvalue.TaggedOutput(DEAD_LETTERS, records_lib.failed_record(
          record, output.reason).to_json())
      return
    self._tagged.inc()
    self._entities.inc(len(output[records_lib.ENTITIES_FIELD]))
    yield output


def _json_line(value: Dict[str, Any]) -> str:
  return json.dumps(value, ensure_ascii=False)


def model_threads(args: argparse.Namespace, options: PipelineOptions,
                  cores: Optional[int] = None) -> Optional[int]:
  """Threads per TensorFlow op in each worker process.

  `--model_threads` N > 0 is used as is. 0 (default) shares this machine's
  cores between the DirectRunner's worker processes in multi_processing
  mode (cores // workers, at least 1); elsewhere (one process, or a runner
  whose workers are machines of their own) it is None: TensorFlow's
  default, all cores.

  Example: 2 cores, --direct_num_workers 2, multi_processing -> 1.
  """
  if args.model_threads > 0:
    return args.model_threads
  from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=g-import-not-at-top
  from apache_beam.options.pipeline_options import StandardOptions  # pylint: disable=g-import-not-at-top
  direct = options.view_as(DirectOptions)
  runner = options.view_as(StandardOptions).runner or "DirectRunner"
  workers = direct.direct_num_workers or 1
  if (runner in ("DirectRunner", "direct") and workers > 1 and
      direct.direct_running_mode == "multi_processing"):
    return max(1, (cores or os.cpu_count() or 1) // workers)
  return None


def build(pipeline: beam.Pipeline, args: argparse.Namespace,
          intra_op_threads: Optional[int] = None) -> None:
  """Adds the tagging steps for `args` (see `parse_args`) to `pipeline`;
  `intra_op_threads`: see `model_threads`."""
  read = (pipeline
          | "MatchFiles" >> fileio.MatchFiles(
              args.input, empty_match_treatment=fileio.EmptyMatchTreatment.
              DISALLOW)
          | "ReadMatches" >> fileio.ReadMatches()
          | "ReadRecords" >> beam.ParDo(ReadRecords(
              args.format, args.text_field, args.max_text_chars)
                                        ).with_outputs(DEAD_LETTERS,
                                                       main="records"))
  handler = NerModelHandler(args.export_dir, args.batch_size,
                            args.min_batch_records, args.max_batch_records,
                            intra_op_threads)
  tagged = (read.records
            | "Reshuffle" >> beam.Reshuffle()
            | "RunInference" >> inference_base.RunInference(handler)
            | "SplitTagged" >> beam.ParDo(SplitTagged()).with_outputs(
                DEAD_LETTERS, main="tagged"))
  _ = (tagged.tagged
       | "TaggedToJson" >> beam.Map(_json_line)
       | "WriteTagged" >> beam.io.WriteToText(args.output,
                                              file_name_suffix=".jsonl"))
  _ = ((read[DEAD_LETTERS], tagged[DEAD_LETTERS])
       | "AllDeadLetters" >> beam.Flatten()
       | "DeadLettersToJson" >> beam.Map(_json_line)
       | "WriteDeadLetters" >> beam.io.WriteToText(
           args.output + "-errors", file_name_suffix=".jsonl"))


def parse_args(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
  """This tool's flags, and the rest (Beam's pipeline options)."""
  parser = argparse.ArgumentParser(
      prog="python -m serving.batch",
      description="Tag text, JSON-lines or CoNLL files with an exported NER "
      "model on Apache Beam. Flags not listed here are Beam pipeline options "
      "(--runner, --direct_num_workers, --direct_running_mode, --project, "
      "--temp_location, ...).")
  parser.add_argument("--export_dir", required=True,
                      help="the export: a base folder (its highest version "
                      "is used) or a version folder; local or gs://.")
  parser.add_argument("--input", required=True,
                      help="file pattern of the inputs, e.g. "
                      "'gs://bucket/news/*.jsonl' (quote it).")
  parser.add_argument("--output", required=True,
                      help="output prefix: writes PREFIX-SSSSS-of-NNNNN.jsonl "
                      "and the dead letters PREFIX-errors-*.jsonl.")
  parser.add_argument("--format", choices=records_lib.FORMATS, default="text",
                      help="text: one text per line; jsonl: one JSON object "
                      "per line with a text field (all fields kept); conll: "
                      "one token per line, blank line between sentences.")
  parser.add_argument("--text_field", default=records_lib.DEFAULT_TEXT_FIELD,
                      help="jsonl: the field holding the text.")
  parser.add_argument("--max_text_chars", type=int,
                      default=records_lib.DEFAULT_MAX_TEXT_CHARS,
                      help="longer texts go to the dead letters (>= 1).")
  parser.add_argument("--batch_size", type=int, default=32,
                      help="windows per model call (>= 1).")
  parser.add_argument("--model_threads", type=int, default=0,
                      help="threads of each TensorFlow op per worker "
                      "process; 0: cores / --direct_num_workers on the "
                      "DirectRunner in multi_processing mode, else all "
                      "cores.")
  parser.add_argument("--min_batch_records", type=int,
                      default=DEFAULT_MIN_BATCH,
                      help="records RunInference batches at least (>= 1).")
  parser.add_argument("--max_batch_records", type=int,
                      default=DEFAULT_MAX_BATCH,
                      help="records RunInference batches at most.")
  args, beam_args = parser.parse_known_args(argv)
  if min(args.max_text_chars, args.batch_size, args.min_batch_records) < 1:
    parser.error("--max_text_chars, --batch_size and --min_batch_records "
                 "must be >= 1.")
  if args.model_threads < 0:
    parser.error(f"--model_threads={args.model_threads}: use 0 (automatic) "
                 "or a positive count.")
  if args.max_batch_records < args.min_batch_records:
    parser.error(f"--max_batch_records={args.max_batch_records} is below "
                 f"--min_batch_records={args.min_batch_records}.")
  return args, beam_args


def counters(result) -> Dict[str, int]:
  """{counter name: committed value} of a finished pipeline's `ner_batch`
  counters (0 for a counter never incremented)."""
  found = {name: 0 for name in COUNTERS}
  query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
  for counter in query["counters"]:
    if counter.key.metric.name in found:
      found[counter.key.metric.name] += counter.committed or 0
  return found


def check_export(export_dir: str) -> None:
  """Refuses an export folder without a model before the pipeline starts.

  Raises:
    ValueError: naming the folder and what it should hold.
  """
  from trainer.export import export_versions  # pylint: disable=g-import-not-at-top
  try:
    export_versions.latest_version_dir(export_dir)
  except (OSError, ValueError) as error:
    raise ValueError(f"--export_dir={export_dir}: {error}") from None


def check_input(pattern: str) -> int:
  """The number of files `pattern` matches (local or gs://, as Beam sees
  them), checked before the pipeline starts.

  Raises:
    ValueError: when it matches no file.
  """
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  try:
    matched = FileSystems.match([pattern])[0].metadata_list
  except (OSError, ValueError, beam.io.filesystem.BeamIOError) as error:
    raise ValueError(f"--input={pattern}: {error}") from None
  if not matched:
    raise ValueError(f"--input={pattern} matches no file; give a path or "
                     "a pattern such as 'data/*.jsonl' (quoted).")
  return len(matched)


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, int]:
  """Runs the pipeline to the end; returns and prints its counters."""
  args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
  check_export(args.export_dir)
  files = check_input(args.input)
  logging.info("Tagging %d file(s) matching %s", files, args.input)
  options = PipelineOptions(beam_args)
  threads = model_threads(args, options)
  with beam.Pipeline(options=options) as pipeline:
    build(pipeline, args, threads)
  found = counters(pipeline.result)
  print(f"{found['records_read']} records read, {found['records_tagged']} "
        f"tagged ({found['entities']} entities), "
        f"{found['records_failed'] + found['read_errors']} dead letters "
        f"({found['read_errors']} unreadable, {found['records_failed']} "
        f"failed to tag), {found['blank_lines']} blank lines skipped; wrote "
        f"{args.output}-*.jsonl and {args.output}-errors-*.jsonl",
        flush=True)
  return found


def main(argv: Optional[Sequence[str]] = None) -> int:
  try:
    run(argv)
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0
