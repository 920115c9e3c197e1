"""bench/request_grouping.py on the tiny served model."""

import argparse
import json

import pytest

from bench import request_grouping


def test_parse_overheads():
  assert request_grouping.parse_overheads("none, 32,0") == [None, 32, 0]
  with pytest.raises(argparse.ArgumentTypeError, match="'-1': use comma"):
    request_grouping.parse_overheads("none,-1")


def test_every_setting_timed_on_both_paths_with_the_same_tags(tmp_path):
  from tests import serving_fixtures  # pylint: disable=g-import-not-at-top
  model = serving_fixtures.served_model()
  sentences = tmp_path / "sentences.txt"
  sentences.write_text("张三 去 北京\n北京\n张三去北京 abc\n" * 5,
                       encoding="utf-8")
  result = request_grouping.main([
      "--export_dir", model["export_dir"], "--input_file", str(sentences),
      "--overheads", "none,0,64", "--batch_size", "8", "--batches", "2",
      "--rounds", "2", "--grpc", "--results_dir", str(tmp_path),
      "--results_name", "grouping"])
  assert list(result["paths"]) == ["in-process", "gRPC"]
  for path in result["paths"].values():
    assert list(path) == ["none", "0", "64"]
    assert all(len(figures["rounds"]) == 2 and figures["sentences_per_s"] > 0
               for figures in path.values())
  assert result["checked"] == 15
  assert result["same_tags"] == {"none": 15, "0": 15, "64": 15}
  saved = json.loads((tmp_path / "grouping.json").read_text())
  assert saved["same_tags"] == result["same_tags"]
  page = (tmp_path / "grouping.md").read_text()
  assert "| 64 | " in page and "| 15/15 |" in page
