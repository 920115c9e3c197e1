"""bench/distill.py: its plan, resume, speed rounds, report, and a --quick run
end to end on a tiny model."""

import json
import os
import subprocess
import sys

import pytest

from bench import conll2003
from bench import distill
from bench import distill_report
from bench import distill_speed
from bench import vs_pytorch
from tests import hf_fixtures

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL = {"freeze_bert": False, "learning_rate": 5e-5, "num_train_epochs": 3.0}


def test_plan_puts_the_teacher_first_and_pairs_each_student():
  assert distill.mode_plan([3, 2], 6, 0.7, 1.5, "pretrained") == [
      ("teacher", 6, FULL),
      ("3-distill", 3, dict(FULL, student_layers="3", student_layer_choice="bottom", teacher_dir=None,
                            distill_alpha=0.7, distill_temperature=1.5)),
      ("3-gold", 3, dict(FULL, student_layers="3", student_layer_choice="bottom")),
      ("2-distill", 2, dict(FULL, student_layers="2", student_layer_choice="bottom", teacher_dir=None,
                            distill_alpha=0.7, distill_temperature=1.5)),
      ("2-gold", 2, dict(FULL, student_layers="2", student_layer_choice="bottom"))]


def test_plan_starts_distilled_students_from_the_teacher_by_default():
  plan = distill.mode_plan([3], 6, 0.5, 2.0, ablation=True)
  assert [name for name, _, _ in plan] == [
      "teacher", "3-distill", "3-gold", "3-gold-tinit"]
  assert plan[1][2] == dict(FULL, student_layers="3", student_layer_choice="bottom", teacher_dir=None,
                            distill_alpha=0.5, distill_temperature=2.0,
                            init_from_teacher=True)
  assert plan[3][2] == dict(FULL, student_layers="3", student_layer_choice="bottom", init_from_teacher=True)
  # The teacher's folder goes where each mode needs it.
  assert distill._with_teacher(plan[1][2], "/t") == dict(
      FULL, student_layers="3", student_layer_choice="bottom", teacher_dir="/t", distill_alpha=0.5,
      distill_temperature=2.0, init_checkpoint="/t")
  assert distill._with_teacher(plan[2][2], "/t") == dict(
      FULL, student_layers="3", student_layer_choice="bottom")
  assert distill._with_teacher(plan[3][2], "/t") == dict(
      FULL, student_layers="3", student_layer_choice="bottom", init_checkpoint="/t")


def test_plan_student_epochs_reach_every_student_but_not_the_teacher():
  plan = distill.mode_plan([2], 6, 0.5, 2.0, ablation=True, student_epochs=5,
                           student_learning_rate=1e-4)
  assert [(name, settings["num_train_epochs"], settings["learning_rate"])
          for name, _, settings in plan] == [
              ("teacher", 3.0, 5e-5), ("2-distill", 5.0, 1e-4),
              ("2-gold", 5.0, 1e-4), ("2-gold-tinit", 5.0, 1e-4)]


def test_parse_args_refuses_both_epoch_overrides(capsys):
  assert distill.parse_args(["--student_num_train_epochs", "5"]
                            ).student_num_train_epochs == 5.0
  with pytest.raises(SystemExit):
    distill.parse_args(["--num_train_epochs", "4",
                        "--student_num_train_epochs", "5"])
  assert "give it or --student_num_train_epochs, not both" in (
      capsys.readouterr().err)


def test_parse_args_defaults_and_layer_lists(capsys):
  args = distill.parse_args([])
  assert (args.seeds, args.teacher_seeds, args.student_layers_list) == (
      3, 1, [3, 2])
  assert (args.distill_alpha, args.distill_temperature) == (0.5, 2.0)
  assert distill.parse_args(["--student_layers_list", "4"]
                            ).student_layers_list == [4]
  for bad in (["--student_layers_list", "3,x"], ["--seeds", "0"]):
    with pytest.raises(SystemExit):
      distill.parse_args(bad)
  assert "use comma-separated layer counts >= 1" in capsys.readouterr().err


