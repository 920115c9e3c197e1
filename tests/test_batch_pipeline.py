"""`python -m serving.batch`: the Beam pipeline on the DirectRunner.

Tags with the tiny exported model of `serving_fixtures.served_model` and
checks every output against `NerClient` over the same export in process.
"""

import glob
import json

import pytest

from serving.batch import pipeline
from serving.client import request_codec
from serving.client import transports
from serving.client.client import NerClient
from tests import serving_fixtures

TEXTS = serving_fixtures.PREDICT + ["北京和上海", serving_fixtures.UNSEEN_TEXT]


@pytest.fixture(scope="module")
def model():
  return serving_fixtures.served_model()


@pytest.fixture(scope="module")
def client(model):
  with NerClient(export_dir=model["export_dir"],
                 transport=transports.SavedModelTransport(
                     model["export_dir"])) as opened:
    yield opened


def write(path, lines):
  with open(path, "w", encoding="utf-8") as writer:
    writer.write("".join(line + "\n" for line in lines))
  return str(path)


def run(model, tmp_path, pattern, data_format, *extra):
  prefix = str(tmp_path / "out" / "tagged")
  found = pipeline.run(["--export_dir", model["export_dir"], "--input",
                        pattern, "--output", prefix, "--format", data_format,
                        "--runner", "DirectRunner", *extra])
  outputs = []
  for path in sorted(glob.glob(prefix + "-0*.jsonl")):
    with open(path, encoding="utf-8") as reader:
      outputs += [json.loads(line) for line in reader]
  errors = []
  for path in sorted(glob.glob(prefix + "-errors-*.jsonl")):
    with open(path, encoding="utf-8") as reader:
      errors += [json.loads(line) for line in reader]
  by_line = sorted(outputs, key=lambda o: (o["source"]["file"],
                                           o["source"]["line"]))
  return found, by_line, errors


def expected_entities(client, texts):
  return [request_codec.entities_from_record(record)
          for record in client.predict_records(texts)]


def test_text_lines_get_the_clients_entities(model, client, tmp_path):
  path = write(tmp_path / "in.txt", TEXTS)
  found, outputs, errors = run(model, tmp_path, path, "text")
  assert [o["text"] for o in outputs] == TEXTS
  assert [o["entities"] for o in outputs] == expected_entities(client, TEXTS)
  assert any(o["entities"] for o in outputs)  # the model finds entities
  assert [o["source"] for o in outputs] == [
      {"file": path, "line": line} for line in range(1, len(TEXTS) + 1)]
  assert errors == []
  assert found["records_read"] == found["records_tagged"] == len(TEXTS)
  assert found["entities"] == sum(len(o["entities"]) for o in outputs)


def test_json_lines_keep_fields_and_bad_lines_go_to_dead_letters(
    model, client, tmp_path):
  good = [json.dumps({"id": index, "text": text, "meta": {"k": [index]}},
                     ensure_ascii=False) for index, text in enumerate(TEXTS)]
  lines = good[:2] + ['{"id": 99', '{"id": 100}'] + good[2:] + [
      json.dumps({"text": "长" * 50})]
  path = write(tmp_path / "in.jsonl", lines)
  found, outputs, errors = run(model, tmp_path, path, "jsonl",
                               "--max_text_chars", "40")
  assert [o["id"] for o in outputs] == list(range(len(TEXTS)))
  assert [o["meta"] for o in outputs] == [{"k": [i]} for i in
                                          range(len(TEXTS))]
  assert [o["entities"] for o in outputs] == expected_entities(client, TEXTS)
  assert sorted((e["line"], e["reason"].split(":")[0]) for e in errors) == [
      (3, "not valid JSON"),
      (4, "no 'text' field (the object has"),
      (len(lines), "text has 50 characters, over --max_text_chars=40")]
  # Records in == records out + dead letters.
  assert len(lines) == len(outputs) + len(errors)
  assert found["read_errors"] == 3 and found["records_tagged"] == len(TEXTS)


def test_conll_tokens_are_tagged_as_given(model, client, tmp_path):
  sentences = [list(text.replace(" ", "")) for text in TEXTS[:3]]
  lines = []
  for tokens in sentences:
    lines += [f"{token} O" for token in tokens] + [""]
  path = write(tmp_path / "in.conll", lines)
  _, outputs, errors = run(model, tmp_path, path, "conll")
  assert errors == []
  assert [o["tokens"] for o in outputs] == sentences
  from trainer.data.formats import reader_common  # pylint: disable=g-import-not-at-top
  expected = client.records_for_sentences([
      reader_common.Sentence(tuple(tokens), None, "s", " ".join(tokens),
                             tuple((2 * i, 2 * i + 1)
                                   for i in range(len(tokens))))
      for tokens in sentences])
  assert [o["tags"] for o in outputs] == [r["tags"] for r in expected]
  assert [o["entities"] for o in outputs] == [
      request_codec.entities_from_record(r) for r in expected]
  starts = [1]
  for tokens in sentences[:-1]:
    starts.append(starts[-1] + len(tokens) + 1)
  assert [o["source"]["line"] for o in outputs] == starts


