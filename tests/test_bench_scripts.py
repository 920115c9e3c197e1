"""The benchmarks' pure parts, and bench/gpu_check.sh's dry run on CPU."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from bench import hf_peer
from bench import vs_pytorch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("fraction, expected", [
    (0.5, 3), (0.99, 5), (1.0, 5), (0.2, 1), (0.01, 1)])
def test_percentile_is_nearest_rank(fraction, expected):
  assert vs_pytorch.percentile([5, 1, 4, 2, 3], fraction) == expected


def test_steady_rate_and_train_result():
  assert vs_pytorch.steady_rate([10.0, 12.0, 14.0], 32) == 16.0
  with pytest.raises(ValueError, match="at least 2 timed steps"):
    vs_pytorch.steady_rate([1.0], 32)
  assert vs_pytorch.train_result([0.0, 2.0, 4.0], 48, 64) == {
      "timed_steps": 2, "seconds_per_step": 2.0,
      "sentences_per_second": 16.0, "real_pieces_per_second": 12.0,
      "padding_fraction": 0.25}
  assert vs_pytorch.train_result([0.0, 1.0]) == {
      "timed_steps": 1, "seconds_per_step": 1.0,
      "sentences_per_second": 32.0}


def test_predict_and_latency_results():
  assert vs_pytorch.predict_result(96, 0.0, 4.0, [1.0, 2.0, 3.0, 4.0]) == {
      "sentences": 96, "seconds": 4.0, "sentences_per_second": 24.0,
      "steady_sentences_per_second": 32.0}
  assert "steady_sentences_per_second" not in vs_pytorch.predict_result(
      40, 0.0, 2.0, [1.0, 2.0])
  assert vs_pytorch.latency_result([float(v) for v in range(1, 101)]) == {
      "requests": 100, "p50_ms": 50.0, "p99_ms": 99.0}


def test_conll_round_trip(tmp_path):
  path = str(tmp_path / "data.txt")
  vs_pytorch.write_conll(path, [["EU", "rejects"], ["Peter"]],
                         [["B-ORG", "O"], ["B-PER"]])
  with open(path, encoding="utf-8") as reader:
    assert reader.read() == "EU X X B-ORG\nrejects X X O\n\nPeter X X B-PER\n\n"
  assert vs_pytorch.read_conll(path) == ([["EU", "rejects"], ["Peter"]],
                                         [["B-ORG", "O"], ["B-PER"]])
  assert vs_pytorch.read_conll(path, limit=1) == ([["EU", "rejects"]],
                                                  [["B-ORG", "O"]])


def test_first_piece_labels():
  assert hf_peer.first_piece_labels([None, 0, 0, 1, None], [3, 5]) == [
      -100, 3, -100, 5, -100]
  assert hf_peer.first_piece_labels([None, 0, 1, 1, None]) == [
      -100, 0, 0, -100, -100]


def test_measurements_in_run_order():
  settings = dict(vs_pytorch.QUICK, fixed_lengths=[16, 32])
  assert vs_pytorch.measurements(settings) == [
      ("train", {"steps": 3}), ("fixed", {"steps": 2, "fixed_length": 16}),
      ("fixed", {"steps": 2, "fixed_length": 32}), ("predict", {}),
      ("latency", {})]
  assert vs_pytorch.measurements(settings, ("fixed", "latency")) == [
      ("fixed", {"steps": 2, "fixed_length": 16}),
      ("fixed", {"steps": 2, "fixed_length": 32}), ("latency", {})]


def _run(framework, measure, value, load, length=None):
  metric = {"train": "sentences_per_second", "fixed": "seconds_per_step",
            "latency": "p50_ms"}[measure]
  return {"framework": framework, "measure": measure, "fixed_length": length,
          metric: value, "loadavg_start": [load, 0, 0],
          "loadavg_end": [load + 0.5, 0, 0]}


def test_summary_medians_speedups_and_table():
  settings = dict(vs_pytorch.QUICK, fixed_lengths=[16])
  runs = [_run("ours", "train", 90.0, 1.0), _run("ours", "train", 80.0, 1.2),
          _run("ours", "train", 100.0, 1.1), _run("hf", "train", 60.0, 2.0),
          _run("ours", "fixed", 0.2, 1.0, 16),
          _run("hf", "fixed", 0.3, 1.0, 16),
          _run("ours", "latency", 4.0, 1.5)]
  summary = vs_pytorch.summarize(runs, settings)
  # Rows nothing measured (word-pieces/s, predict, p99) are left out.
  assert [row["figure"] for row in summary] == [
      "training, steady state, sentences/s", "s/step at fixed length 16",
      "one sentence in process, p50 ms"]
  train, fixed, latency = summary
  assert train["ours"] == {"median": 90.0, "values": [90.0, 80.0, 100.0],
                           "loadavg_1min": [1.0, 1.7]}
  assert train["ours_speedup"] == 1.5
  assert fixed["ours_speedup"] == pytest.approx(1.5)  # lower is better
  assert latency["hf"]["median"] is None and latency["ours_speedup"] is None
  assert vs_pytorch.markdown_table(summary).splitlines() == [
      "| workload | this project | HF transformers, length-grouped | "
      "ours faster by | load avg (1 min) |",
      "| --- | --- | --- | --- | --- |",
      "| training, steady state, sentences/s | 90 (80-100) | 60 | 1.50x | "
      "1.0-2.5 |",
      "| s/step at fixed length 16 | 0.2 | 0.3 | 1.50x | 1.0-1.5 |",
      "| one sentence in process, p50 ms | 4 | n/a | n/a | 1.5-2.0 |"]


def test_parse_args_lists_and_errors(capsys):
  args = vs_pytorch.parse_args(["--frameworks", "ours", "--measures",
                                "train,fixed", "--fixed_lengths", "16,128"])
  assert args.frameworks == ("ours",)
  assert args.measures == ("train", "fixed")
  assert args.fixed_lengths == [16, 128]
  assert vs_pytorch.parse_args([]).frameworks == ("ours", "hf")
  with pytest.raises(SystemExit):
    vs_pytorch.parse_args(["--measures", "train,speed"])
  assert "use comma-separated names from train, fixed, predict, latency" in (
      capsys.readouterr().err)


def test_children_run_in_their_own_modules():
  assert vs_pytorch.CHILD_MODULES == {"ours": "bench.ours_side",
                                      "hf": "bench.hf_peer"}
  assert set(hf_peer.MEASUREMENTS) == {"train", "predict", "latency"}
  # The parent and our side never import torch or transformers.
  code = ("import sys; import bench.vs_pytorch, bench.hf_peer, "
          "bench.ours_side; print(sorted(m for m in ('torch', 'transformers',"
          " 'tensorflow') if m in sys.modules))")
  output = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                          check=True, capture_output=True, text=True)
  assert output.stdout.strip() == "[]"


# The bench's tiny BERT: tests.tiny_bert's, narrower, with 128 positions.
_TINY_BERT = {"hidden_size": 16, "intermediate_size": 24,
              "max_position_embeddings": 128}
_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "eu", "rejects",
          "german", "call", "to", "boycott", "british", "lamb", "peter", "."]
_SENTENCES = [(["EU", "rejects", "German", "call", "."],
               ["B-ORG", "O", "B-MISC", "O", "O"]),
              (["Peter", "to", "boycott", "British", "lamb", "."],
               ["B-PER", "O", "O", "B-MISC", "O", "O"])]


def _tiny_checkpoint_and_data(tmp_path):
  """A Google-layout tiny BERT checkpoint and a CoNLL folder."""
  from tests.tiny_bert import write_checkpoint_dir  # pylint: disable=C0415
  checkpoint_dir = tmp_path / "ckpt"
  checkpoint_dir.mkdir()
  write_checkpoint_dir(checkpoint_dir, _VOCAB, **_TINY_BERT)
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  for split in ("train", "test"):
    vs_pytorch.write_conll(str(data_dir / f"{split}.txt"),
                           [words for words, _ in _SENTENCES * 8],
                           [tags for _, tags in _SENTENCES * 8])
  return str(checkpoint_dir), str(data_dir)


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_setting(tmp_path):
  # 6 trainer subprocesses (3 settings x bucketed + fixed length): 1.5-2.5
  # minutes on 2 busy cores, hence slow.
  checkpoint_dir, data_dir = _tiny_checkpoint_and_data(tmp_path)
  output = tmp_path / "gpu_check.json"
  subprocess.run(
      ["bash", os.path.join(REPO_ROOT, "bench", "gpu_check.sh"), "--dry_run",
       "--checkpoint_dir", checkpoint_dir, "--data_dir", data_dir,
       "--work_dir", str(tmp_path / "work"), "--output", str(output)],
      cwd=REPO_ROOT, check=True, capture_output=True, text=True,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  check = json.loads(output.read_text())
  assert check["gpu"] == "none (--dry_run on CPU)" and check["dry_run"]
  assert list(check["settings"]) == ["fp32", "amp", "amp_xla"]
  assert [s["ours_config"] for s in check["settings"].values()] == [
      {}, {"use_amp": True}, {"use_amp": True, "use_xla": True}]
  for setting in check["settings"].values():
    assert setting["train_sentences_per_second"] > 0
    assert setting["seconds_per_step_length_16"] > 0
    assert len(setting["train_sentences_per_second_loadavg_1min"]) == 2
    assert [run["measure"] for run in setting["runs"]] == ["train", "fixed"]
    assert [run["timed_steps"] for run in setting["runs"]] == [2, 2]
  assert check["settings"]["fp32"]["train_speedup_over_fp32"] == 1.0


def _gpu_check(*arguments, path=None):
  environment = dict(os.environ)
  if path is not None:
    environment["PATH"] = path
  return subprocess.run([shutil.which("bash"),
                         os.path.join(REPO_ROOT, "bench", "gpu_check.sh"),
                         *arguments],
                        cwd=REPO_ROOT, capture_output=True, text=True,
                        env=environment, check=False)


def test_gpu_check_refuses_unknown_options_and_a_missing_gpu(tmp_path):
  unknown = _gpu_check("--steps", "3")
  assert unknown.returncode == 2
  assert "unknown option --steps" in unknown.stderr
  # No nvidia-smi on PATH (only bash's own tools): no GPU, nothing started.
  tools = tmp_path / "bin"
  tools.mkdir()
  for tool in ("dirname", "head"):
    (tools / tool).symlink_to(shutil.which(tool))
  no_gpu = _gpu_check(path=str(tools))
  assert no_gpu.returncode == 1
  assert "no GPU (nvidia-smi failed); use --dry_run on CPU" in no_gpu.stderr


def test_conll_modes_inherit_from_the_longest_known_name():
  from bench import conll2003  # pylint: disable=g-import-not-at-top
  assert conll2003.parse_mode("full") == ("full", conll2003.MODES["full"])
  name, settings = conll2003.parse_mode(
      'full-crf-ctx32:head="crf";context_pieces=32')
  assert name == "full-crf-ctx32"
  assert settings == {"freeze_bert": False, "learning_rate": 5e-5,
                      "num_train_epochs": 3.0, "head": "crf",
                      "context_pieces": 32}
  name, settings = conll2003.parse_mode(
      "frozen-last4concat-bilstm_crf-lstm1:lstm_layers=1")
  assert settings["bert_layers"] == [-4, -3, -2, -1]
  assert settings["lstm_layers"] == 1
  with pytest.raises(ValueError, match="Unknown mode 'fast'"):
    conll2003.parse_mode("fast")


def test_conll_train_feature_sizes_sum_the_train_sidecars(tmp_path):
  from bench import conll2003  # pylint: disable=g-import-not-at-top
  assert conll2003.train_feature_sizes(str(tmp_path)) == (None, None)
  cache = tmp_path / "cache"
  cache.mkdir()
  sidecars = {"train-aa.tfrecord.json": {"5": 2, "7": 1},
              "train-bb.tfrecord.json": {"3": 4},
              "dev-cc.tfrecord.json": {"9": 100}}  # not training: ignored
  for name, histogram in sidecars.items():
    (cache / name).write_text(json.dumps(
        {"num_windows": sum(histogram.values()),
         "length_histogram": histogram}))
    (cache / name[:-len(".json")]).write_bytes(b"")  # the feature file
  assert conll2003.train_feature_sizes(str(tmp_path)) == (7, 5 * 2 + 7 + 12)


def test_conll_table_only_rewrites_the_markdown_from_json(tmp_path):
  from bench import conll2003  # pylint: disable=g-import-not-at-top
  scores = {"precision": 0.5, "recall": 0.25, "f1": 1 / 3,
            "per_type_f1": {"PER": 0.4, "LOC": 0.2}}
  base = dict(settings={"head": "crf"}, dev=scores, test=scores,
              train_seconds=100.0, train_sentences_per_second=42.0)
  (tmp_path / "conll2003_b.json").write_text(json.dumps(dict(
      base, mode="b", train_pieces_per_second=1234.4,
      seconds_per_epoch_after_first=30.0)))
  (tmp_path / "conll2003_a.json").write_text(json.dumps(dict(base, mode="a")))
  (tmp_path / "other.json").write_text("not a result")
  table = conll2003.write_table(str(tmp_path))
  rows = table.splitlines()
  assert len(rows) == 4 and rows[0].count("|") == 17
  assert "| train pieces/s |" in rows[0]
  cells = [cell.strip() for cell in rows[2].split("|")[1:-1]]
  assert cells == ["a", '{"head": "crf"}', "0.5000", "0.2500", "0.3333",
                   "0.5000", "0.2500", "0.3333", "LOC 0.200, PER 0.400",
                   "100", "42.0", "-", "-", "-", "-", "-"]
  assert rows[3].split("|")[12:14] == [" 1234 ", " 30.0 "]
  assert (tmp_path / "conll2003.md").read_text() == (
      conll2003.TABLE_TITLE + table)


def test_padding_layouts_parse_and_refuse_bad_entries():
  from bench import padding  # pylint: disable=g-import-not-at-top
  assert padding.parse_layouts("a:8:8,b:32:2") == [("a", 8, 8), ("b", 32, 2)]
  with pytest.raises(ValueError, match="'b:32' is not NAME:NUM_BUCKETS"):
    padding.parse_layouts("a:8:8,b:32")


def test_padding_counts_one_epoch_of_real_batches(tmp_path):
  from bench import padding  # pylint: disable=g-import-not-at-top
  from tests.tiny_bert import write_model_files  # pylint: disable=C0415
  data = tmp_path / "train.txt"
  # Windows of 2 + words pieces: lengths 3 (x4), 5 (x2) and 9 (x2).
  sentences = [["eu"]] * 4 + [["eu", "call", "."]] * 2 + [["peter"] * 7] * 2
  vs_pytorch.write_conll(str(data), sentences,
                         [["O"] * len(words) for words in sentences])
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "eu", "call", ".", "peter"]
  write_model_files(tmp_path, vocab, **_TINY_BERT)
  result = padding.main([
      "--data_file", str(data), "--checkpoint_dir", str(tmp_path),
      "--batch_size",
      "2", "--layouts", "one:1:1,exact:3:1", "--results_dir",
      str(tmp_path / "out")])
  one, exact = result["rows"]
  assert result["windows"] == 8
  # One bucket: every batch padded to its longest, which the shuffle
  # decides; three exact buckets: no padding at all.
  assert one["boundaries"] == [] and 0 < one["measured_padding"] <= 1 - 34 / 72
  assert exact["boundaries"] == [4, 6] and exact["measured_padding"] == 0.0
  assert exact["batches"] == 4 and exact["padding_bound"] == 0.0
  saved = json.loads((tmp_path / "out" / "padding.json").read_text())
  assert saved["rows"] == result["rows"]


def _stat(pid):
  """(state, parent pid) of a process from /proc/<pid>/stat, or None."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as reader:
      fields = reader.read().rsplit(")", 1)[1].split()
  except OSError:  # gone
    return None
  return fields[0], int(fields[1])