def _scores(f1):
  return {"precision": f1, "recall": f1, "f1": f1,
          "per_type_f1": {"PER": f1}}


class _FakeChildren:
  """Stands in for `distill._run_child`: records specs, answers from
  `outcomes` ({mode: "fail" or test F1 by seed})."""

  def __init__(self, outcomes, root="/w"):
    self.outcomes, self.specs, self.root = outcomes, [], root

  def __call__(self, spec, log_path):
    self.specs.append(spec)
    name, seed = spec["name"], spec["settings"]["seed"]
    if self.outcomes[name] == "fail":
      return None, f"exit 1 (log {log_path}):\nboom", 0
    f1 = self.outcomes[name][seed]
    return ({"mode": name, "seed": seed, "settings": spec["settings"],
             "output_dir": f"{self.root}/{name}-{seed}",
             "export": f"{self.root}/{name}/x",
             "train_seconds": 10.0 * (seed - 41), "dev": _scores(f1),
             "test": _scores(f1)}, None, 1000)


def _context(tmp_path, reuse=False):
  return {"work_dir": str(tmp_path), "checkpoint_dir": "/ckpt",
          "reuse": reuse, "options": {"work_dir": str(tmp_path)}}


def test_train_modes_aggregate_seeds_and_report_a_failed_mode(
    tmp_path, monkeypatch):
  children = _FakeChildren({"teacher": {42: 0.9},
                            "1-distill": {42: 0.25, 43: 0.5, 44: 0.75},
                            "1-gold": "fail"})
  monkeypatch.setattr(distill, "_run_child", children)
  modes = distill.train_modes(distill.mode_plan([1], 2, 0.5, 2.0), 3, 1,
                              _context(tmp_path))
  assert list(modes) == ["teacher", "1-distill", "1-gold"]
  student = modes["1-distill"]
  assert student["spread"]["test_f1"] == {"mean": 0.5, "std": 0.25,
                                          "min": 0.25, "max": 0.75, "n": 3}
  assert student["test"]["f1"] == 0.5 and student["train_seconds"] == 20.0
  assert student["seeds"] == [42, 43, 44] and student["layers"] == 1
  # Every student learns from the first teacher run's output_dir; only the
  # first seed exports.
  assert student["settings"]["teacher_dir"] == "/w/teacher-42"
  assert [spec["settings"].get("teacher_dir") for spec in children.specs] == [
      None, "/w/teacher-42", "/w/teacher-42", "/w/teacher-42", None, None,
      None]
  assert [spec["settings"]["do_export"] for spec in children.specs] == [
      True, True, False, False, True, False, False]
  assert [spec["options"]["seed_index"] for spec in children.specs] == [
      0, 0, 1, 2, 0, 1, 2]
  assert modes["teacher"]["spread"]["test_f1"]["n"] == 1
  gold = modes["1-gold"]
  assert "spread" not in gold and [run["seed"] for run in
                                   gold["failed_runs"]] == [42, 43, 44]
  assert gold["failed_runs"][0]["error"].endswith("boom")
  saved = json.loads((tmp_path / "runs" / "1-distill-seed43.json").read_text())
  assert saved["test"]["f1"] == 0.5 and saved["peak_rss_bytes_tree"] == 1000
  assert not (tmp_path / "runs" / "1-gold-seed42.json").exists()


def _trained_once(tmp_path, monkeypatch):
  """Trains a 1-layer plan once with stand-in children (results saved in
  tmp_path/runs); returns (plan, the children's outcomes)."""
  outcomes = {"teacher": {42: 0.9}, "1-distill": {42: 0.8},
              "1-gold": {42: 0.7}}
  monkeypatch.setattr(distill, "_run_child", _FakeChildren(outcomes))
  plan = distill.mode_plan([1], 2, 0.5, 2.0)
  distill.train_modes(plan, 1, 1, _context(tmp_path))
  return plan, outcomes