def test_glob_over_files_keeps_each_source_on_two_worker_processes(
    model, client, tmp_path):
  first = write(tmp_path / "a.txt", TEXTS[:3])
  second = write(tmp_path / "b.txt", TEXTS[3:])
  found, outputs, errors = run(
      model, tmp_path, str(tmp_path / "*.txt"), "text",
      "--direct_num_workers", "2", "--direct_running_mode",
      "multi_processing")
  assert errors == []
  assert [(o["source"]["file"], o["source"]["line"], o["text"])
          for o in outputs] == (
              [(first, i + 1, t) for i, t in enumerate(TEXTS[:3])]
              + [(second, i + 1, t) for i, t in enumerate(TEXTS[3:])])
  assert [o["entities"] for o in outputs] == expected_entities(client, TEXTS)
  assert found["records_tagged"] == len(TEXTS)


def test_record_that_fails_to_tag_is_a_dead_letter_alone(model, client):
  handler = pipeline.NerModelHandler(model["export_dir"])
  from serving.batch import records as records_lib  # pylint: disable=g-import-not-at-top
  good = records_lib.SourceRecord("f", 1, {"text": TEXTS[0]}, text=TEXTS[0])
  bad = records_lib.SourceRecord("f", 2, {"text": 5}, text=5)
  results = list(handler.run_inference([good, bad], client))
  assert results[0].inference["entities"] == expected_entities(
      client, TEXTS[:1])[0]
  assert isinstance(results[1].inference, pipeline.TaggingFailure)
  assert results[1].inference.reason == (
      "ValueError: Text 0 is int, not str: 5")


def test_missing_export_and_unmatched_input_are_errors(model, tmp_path,
                                                       capsys):
  assert pipeline.main(["--export_dir", str(tmp_path / "none"), "--input",
                        "x", "--output", str(tmp_path / "o")]) == 1
  assert capsys.readouterr().err.startswith(
      f"error: --export_dir={tmp_path / 'none'}: ")
  pattern = str(tmp_path / "nothing-*.txt")
  assert pipeline.main(["--export_dir", model["export_dir"], "--input",
                        pattern, "--output", str(tmp_path / "o")]) == 1
  assert capsys.readouterr().err == (
      f"error: --input={pattern} matches no file; give a path or a pattern "
      "such as 'data/*.jsonl' (quoted).\n")
  assert not glob.glob(str(tmp_path / "o*"))


@pytest.mark.parametrize("flags, cores, expected", [
    ([], 2, None),
    (["--direct_num_workers", "2", "--direct_running_mode",
      "multi_processing"], 2, 1),
    (["--direct_num_workers", "2", "--direct_running_mode",
      "multi_processing"], 8, 4),
    (["--direct_num_workers", "3", "--direct_running_mode",
      "multi_processing"], 2, 1),
    (["--direct_num_workers", "2", "--direct_running_mode",
      "multi_threading"], 2, None),
    (["--runner", "DataflowRunner"], 2, None),
    (["--model_threads", "3", "--direct_num_workers", "2"], 2, 3),
])
def test_model_threads_share_the_cores_between_worker_processes(
    flags, cores, expected):
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  args, beam_args = pipeline.parse_args(
      ["--export_dir", "e", "--input", "i", "--output", "o"] + flags)
  assert pipeline.model_threads(args, PipelineOptions(beam_args),
                                cores) == expected


def test_batch_order_does_not_change_a_records_tags(model, client):
  from serving.batch import records as records_lib  # pylint: disable=g-import-not-at-top
  batch = [records_lib.SourceRecord("f", i + 1, {"text": text}, text=text)
           for i, text in enumerate(TEXTS)]
  forward = pipeline.tag_records(client, batch)
  backward = pipeline.tag_records(client, batch[::-1])[::-1]
  assert [o["source"]["line"] for o in forward] == list(
      range(1, len(TEXTS) + 1))
  assert [[e["type"] for e in o["entities"]] for o in forward] == [
      [e["type"] for e in o["entities"]] for o in backward]