def _alive(pid):
  stat = _stat(pid)
  return stat is not None and stat[0] != "Z"


def _children(pid):
  """Live pids whose parent is `pid` (Linux /proc)."""
  stats = {int(entry): _stat(entry) for entry in os.listdir("/proc")
           if entry.isdigit()}
  return [child for child, stat in stats.items()
          if stat is not None and stat[0] != "Z" and stat[1] == pid]


def _cmdline(pid):
  try:
    with open(f"/proc/{pid}/cmdline", "rb") as reader:
      return reader.read().decode("utf-8", "replace")
  except OSError:
    return ""


def _terminate_parent_and_find_orphans(parent_code, is_child):
  """Starts `python -c parent_code`, SIGTERMs it once it has a child.

  Args:
    parent_code: str, Python that starts a child through bench.children.
    is_child: cmdline -> bool, which children of the parent to wait for.

  Returns:
    (the parent's exit code, the pids of its children still alive 15 s
    after it exited).
  """
  parent = subprocess.Popen([sys.executable, "-c", parent_code],
                            cwd=REPO_ROOT)
  children = []
  try:
    deadline = time.time() + 60
    while time.time() < deadline and not any(
        is_child(_cmdline(pid)) for pid in children):
      time.sleep(0.1)
      children = _children(parent.pid)
    assert any(is_child(_cmdline(pid)) for pid in children), children
    parent.send_signal(signal.SIGTERM)
    code = parent.wait(timeout=30)
    deadline = time.time() + 15
    while time.time() < deadline and any(map(_alive, children)):
      time.sleep(0.1)
    return code, [pid for pid in children if _alive(pid)]
  finally:
    parent.kill()
    for pid in children:
      if _alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_fresh_process_worker_ends_with_a_terminated_parent():
  from bench import children  # pylint: disable=g-import-not-at-top
  assert children.run_in_fresh_process(max, 1, 2) == 2
  code, orphans = _terminate_parent_and_find_orphans(
      "import time\nfrom bench import children\n"
      "children.run_in_fresh_process(time.sleep, 120)",
      lambda cmdline: "spawn_main" in cmdline)
  assert not orphans  # the pool was terminated on the way out
  assert code == 128 + signal.SIGTERM


