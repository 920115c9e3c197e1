"""serving.batch.records: reading files into records and dead letters.

Pure Python: neither Beam nor TensorFlow is imported.
"""

import json
import subprocess
import sys

import pytest

from serving.batch import records as records_lib
from serving.batch.records import DeadLetter, SourceRecord


def read(text, data_format, **kwargs):
  data = text.encode("utf-8") if isinstance(text, str) else text
  report = records_lib.FileReport()
  items = list(records_lib.read_file("in", data.splitlines(keepends=True),
                                     data_format, report=report, **kwargs))
  return items, report


def test_text_lines_are_records_with_their_line_numbers():
  items, report = read("张三在北京\n\n  \nEU rejects\n", "text")
  assert items == [
      SourceRecord("in", 1, {"text": "张三在北京"}, text="张三在北京"),
      SourceRecord("in", 4, {"text": "EU rejects"}, text="EU rejects")]
  assert report.blank_lines == 2


def test_text_bom_and_crlf_are_removed():
  items, _ = read(b"\xef\xbb\xbfab\r\ncd", "text")
  assert [item.text for item in items] == ["ab", "cd"]


def test_json_lines_keep_every_field_and_bad_lines_become_dead_letters():
  text = "\n".join([
      '{"id": 7, "text": "EU rejects", "meta": {"a": [1]}}',
      '{"id": 8',
      '["text"]',
      '{"id": 9}',
      '{"text": 5}',
      '{"text": "abcdefghijk"}',
  ]) + "\n"
  items, _ = read(text, "jsonl", max_text_chars=10)
  assert items[0] == SourceRecord(
      "in", 1, {"id": 7, "text": "EU rejects", "meta": {"a": [1]}},
      text="EU rejects")
  assert [type(item) for item in items[1:]] == [DeadLetter] * 5
  reasons = [item.reason for item in items[1:]]
  assert reasons[0].startswith("not valid JSON: Expecting ',' delimiter")
  assert reasons[1:] == [
      "expected a JSON object with a 'text' field, got a list",
      "no 'text' field (the object has: id); set --text_field to the field "
      "that holds the text",
      "field 'text' is a int, expected a string",
      "text has 11 characters, over --max_text_chars=10"]
  assert [item.line for item in items[1:]] == [2, 3, 4, 5, 6]
  assert items[2].to_json() == {"file": "in", "line": 3, "reason": reasons[1],
                                "content": '["text"]'}


def test_json_text_field_flag_picks_the_field():
  items, _ = read('{"body": "x", "text": 1}\n', "jsonl", text_field="body")
  assert items == [SourceRecord("in", 1, {"body": "x", "text": 1}, text="x")]


def test_conll_sentences_use_the_first_column_and_start_lines():
  text = ("-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n\n\n"
          "it O\n")
  items, report = read(text, "conll")
  assert items == [
      SourceRecord("in", 3, {"tokens": ["EU", "rejects"],
                             "text": "EU rejects"},
                   words=("EU", "rejects")),
      SourceRecord("in", 7, {"tokens": ["it"], "text": "it"}, words=("it",))]
  assert report.blank_lines == 3


def test_invalid_utf8_line_is_a_dead_letter_and_reading_goes_on():
  items, _ = read(b"ok\n\xff\xfebad\nfine\n", "text")
  assert [item.text for item in items if isinstance(item, SourceRecord)] == [
      "ok", "fine"]
  dead = [item for item in items if isinstance(item, DeadLetter)]
  assert [(item.line, item.reason) for item in dead] == [
      (2, "not valid UTF-8 at byte 0 of the line; the tagger reads UTF-8")]


def test_conll_sentence_with_an_unreadable_line_is_one_dead_letter():
  items, _ = read(b"EU B-ORG\n\xff O\nrejects O\n\nit O\n", "conll")
  assert isinstance(items[0], DeadLetter) and items[0].line == 2
  assert items[1] == SourceRecord("in", 5, {"tokens": ["it"], "text": "it"},
                                  words=("it",))


def test_long_quotes_are_shortened():
  items, _ = read("x" * 300 + "\n", "text", max_text_chars=10)
  assert items[0].content == "x" * records_lib.QUOTE_CHARS + "..."


def test_unknown_format_is_refused():
  with pytest.raises(ValueError, match="--format='xml'; use one of text, "
                     "jsonl, conll"):
    list(records_lib.read_file("in", [], "xml"))


def test_output_record_adds_entities_tags_and_source():
  record = SourceRecord("in", 3, {"id": 1, "entities": "old", "text": "EU"},
                        text="EU")
  entity = {"type": "ORG", "text": "EU", "start": 0, "end": 2, "score": 0.5}
  assert records_lib.output_record(record, [entity]) == {
      "id": 1, "entities": [entity], "text": "EU",
      "source": {"file": "in", "line": 3}}
  assert records_lib.output_record(record, [], ["B-ORG"])["tags"] == ["B-ORG"]


def test_failed_record_quotes_its_fields():
  record = SourceRecord("in", 2, {"text": "张三"}, text="张三")
  assert records_lib.failed_record(record, "why").to_json() == {
      "file": "in", "line": 2, "reason": "why",
      "content": json.dumps({"text": "张三"}, ensure_ascii=False)}


def test_records_module_imports_neither_beam_nor_tensorflow():
  code = ("import sys, serving.batch.records; "
          "print(sorted(m for m in ('tensorflow', 'apache_beam') "
          "if m in sys.modules))")
  output = subprocess.run([sys.executable, "-c", code], check=True,
                          capture_output=True, text=True).stdout
  assert output.strip() == "[]"
