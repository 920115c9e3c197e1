"""The report of `bench.distill`: the results table and the issue's checks.

Pure Python (no TensorFlow): `markdown` and `check_lines` read the modes
(`bench.conll2003.aggregate` results) and the speed summary
(`bench.distill_speed.speed_summary`: {model: {"p50_ms", "p99_ms",
"sentences_per_s", ...}}).

    check_lines(modes, speed, 3)
    -> ["3-distill F1 within 0.8 of teacher: yes (delta -0.31 points; std
        0.20 vs 0.25)", ...]
"""

TEACHER = "teacher"
HF_PEER = "hf-peer"
# Test F1 of the PyTorch + HF Trainer run of the same recipe (bench/README.md,
# "Reference recipes"); not measured by bench.distill.
HF_REFERENCE_TEST_F1 = 0.849
# The targets: F1 in points (x100), speed as ratios.
TARGETS = dict(within_teacher_points=0.8, over_gold_points=0.5,
               p50_ratio=0.6, throughput_ratio=1.7, vs_hf_speedup=1.5,
               below_hf_points=0.5)


def _ratio(speed, name, other, key):
  """speed[name][key] / speed[other][key], or None if either is missing."""
  value = speed.get(name, {}).get(key)
  base = speed.get(other, {}).get(key)
  return value / base if value and base else None


def _test_f1(mode):
  spread = (mode or {}).get("spread", {}).get("test_f1")
  return (spread["mean"], spread["std"]) if spread else (None, None)


def _yes(condition):
  return "yes" if condition else "no"


def _ratio_line(label, ratio, passed):
  """"label: yes (0.54x)", or "label: not measured" without a ratio."""
  if ratio is None:
    return f"{label}: not measured"
  return f"{label}: {_yes(passed)} ({ratio:.2f}x)"


def check_lines(modes, speed, layers, hf_layers=6):
  """The issue's checks for the `layers`-layer students, one line each.

  Args:
    modes: {mode: `conll2003.aggregate` result}, "teacher" among them.
    speed: {model: {"p50_ms", "sentences_per_s", ...}}, `HF_PEER` among
      them (`distill_speed.speed_summary`).
    layers: the students' layer count, e.g. 3 for "3-distill".
    hf_layers: the HF peer's layer count (its label).

  F1 differences are in points (F1 x 100); compare them with the stds
  given (a difference smaller than the spread is no difference). A figure
  missing on either side makes its line "not measured".

  Example (teacher 0.860, 3-distill 0.855, 3-gold 0.845, one seed each):
  "3-distill F1 within 0.8 of teacher: yes (delta -0.50 points; std 0.00 vs
  0.00)" and "3-distill >= 3-gold + 0.5: yes (delta +1.00 points; ...)".
  """
  distill, gold = f"{layers}-distill", f"{layers}-gold"
  f1 = {name: _test_f1(modes.get(name)) for name in (TEACHER, distill, gold)}
  lines = []
  for other, target, label in (
      (TEACHER, -TARGETS["within_teacher_points"],
       f"{distill} F1 within {TARGETS['within_teacher_points']} of teacher"),
      (gold, TARGETS["over_gold_points"],
       f"{distill} >= {gold} + {TARGETS['over_gold_points']}")):
    if f1[distill][0] is None or f1[other][0] is None:
      lines.append(f"{label}: not measured")
      continue
    delta = round(100 * (f1[distill][0] - f1[other][0]), 6)
    lines.append(f"{label}: {_yes(delta >= target)} (delta {delta:+.2f} "
                 f"points; std {100 * f1[distill][1]:.2f} vs "
                 f"{100 * f1[other][1]:.2f})")
  p50 = _ratio(speed, distill, TEACHER, "p50_ms")
  lines.append(_ratio_line(
      f"{distill} p50 <= {TARGETS['p50_ratio']}x teacher", p50,
      p50 is not None and p50 <= TARGETS["p50_ratio"]))
  throughput = _ratio(speed, distill, TEACHER, "sentences_per_s")
  lines.append(_ratio_line(
      f"{distill} throughput >= {TARGETS['throughput_ratio']}x teacher",
      throughput,
      throughput is not None and throughput >= TARGETS["throughput_ratio"]))
  faster = _ratio(speed, HF_PEER, distill, "p50_ms")
  more = _ratio(speed, distill, HF_PEER, "sentences_per_s")
  label = (f"{distill} vs HF {hf_layers}-layer: p50 and throughput >= "
           f"{TARGETS['vs_hf_speedup']}x better, F1 >= "
           f"{HF_REFERENCE_TEST_F1} - {TARGETS['below_hf_points']} points")
  if not (faster and more and f1[distill][0] is not None):
    return lines + [f"{label}: not measured"]
  floor = HF_REFERENCE_TEST_F1 - TARGETS["below_hf_points"] / 100
  passed = (min(faster, more) >= TARGETS["vs_hf_speedup"] and
            f1[distill][0] >= floor)
  return lines + [f"{label}: {_yes(passed)} (p50 {faster:.2f}x, throughput "
                  f"{more:.2f}x, test F1 {f1[distill][0]:.4f} vs reference "
                  f"{HF_REFERENCE_TEST_F1})"]