_SLEEPING_CHILD = "import time; time.sleep(120)"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
@pytest.mark.parametrize("parent_code, child_marker", [
    # The helper itself, with a child that sleeps.
    ("import sys\nfrom bench import children\n"
     f"children.run_child([sys.executable, '-c', {_SLEEPING_CHILD!r}])",
     _SLEEPING_CHILD),
    # op_profile's measurement child (TensorFlow import, then 10^6 runs).
    ("import argparse\nfrom bench import op_profile\n"
     "op_profile.run_setting(argparse.Namespace(config='tiny', batch=1, "
     "length=4, runs=10**6), False, False, False, False)",
     "bench.op_profile\0--child"),
], ids=["run_child", "op_profile"])
def test_run_child_ends_the_child_with_a_terminated_parent(parent_code,
                                                          child_marker):
  code, orphans = _terminate_parent_and_find_orphans(
      parent_code, lambda cmdline: child_marker in cmdline)
  assert not orphans, "the child outlived its SIGTERMed parent"
  assert code == 128 + signal.SIGTERM


def test_sigterm_handler_is_restored_after_the_children():
  from bench import children  # pylint: disable=g-import-not-at-top
  previous = signal.getsignal(signal.SIGTERM)
  assert children.run_child([sys.executable, "-c", "print(2 + 3)"],
                            capture_output=True, text=True,
                            check=True).stdout == "5\n"
  assert children.run_in_fresh_process(max, 1, 2) == 2
  assert signal.getsignal(signal.SIGTERM) is previous
  with children.sigterm_as_system_exit():
    with pytest.raises(SystemExit) as stop:
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(5)  # the handler raises before this ends
  assert stop.value.code == 128 + signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) is previous