def test_reuse_skips_saved_runs_unless_their_settings_changed(
    tmp_path, monkeypatch):
  plan, outcomes = _trained_once(tmp_path, monkeypatch)
  again = _FakeChildren(outcomes)
  monkeypatch.setattr(distill, "_run_child", again)
  modes = distill.train_modes(plan, 1, 1, _context(tmp_path, reuse=True))
  assert again.specs == [] and modes["1-gold"]["test"]["f1"] == 0.7
  assert all(mode["runs"][0]["reused"] for mode in modes.values())
  # Another alpha: the distilled student trains again, the rest is reused.
  distill.train_modes(distill.mode_plan([1], 2, 0.9, 2.0), 1, 1,
                      _context(tmp_path, reuse=True))
  assert [spec["name"] for spec in again.specs] == ["1-distill"]


def test_reuse_trains_again_when_the_epochs_override_changed(
    tmp_path, monkeypatch):
  plan, outcomes = _trained_once(tmp_path, monkeypatch)
  saved = json.loads((tmp_path / "runs" / "1-gold-seed42.json").read_text())
  assert saved["requested_options"] == {"num_train_epochs": None,
                                        "num_train_steps": None}
  again = _FakeChildren(outcomes)
  monkeypatch.setattr(distill, "_run_child", again)
  context = _context(tmp_path, reuse=True)
  context["options"]["num_train_epochs"] = 1.0
  distill.train_modes(plan, 1, 1, context)
  assert [spec["name"] for spec in again.specs] == [
      "teacher", "1-distill", "1-gold"]
  # A result saved before the options were recorded counts as no override.
  del saved["requested_options"]
  (tmp_path / "runs" / "1-gold-seed42.json").write_text(json.dumps(saved))
  third = _FakeChildren(outcomes)
  monkeypatch.setattr(distill, "_run_child", third)
  distill.train_modes(distill.mode_plan([1], 2, 0.5, 2.0), 1, 1,
                      _context(tmp_path, reuse=True))
  assert "1-gold" not in [spec["name"] for spec in third.specs]


def test_a_failed_teacher_fails_the_distilled_students_only(
    tmp_path, monkeypatch):
  children = _FakeChildren({"teacher": "fail", "1-gold": {42: 0.7}})
  monkeypatch.setattr(distill, "_run_child", children)
  modes = distill.train_modes(distill.mode_plan([1], 2, 0.5, 2.0), 1, 1,
                              _context(tmp_path))
  assert [spec["name"] for spec in children.specs] == ["teacher", "1-gold"]
  assert modes["1-distill"]["failed_runs"] == [
      {"mode": "1-distill", "seed": 42,
       "error": "no teacher: its first run failed"}]
  assert modes["1-gold"]["test"]["f1"] == 0.7


def test_a_crashing_child_is_reported_with_its_log(tmp_path):
  # A real child process (bench/distill.py --child) that fails: no result,
  # exit 1, the traceback in its log and in the error.
  log = tmp_path / "logs" / "serve.log"
  result, error, peak = distill._run_child(
      {"job": "serve", "sentences_file": str(tmp_path / "missing.txt")},
      str(log))
  assert result is None and peak > 0
  assert error.startswith(f"exit 1 (log {log}):\n")
  assert "FileNotFoundError" in error and "missing.txt" in log.read_text()


def test_speed_files_share_one_shuffled_sample(tmp_path):
  words = [[f"w{index}"] for index in range(5)]
  vs_pytorch.write_conll(str(tmp_path / "test.txt"), words,
                         [["O"]] * len(words))
  paths = distill_speed.write_speed_files(str(tmp_path / "test.txt"),
                                          str(tmp_path / "speed"), 1)
  with open(paths["sentences"], encoding="utf-8") as reader:
    sentences = reader.read().split()
  assert sorted(sentences) == ["w0", "w1", "w2", "w3", "w4"]
  assert vs_pytorch.read_conll(paths["hf_latency"])[0] == [
      [word] for word in sentences]
  # 32 sentences (the sample repeated), 1 + 2 times.
  batch = [[sentences[index % 5]] for index in range(32)]
  assert vs_pytorch.read_conll(paths["hf_batches"])[0] == batch * 3