def _cell(value, pattern):
  return "-" if value is None else pattern % value


def markdown(modes, speed, hf_layers=6):
  """The results table: a row per mode, then the HF peer (its F1 is the
  reference figure, marked as not measured here)."""
  lines = ["| mode | layers | test F1 mean ± std (n) | dev F1 | train s | "
           "p50 ms | p99 ms | batch sent/s | p50 vs teacher | "
           "throughput vs teacher |", "| --- " * 10 + "|"]
  for name, mode in list(modes.items()) + [(HF_PEER, None)]:
    figures = speed.get(name, {})
    if mode is None:
      f1_cells = [f"{HF_REFERENCE_TEST_F1} (earlier run, not measured here)",
                  "-", "-"]
    elif "spread" not in mode:
      f1_cells = [f"failed ({len(mode['failed_runs'])} runs)", "-", "-"]
    else:
      test, dev = mode["spread"]["test_f1"], mode["spread"]["dev_f1"]
      f1_cells = ["%.4f ± %.4f (%d)" % (test["mean"], test["std"], test["n"]),
                  "%.4f" % dev["mean"], "%.0f" % mode["train_seconds"]]
    lines.append("| " + " | ".join(
        [name, str(mode["layers"] if mode else hf_layers)] + f1_cells + [
            _cell(figures.get("p50_ms"), "%.2f"),
            _cell(figures.get("p99_ms"), "%.2f"),
            _cell(figures.get("sentences_per_s"), "%.1f"),
            _cell(_ratio(speed, name, TEACHER, "p50_ms"), "%.2fx"),
            _cell(_ratio(speed, name, TEACHER, "sentences_per_s"), "%.2fx")])
        + " |")
  return "\n".join(lines) + "\n"


def markdown_page(result):
  """distill.md: the command, the machine, the table, the checks, failures.

  `result` is distill.json's content ("command", "machine", "loadavg_start",
  "loadavg_end", "table", "checks", "modes", "speed").
  """
  failures = [f"- {run['mode']} seed {run['seed']} failed: "
              f"{run['error'].splitlines()[0]}"
              for mode in result["modes"].values()
              for run in mode["failed_runs"]]
  failures += [f"- {name} speed not measured: "
               f"{figures['error'].splitlines()[0]}"
               for name, figures in result["speed"]["summary"].items()
               if "error" in figures]
  return "\n".join(
      ["# Distillation on CoNLL-2003", "", f"`{result['command']}`", "",
       f"{result['machine']}; load average (1 min) "
       f"{result['loadavg_start'][0]:.1f} at the start, "
       f"{result['loadavg_end'][0]:.1f} at the end.", "",
       result["table"], "Checks (F1 in points; speed from the medians):", ""]
      + [f"- {line}" for line in result["checks"]]
      + ([""] + failures if failures else [])) + "\n"