class _Recorder:
  """Stands in for `children.run_child`; records each command."""

  def __init__(self, stdout):
    self.commands, self.stdout = [], stdout

  def __call__(self, command, **kwargs):
    self.commands.append(command)
    return subprocess.CompletedProcess(command, 0, self.stdout, "")


def test_bench_scripts_start_their_children_through_the_helper(monkeypatch):
  import argparse  # pylint: disable=g-import-not-at-top
  from bench import children  # pylint: disable=g-import-not-at-top
  from bench import op_profile  # pylint: disable=g-import-not-at-top
  recorder = _Recorder(vs_pytorch.RESULT_PREFIX + '{"p50_ms": 1.0}\n')
  monkeypatch.setattr(children, "run_child", recorder)
  result = vs_pytorch.launch({"framework": "hf", "measure": "latency"},
                             argparse.Namespace(onednn="default"))
  assert result["p50_ms"] == 1.0
  recorder.stdout = '{"ms": 2.0}\n'
  assert op_profile.run_setting(argparse.Namespace(
      config="tiny", batch=1, length=4, runs=1), False, False, False,
      False) == {"ms": 2.0}
  assert [command[1:4] for command in recorder.commands] == [
      ["-m", "bench.hf_peer", "--child"], ["-m", "bench.op_profile",
                                           "--child"]]
  # No bench script starts a child any other way (one copy of the rule).
  bench_dir = os.path.join(REPO_ROOT, "bench")
  for name in sorted(os.listdir(bench_dir)):
    if name.endswith(".py") and name != "children.py":
      with open(os.path.join(bench_dir, name), encoding="utf-8") as reader:
        source = reader.read()
      for call in ("subprocess.run(", "subprocess.Popen(", ".Pool(",
                   "signal.signal("):
        assert call not in source, (name, call)