def test_speed_rounds_alternate_the_order_and_keep_failures(monkeypatch):
  served = []

  def run_child(spec, log_path):
    served.append(([name for name, _ in spec["exports"]], log_path))
    if len(served) == 2:
      return None, "exit 1: crashed", 0
    return {name: {"p50_ms": 2.0, "p99_ms": 3.0, "sentences_per_s": 90.0,
                   "loadavg_1min": [1.0, 1.5]}
            for name, _ in spec["exports"]}, None, 0

  launched = []

  def launch(spec, unused_args):
    launched.append((spec["measure"], spec["test_file"]))
    if spec["measure"] == "latency":
      return {"p50_ms": 6.0, "p99_ms": 9.0}
    return {"sentences_per_second": 20.0, "steady_sentences_per_second": 30.0}

  monkeypatch.setattr(vs_pytorch, "launch", launch)
  exports = {"teacher": "/e/t", "1-distill": "/e/d"}
  rounds = distill_speed.speed_rounds(
      exports, {"hf_latency": "lat.txt", "hf_batches": "batch.txt"},
      {"requests": 5}, 3, "/w", run_child)
  assert [entry["order"] for entry in rounds] == [
      ["teacher", "1-distill", "hf-peer"],
      ["hf-peer", "1-distill", "teacher"],
      ["teacher", "1-distill", "hf-peer"]]
  assert served[1] == (["1-distill", "teacher"], "/w/logs/serve-round1.log")
  assert launched[:2] == [("latency", "lat.txt"), ("predict", "batch.txt")]
  assert rounds[1]["figures"]["teacher"] == {"error": "exit 1: crashed"}
  hf = rounds[0]["figures"]["hf-peer"]
  assert (hf["p50_ms"], hf["p99_ms"], hf["sentences_per_s"],
          hf["cold_sentences_per_s"]) == (6.0, 9.0, 30.0, 20.0)
  summary = distill_speed.speed_summary(rounds)
  # The crashed round is left out of the teacher's medians.
  assert summary["teacher"]["p50_ms_values"] == [2.0, 2.0]
  assert summary["hf-peer"]["sentences_per_s"] == 30.0


def test_speed_summary_medians_and_a_model_that_never_ran():
  def figures(p50, rate, load):
    return {"p50_ms": p50, "p99_ms": 2 * p50, "sentences_per_s": rate,
            "loadavg_1min": [load, load + 1]}
  rounds = [{"figures": {"a": figures(10.0, 100.0, 1.0), "b": {"error": "x"}}},
            {"figures": {"a": figures(12.0, 80.0, 0.5), "b": {"error": "y"}}},
            {"figures": {"a": figures(11.0, 90.0, 2.0), "b": {"error": "z"}}}]
  summary = distill_speed.speed_summary(rounds)
  assert summary["a"] == {
      "p50_ms": 11.0, "p50_ms_values": [10.0, 12.0, 11.0],
      "p99_ms": 22.0, "p99_ms_values": [20.0, 24.0, 22.0],
      "sentences_per_s": 90.0, "sentences_per_s_values": [100.0, 80.0, 90.0],
      "loadavg_1min": [0.5, 3.0]}
  assert summary["b"] == {"error": "z"}


def _mode(layers, test_f1s, dev_f1=0.9, seconds=100.0):
  runs = [{"seed": 42 + index, "train_seconds": seconds, "dev": _scores(dev_f1),
           "test": _scores(f1)} for index, f1 in enumerate(test_f1s)]
  return dict(conll2003.aggregate(runs), layers=layers, failed_runs=[])


