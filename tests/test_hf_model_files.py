"""Tests for trainer.convert.hf_model_files: finding and reading a HF
directory.
"""

import json
import os

import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from tests import hf_fixtures
from trainer.convert import hf_model_files


def test_find_hf_model_dir(tmp_path):
  hf_dir = hf_fixtures.write_hf_model_dir(str(tmp_path / "pkg" / "model"), {})
  os.makedirs(str(tmp_path / "pkg" / "__pycache__"))
  assert hf_model_files.find_hf_model_dir(hf_dir) == hf_dir
  assert hf_model_files.find_hf_model_dir(str(tmp_path / "pkg")) == hf_dir
  hf_fixtures.write_hf_model_dir(str(tmp_path / "pkg" / "other"), {})
  with pytest.raises(ValueError, match="several subdirectories"):
    hf_model_files.find_hf_model_dir(str(tmp_path / "pkg"))
  with pytest.raises(ValueError, match="has no config.json"):
    hf_model_files.find_hf_model_dir(str(tmp_path / "pkg" / "__pycache__"))
  with pytest.raises(ValueError, match="is not a directory"):
    hf_model_files.find_hf_model_dir(str(tmp_path / "absent"))


def test_read_hf_config_and_do_lower_case(tmp_path):
  hf_dir = hf_fixtures.write_hf_model_dir(str(tmp_path / "a"), {},
                                          do_lower_case=False)
  assert hf_model_files.read_hf_config(hf_dir) == hf_fixtures.TINY_HF_CONFIG
  assert hf_model_files.read_do_lower_case(hf_dir) is False
  other = hf_fixtures.write_hf_model_dir(str(tmp_path / "b"), {},
                                         do_lower_case=None)
  assert hf_model_files.read_do_lower_case(other) is None


def test_load_single_file_and_sharded_safetensors(tmp_path):
  weights = {"a": np.arange(3, dtype=np.float32),
             "b": np.ones([2, 2], np.float16)}
  hf_dir = hf_fixtures.write_hf_model_dir(str(tmp_path / "one"), weights)
  loaded = hf_model_files.load_hf_weights(hf_dir)
  assert sorted(loaded) == ["a", "b"]
  np.testing.assert_array_equal(loaded["a"], [0, 1, 2])
  assert loaded["b"].dtype == np.float16

  sharded = tmp_path / "sharded"
  sharded.mkdir()
  safetensors_numpy.save_file({"a": weights["a"]},
                              str(sharded / "model-00001.safetensors"))
  safetensors_numpy.save_file({"b": weights["b"]},
                              str(sharded / "model-00002.safetensors"))
  (sharded / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {"a": "model-00001.safetensors",
                      "b": "model-00002.safetensors"}}))
  loaded = hf_model_files.load_hf_weights(str(sharded))
  assert sorted(loaded) == ["a", "b"]
  np.testing.assert_array_equal(loaded["b"], np.ones([2, 2]))


def test_no_weight_file(tmp_path):
  with pytest.raises(ValueError, match=r"has none of model\.safetensors, "
                     r"model\.safetensors\.index\.json, pytorch_model\.bin"):
    hf_model_files.load_hf_weights(str(tmp_path))