@pytest.mark.parametrize("name, op_type, part", [
    ("gradients/bert/encoder/layer_0/output/MatMul_grad/MatMul", "_MklMatMul",
     "matmul"),
    ("bert/encoder/layer_0/attention/self/einsum/Einsum", "_MklEinsum",
     "matmul"),
    ("bert/encoder/layer_3/attention/output/dropout/random_uniform/"
     "RandomUniform", "RandomUniform", "dropout"),
    ("gradients/bert/encoder/layer_1/intermediate/mul_3_grad/Mul", "Mul",
     "gelu"),
    ("bert/encoder/layer_1/output/LayerNorm/moments/mean", "Mean",
     "layer_norm"),
    ("clip_by_global_norm/mul_1", "Mul", "gradient_clip"),
    ("global_norm/L2Loss_7", "L2Loss", "gradient_clip"),
    ("AdamWeightDecay/update_bert/pooler/dense/kernel/ResourceApplyAdam",
     "ResourceApplyAdam", "optimizer"),
    ("AdamWeightDecayOptimizer/update_bert/embeddings/word_embeddings/"
     "ResourceScatterUpdate", "ResourceScatterUpdate", "optimizer"),
    ("bert/encoder/layer_2/attention/self/Softmax", "_MklSoftmax",
     "attention_softmax"),
    ("bert/embeddings/GatherV2", "GatherV2", "embeddings"),
    ("Mean", "Mean", "other")])