def _report_inputs():
  modes = {"teacher": _mode(6, [0.86]),
           "3-distill": _mode(3, [0.853, 0.855, 0.857], seconds=60.0),
           "3-gold": _mode(3, [0.84, 0.845, 0.85], seconds=50.0),
           "2-gold": {"mode": "2-gold", "layers": 2, "settings": {},
                      "failed_runs": [{"seed": 42, "error": "x"}] * 3}}
  speed = {"teacher": {"p50_ms": 10.0, "p99_ms": 15.0,
                       "sentences_per_s": 100.0},
           "3-distill": {"p50_ms": 5.0, "p99_ms": 8.0,
                         "sentences_per_s": 200.0},
           "3-gold": {"error": "crashed"},
           "hf-peer": {"p50_ms": 8.0, "p99_ms": 12.0,
                       "sentences_per_s": 120.0}}
  return modes, speed


def test_check_lines_state_each_target_with_its_figures():
  modes, speed = _report_inputs()
  assert distill_report.check_lines(modes, speed, 3) == [
      "3-distill F1 within 0.8 of teacher: yes (delta -0.50 points; std "
      "0.20 vs 0.00)",
      "3-distill >= 3-gold + 0.5: yes (delta +1.00 points; std 0.20 vs "
      "0.50)",
      "3-distill p50 <= 0.6x teacher: yes (0.50x)",
      "3-distill throughput >= 1.7x teacher: yes (2.00x)",
      "3-distill vs HF 6-layer: p50 and throughput >= 1.5x better, F1 >= "
      "0.849 - 0.5 points: yes (p50 1.60x, throughput 1.67x, test F1 0.8550 "
      "vs reference 0.849)"]
  # The 2-layer students were not measured: every line says so.
  assert [line.rsplit(": ", 1)[1] for line in distill_report.check_lines(
      modes, speed, 2, hf_layers=4)] == ["not measured"] * 5


def test_markdown_rows_mark_failures_and_the_reference_figure():
  modes, speed = _report_inputs()
  rows = distill_report.markdown(modes, speed).splitlines()
  assert rows[0].count("|") == 11 and rows[1] == "| --- " * 10 + "|"
  assert rows[2:] == [
      "| teacher | 6 | 0.8600 ± 0.0000 (1) | 0.9000 | 100 | 10.00 | 15.00 | "
      "100.0 | 1.00x | 1.00x |",
      "| 3-distill | 3 | 0.8550 ± 0.0020 (3) | 0.9000 | 60 | 5.00 | 8.00 | "
      "200.0 | 0.50x | 2.00x |",
      "| 3-gold | 3 | 0.8450 ± 0.0050 (3) | 0.9000 | 50 | - | - | - | - | - |",
      "| 2-gold | 2 | failed (3 runs) | - | - | - | - | - | - | - |",
      "| hf-peer | 6 | 0.849 (earlier run, not measured here) | - | - | "
      "8.00 | 12.00 | 120.0 | 0.80x | 1.20x |"]


def _stand_in_folders(root, words, tags):
  """root/ckpt and root/hf (2-layer configs only) and root/data (every
  split holds `words` with `tags`), for `distill.main` with stand-ins."""
  for folder, name in (("ckpt", "bert_config.json"), ("hf", "config.json")):
    (root / folder).mkdir()
    (root / folder / name).write_text(json.dumps({"num_hidden_layers": 2}))
  (root / "data").mkdir()
  for split in ("train", "dev", "test"):
    vs_pytorch.write_conll(str(root / "data" / f"{split}.txt"), words, tags)