def test_step_profile_parts(name, op_type, part):
  from bench import step_profile  # pylint: disable=g-import-not-at-top
  assert step_profile.part_of(name, op_type) == part


def test_step_profile_shares_sum_by_part_and_op():
  from bench import step_profile  # pylint: disable=g-import-not-at-top
  result = step_profile.shares([
      ("a/MatMul", "MatMul", 3000.0), ("a/dropout/Mul", "Mul", 500.0),
      ("b/dropout/Mul", "Mul", 500.0)])
  assert result == {
      "by_part": {"matmul": {"ms": 3.0, "share": 0.75, "nodes": 1},
                  "dropout": {"ms": 1.0, "share": 0.25, "nodes": 2}},
      "by_op": {"MatMul": {"ms": 3.0, "share": 0.75, "nodes": 1},
                "Mul": {"ms": 1.0, "share": 0.25, "nodes": 2}}}
  assert step_profile.markdown(result) == (
      "| part | op ms | share | nodes |\n| --- | --- | --- | --- |\n"
      "| matmul | 3.0 | 75.0% | 1 |\n| dropout | 1.0 | 25.0% | 2 |")
  assert step_profile.shares([]) == {"by_part": {}, "by_op": {}}


@pytest.mark.parametrize("sparse", [False, True])
def test_step_profile_runs_a_tiny_training_step(tmp_path, sparse):
  output = tmp_path / "step.json"
  result = subprocess.run(
      [sys.executable, "-m", "bench.step_profile", "--config", "tiny",
       "--batch", "2", "--length", "8", "--runs", "1", "--output",
       str(output)] + (["--sparse_embedding_updates"] if sparse else []),
      cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  saved = json.loads(output.read_text())
  parts = saved["by_part"]
  # Every part of a fine-tuning step ran: dropout, GELU, layer norm, the
  # clip and the fused optimizer kernels: Adam for the 39 variables with a
  # gradient (41 less the unused pooler's 2), decoupled decay for the 16
  # kernels and embedding tables (no LayerNorm, no bias).
  assert {"matmul", "dropout", "gelu", "layer_norm", "gradient_clip",
          "optimizer"} <= set(parts)
  # With sparse updates the word-piece table is the one variable updated by
  # row: four scatters (weights, m, v, caught_up_to) instead of its decay
  # assignment and fused Adam kernel.
  assert saved["by_op"]["ResourceApplyAdam"]["nodes"] == 39 - sparse
  assert saved["by_op"]["AssignVariableOp"]["nodes"] == 16 - sparse
  assert "ResourceApplyGradientDescent" not in saved["by_op"]
  assert saved["by_op"].get("ResourceScatterUpdate", {}).get("nodes", 0) == (
      4 * sparse)
  assert saved["sparse_embedding_updates"] is sparse
  assert abs(sum(row["share"] for row in parts.values()) - 1.0) < 1e-3
  assert saved["command"].startswith("python -m bench.step_profile --config")
  assert "| matmul |" in result.stdout


def _seed_run(seed, dev_f1, test_f1, test_per, seconds):
  return {"mode": "full", "settings": {"seed": seed}, "seed": seed,
          "train_seconds": seconds, "train_sentences_per_second": 100.0,
          "train_pieces_per_second": None, "cache_build_seconds": None,
          "dev": {"precision": dev_f1, "recall": dev_f1, "f1": dev_f1,
                  "per_type_f1": {"PER": dev_f1}},
          "test": {"precision": 0.5, "recall": test_f1, "f1": test_f1,
                   "per_type_f1": {"LOC": test_per, "PER": 1.0}}}


def test_conll_seeds_aggregate_mean_and_spread_exactly():
  from bench import conll2003  # pylint: disable=g-import-not-at-top
  runs = [_seed_run(1, 0.5, 0.25, 0.0, 10.0),
          _seed_run(2, 0.75, 0.5, 0.5, 20.0),
          _seed_run(3, 1.0, 0.75, 1.0, 60.0)]
  result = conll2003.aggregate(runs)
  assert result["seeds"] == [1, 2, 3]
  assert result["dev"]["f1"] == 0.75 and result["test"]["f1"] == 0.5
  assert result["test"]["precision"] == 0.5
  assert result["spread"]["test_f1"] == {"mean": 0.5, "std": 0.25,
                                         "min": 0.25, "max": 0.75, "n": 3}
  assert result["spread"]["test_precision"]["std"] == 0.0
  assert result["test"]["per_type_f1"] == {"LOC": 0.5, "PER": 1.0}
  assert result["dev"]["per_type_f1"] == {"PER": 0.75}
  assert result["train_seconds"] == 30.0
  assert result["train_pieces_per_second"] is None  # not measured: kept
  assert "seed" not in result and result["runs"] == runs
  assert runs[0]["test"]["f1"] == 0.25  # the inputs are left as they were
  row = conll2003.markdown([result]).split("\n")[2]
  assert "| 0.7500 ± 0.2500 (3 seeds) |" in row
  assert "| 0.5000 ± 0.2500 (3 seeds) |" in row


def test_conll_spread_of_one_run_has_no_deviation():
  from bench import conll2003  # pylint: disable=g-import-not-at-top
  assert conll2003.spread([0.9]) == {"mean": 0.9, "std": 0.0, "min": 0.9,
                                     "max": 0.9, "n": 1}


def test_summary_compares_each_precision_and_the_best():
  settings = dict(vs_pytorch.QUICK, fixed_lengths=[16])
  runs = [_run("ours", "train", 150.0, 1.0), _run("hf", "train", 100.0, 1.0),
          dict(_run("ours", "train", 300.0, 1.0), precision="bfloat16"),
          dict(_run("hf", "train", 200.0, 1.0), precision="bfloat16"),
          _run("ours", "latency", 6.0, 1.0), _run("hf", "latency", 8.0, 1.0),
          dict(_run("ours", "latency", 8.0, 1.0), precision="bfloat16"),
          dict(_run("hf", "latency", 5.0, 1.0), precision="bfloat16")]
  train, latency = vs_pytorch.summarize(runs, settings)
  assert train["ours_speedup"] == 1.5 and train["ours_bf16_speedup"] == 1.5
  assert train["bf16_gain_ours"] == 2.0 and train["bf16_gain_hf"] == 2.0
  assert train["best_speedup"] == 1.5  # 300 vs 200 sentences/s
  # Latency: lower is better; our best is float32 (6 ms), HF's bf16 (5 ms).
  assert latency["best_speedup"] == pytest.approx(5.0 / 6.0)
  assert latency["bf16_gain_ours"] == 0.75
  assert vs_pytorch.markdown_table([train]).splitlines()[2] == (
      "| training, steady state, sentences/s | 150 | 300 | 100 | 200 | "
      "1.50x | 1.50x | 2.00x | 2.00x | 1.50x | 1.0-1.5 |")
  assert vs_pytorch.side_name("ours", "bfloat16") == "ours_bf16"
  assert vs_pytorch.parse_args(["--precisions", "float32,bfloat16"]
                               ).precisions == ("float32", "bfloat16")


def test_bf16_serving_token_agreement():
  from bench import bf16_serving  # pylint: disable=g-import-not-at-top
  assert bf16_serving.token_agreement([["O", "B-PER"], ["B-LOC"]],
                                      [["O", "O"], ["B-LOC"]]) == 2 / 3
  with pytest.raises(ValueError):  # a sentence tagged at another length
    bf16_serving.token_agreement([["O", "O"]], [["O"]])


def test_run_child_with_peak_memory_counts_the_childs_workers():
  from bench import children  # pylint: disable=g-import-not-at-top
  # A child that starts a grandchild holding 200 MB for a second.
  code = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
          "\"import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * "
          "len(b[::4096]); time.sleep(1.5); print('done')\"], check=True)")
  completed, peak = children.run_child_with_peak_memory(
      [sys.executable, "-c", code], interval_s=0.05)
  assert completed.returncode == 0 and completed.stdout == "done\n"
  assert 200 * 2**20 < peak < 400 * 2**20


def test_batch_tagging_worker_entries():
  from bench import batch_tagging  # pylint: disable=g-import-not-at-top
  assert batch_tagging.parse_workers("2") == (2, 0)
  assert batch_tagging.parse_workers("1x1") == (1, 1)
  for bad in ("0", "x", "2x0", "two"):
    with pytest.raises(ValueError, match=f"--workers entry '{bad}'"):
      batch_tagging.parse_workers(bad)