def test_main_writes_every_figure_with_stand_in_children(
    tmp_path, monkeypatch, capsys):
  # The whole orchestration in seconds: trainings and serving rounds answer
  # from `_FakeChildren`, the HF peer from a stand-in `launch`.
  _stand_in_folders(tmp_path, [["Paris"], ["John"]], [["B-LOC"], ["B-PER"]])
  root = tmp_path / "w"
  for name in ("teacher", "1-distill", "1-gold"):
    (root / name / "x").mkdir(parents=True)
  trainings = _FakeChildren({"teacher": {42: 0.9},
                             "1-distill": {42: 0.8, 43: 0.9},
                             "1-gold": {42: 0.5}}, str(root))

  def run_child(spec, log_path):
    if spec["job"] == "serve":
      return {name: {"p50_ms": 2.0, "p99_ms": 4.0, "sentences_per_s": 50.0,
                     "loadavg_1min": [1.0, 1.0]}
              for name, _ in spec["exports"]}, None, 0
    if spec["name"] == "1-gold" and spec["settings"]["seed"] == 43:
      return None, "exit 1: boom", 0
    return trainings(spec, log_path)

  monkeypatch.setattr(distill, "_run_child", run_child)
  monkeypatch.setattr(vs_pytorch, "launch", lambda spec, args: {
      "p50_ms": 4.0, "p99_ms": 8.0, "sentences_per_second": 10.0,
      "steady_sentences_per_second": 25.0})
  result = distill.main([
      "--quick", "--seeds", "2", "--student_layers_list", "1",
      "--checkpoint_dir", str(tmp_path / "ckpt"), "--hf_model_dir",
      str(tmp_path / "hf"), "--data_dir", str(tmp_path / "data"),
      "--work_dir", str(tmp_path / "work"), "--results_dir",
      str(tmp_path / "results")])
  saved = json.loads((tmp_path / "results" / "distill_quick.json").read_text())
  assert saved == json.loads(json.dumps(result))
  assert saved["modes"]["1-distill"]["test"]["f1"] == pytest.approx(0.85)
  assert [run["seed"] for run in saved["modes"]["1-gold"]["failed_runs"]] == [
      43]
  assert saved["speed"]["exports"] == {
      name: str(root / name / "x") for name in ("teacher", "1-distill",
                                                "1-gold")}
  assert saved["speed"]["summary"]["hf-peer"]["sentences_per_s"] == 25.0
  assert saved["settings"]["rounds"] == 1 and saved["settings"]["seeds"] == 2
  assert saved["hf_reference_test_f1"]["measured_here"] is False
  assert saved["checks"][2] == "1-distill p50 <= 0.6x teacher: no (1.00x)"
  page = (tmp_path / "results" / "distill_quick.md").read_text()
  assert "- 1-gold seed 43 failed: exit 1: boom" in page
  assert saved["table"] in capsys.readouterr().out
  # --quick trains on each split's first 64 sentences.
  assert saved["data_dir"] == str(tmp_path / "work" / "data_first64")


def test_modes_probe_one_setting_without_the_serving_phase(
    tmp_path, monkeypatch):
  _stand_in_folders(tmp_path, [["Paris"]], [["B-LOC"]])
  trainings = _FakeChildren({"teacher": {42: 0.9}, "1-distill": {42: 0.8}})
  monkeypatch.setattr(distill, "_run_child", trainings)
  common = ["--quick", "--seeds", "1", "--student_layers_list", "1",
            "--checkpoint_dir", str(tmp_path / "ckpt"), "--hf_model_dir",
            str(tmp_path / "hf"), "--data_dir", str(tmp_path / "data"),
            "--work_dir", str(tmp_path / "work"), "--results_dir",
            str(tmp_path / "results"), "--skip_speed"]
  result = distill.main(common + ["--modes", "1-distill"])
  assert [spec["name"] for spec in trainings.specs] == ["teacher",
                                                         "1-distill"]
  assert list(result["modes"]) == ["teacher", "1-distill"]
  assert result["speed"] == {"skipped": True, "summary": {}}
  assert [line.rsplit(": ", 1)[1] for line in result["checks"][1:]] == [
      "not measured"] * 4  # no gold student, no serving phase
  with pytest.raises(distill.UserError,
                     match="--modes: no mode 3-gold in this plan; it has "
                           "teacher, 1-distill, 1-gold."):
    distill.main(common + ["--modes", "3-gold"])


def _tiny_model_and_data(root):
  """A 2-layer HF BERT (the peer), its conversion (ours) and CoNLL data."""
  from trainer.convert import convert_checkpoint  # pylint: disable=C0415
  config = dict(hf_fixtures.TINY_HF_CONFIG, max_position_embeddings=128)
  hf_dir = hf_fixtures.write_hf_model_dir(
      str(root / "hf"), hf_fixtures.tiny_hf_weights(config), config)
  convert_checkpoint.convert(hf_dir, str(root / "ckpt"))
  sentences = [(["John", "Smith", "lives", "in", "Paris", "."],
                ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
               (["Acme", "Corp", "works", "in", "New", "York", "."],
                ["B-ORG", "I-ORG", "O", "O", "B-LOC", "I-LOC", "O"])] * 4
  (root / "data").mkdir()
  for split in ("train", "dev", "test"):
    vs_pytorch.write_conll(str(root / "data" / f"{split}.txt"),
                           [words for words, _ in sentences],
                           [tags for _, tags in sentences])
  return hf_dir, str(root / "ckpt"), str(root / "data")


@pytest.mark.slow
def test_quick_run_end_to_end_on_a_tiny_model(tmp_path):
  # 5 trainings, 1 serving child and 2 HF children, each a process that
  # loads TensorFlow or torch: 1.5-2 minutes on 2 busy cores, hence slow.
  hf_dir, checkpoint_dir, data_dir = _tiny_model_and_data(tmp_path)
  results = tmp_path / "results"
  completed = subprocess.run(
      [sys.executable, "-m", "bench.distill", "--quick", "--seeds", "2",
       "--student_layers_list", "1", "--checkpoint_dir", checkpoint_dir,
       "--hf_model_dir", hf_dir, "--data_dir", data_dir, "--work_dir",
       str(tmp_path / "work"), "--results_dir", str(results)],
      cwd=REPO_ROOT, capture_output=True, text=True, check=False,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert completed.returncode == 0, completed.stdout[-3000:]
  saved = json.loads((results / "distill_quick.json").read_text())
  modes = saved["modes"]
  assert list(modes) == ["teacher", "1-distill", "1-gold"]
  assert [mode["seeds"] for mode in modes.values()] == [[42], [42, 43],
                                                        [42, 43]]
  assert all(mode["failed_runs"] == [] for mode in modes.values())
  teacher_dir = modes["teacher"]["output_dir"]
  assert modes["1-distill"]["settings"]["teacher_dir"] == teacher_dir
  assert modes["1-distill"]["settings"]["student_layers"] == "1"
  for mode in modes.values():  # the aggregation over seeds is exact
    for split in ("dev", "test"):
      values = [run[split]["f1"] for run in mode["runs"]]
      assert mode["spread"][f"{split}_f1"] == conll2003.spread(values)
      assert mode[split]["f1"] == sum(values) / len(values)
    assert mode["train_seconds"] == sum(
        run["train_seconds"] for run in mode["runs"]) / len(mode["runs"])
    assert mode["runs"][0]["train_steps"] == 3
    assert os.path.isdir(mode["export"])  # first seed only
    assert mode["runs"][1:] == [] or mode["runs"][1]["export"] is None
  summary = saved["speed"]["summary"]
  assert set(summary) == {"teacher", "1-distill", "1-gold", "hf-peer"}
  for figures in summary.values():
    assert figures["p50_ms"] > 0 and figures["sentences_per_s"] > 0
  assert saved["speed"]["rounds"][0]["order"] == [
      "teacher", "1-distill", "1-gold", "hf-peer"]
  assert saved["hf_layers"] == 2 and isinstance(saved["cpu_flags"], list)
  assert len(saved["loadavg_start"]) == 3 and saved["machine"]
  assert saved["command"].startswith("python -m bench.distill --quick")
  assert [line.split(":")[0] for line in saved["checks"]] == [
      "1-distill F1 within 0.8 of teacher", "1-distill >= 1-gold + 0.5",
      "1-distill p50 <= 0.6x teacher", "1-distill throughput >= 1.7x teacher",
      "1-distill vs HF 2-layer"]
  page = (results / "distill_quick.md").read_text()
  assert saved["table"] in page and saved["table"] in completed.stdout
  assert all(f"- {line}" in page for line in saved["checks"])
