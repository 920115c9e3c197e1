"""Where one full fine-tuning training step spends its op time.

    python -m bench.step_profile                      # MiniLM size, length 64
    python -m bench.step_profile --config tiny --length 8 --runs 1

Builds what `--nofreeze_bert` trains: `bert.modeling.BertModel` with its
dropout, `trainer.model.fused_ops` as installed by the trainer, a dense tag
layer and the trainer's own `optimization.create_train_op` (AdamW with decoupled
decay through fused kernels, global-norm clipping). Random ids, batch x
length tokens, no padding. After warm-up steps it times `--runs` steps, then
traces one with `RunOptions.FULL_TRACE` and sums each executed node's wall
time by op type and by part of the model (`part_of`).

Op times overlap (independent ops run side by side on the inter-op pool), so
their sum exceeds the step time; the shares say where the work is, not how
long the step takes. Prints a JSON line and a markdown table; writes
`--output` (default bench/results/step_profile.json).
"""

# pylint: disable=import-outside-toplevel  (TensorFlow only where it runs)

import argparse
import collections
import json
import os
import re
import sys
import time
from typing import Dict, Iterable, List, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
from bench.op_profile import CONFIGS  # noqa: E402  (pure Python)
from trainer import cpu_features  # noqa: E402  (pure Python)

# Op types that multiply matrices (oneDNN, Eigen and XLA-free CPU names).
MATMUL_OPS = frozenset([
    "MatMul", "BatchMatMulV2", "Einsum", "_FusedMatMul", "_MklMatMul",
    "_MklNativeFusedMatMul", "_MklFusedMatMul", "_MklEinsum",
    "_MklBatchMatMulV2"])
OPTIMIZER_OPS = frozenset([
    "ResourceApplyAdam", "ResourceApplyGradientDescent", "ApplyAdam",
    "ApplyGradientDescent"])
# Parts in the order the table lists them.
PARTS = ("matmul", "dropout", "gelu", "layer_norm", "attention_softmax",
         "gradient_clip", "optimizer", "embeddings", "other")


def part_of(node_name: str, op_type: str) -> str:
  """The part of the model a traced node belongs to.

  Example:
    part_of("gradients/bert/encoder/layer_0/output/MatMul_grad/MatMul",
            "_MklMatMul") -> "matmul"
    part_of("bert/encoder/layer_3/attention/output/dropout/random_uniform/"
            "RandomUniform", "RandomUniform") -> "dropout"
  """
  if op_type in MATMUL_OPS:
    return "matmul"
  if op_type in OPTIMIZER_OPS or node_name.startswith("AdamWeightDecay"):
    return "optimizer"  # the fused kernels, or lazy rows' gathers/scatters
  for pattern, part in ((r"/dropout", "dropout"),
                        (r"global_norm|clip_by_global_norm|L2Loss",
                         "gradient_clip"),
                        (r"LayerNorm", "layer_norm"),
                        (r"intermediate/", "gelu"),
                        (r"attention/self/", "attention_softmax"),
                        (r"embeddings/", "embeddings")):
    if re.search(pattern, node_name) or re.search(pattern, op_type):
      return part
  return "other"


def shares(nodes: Iterable[Tuple[str, str, float]]
           ) -> Dict[str, Dict[str, Dict[str, float]]]:
  """{"by_part"|"by_op": {name: {"ms", "share", "nodes"}}} of traced nodes.

  Args:
    nodes: (node name, op type, wall microseconds) of every executed node.

  Example:
    shares([("a/MatMul", "MatMul", 3000.0), ("a/dropout/Mul", "Mul", 1000.0)])
    -> {"by_part": {"matmul": {"ms": 3.0, "share": 0.75, "nodes": 1},
                    "dropout": {"ms": 1.0, "share": 0.25, "nodes": 1}},
        "by_op": {"MatMul": {"ms": 3.0, "share": 0.75, "nodes": 1},
                  "Mul": {"ms": 1.0, "share": 0.25, "nodes": 1}}}
  """
  micros = {"by_part": collections.Counter(), "by_op": collections.Counter()}
  counts = {"by_part": collections.Counter(), "by_op": collections.Counter()}
  total = 0.0
  for name, op_type, duration in nodes:
    for table, key in (("by_part", part_of(name, op_type)),
                       ("by_op", op_type)):
      micros[table][key] += duration
      counts[table][key] += 1
    total += duration
  return {table: {key: {"ms": round(value / 1000.0, 3),
                        "share": round(value / total, 4) if total else 0.0,
                        "nodes": counts[table][key]}
                  for key, value in micros[table].most_common()}
          for table in micros}


def traced_nodes(run_metadata) -> List[Tuple[str, str, float]]:
  """(node name, op type, wall microseconds) of a FULL_TRACE step."""
  nodes = []
  for device in run_metadata.step_stats.dev_stats:
    for stats in device.node_stats:
      label = stats.timeline_label  # "name = OpType(inputs)"
      op_type = (label.split(" = ", 1)[1].split("(", 1)[0]
                 if " = " in label else stats.node_name)
      nodes.append((stats.node_name, op_type,
                    float(stats.all_end_rel_micros)))
  return nodes


def profile(config_name: str, batch: int, length: int, runs: int,
            warmup: int = 3, precision: str = "float32",
            sparse_embedding_updates: bool = False) -> Dict:
  """Times `runs` training steps and traces one; returns a JSON-able dict.

  `precision` "bfloat16" builds the encoder's products as `--use_bf16` does;
  `sparse_embedding_updates` updates only the looked-up embedding rows, as
  the flag of that name does.
  """
  import numpy as np
  import tensorflow as tf
  from trainer.model import fused_ops
  from trainer.model import optimization
  from trainer.tf_compat import modeling
  tf1 = tf.compat.v1
  tf1.disable_eager_execution()
  cpu_features.prefer_onednn()  # as train_lib.run does
  fused_ops.install(compute_dtype=tf.as_dtype(precision))
  bert_config = modeling.BertConfig(**CONFIGS[config_name])
  rng = np.random.RandomState(0)
  with tf.Graph().as_default():
    tf1.set_random_seed(1)
    ids = tf1.placeholder(tf.int32, [None, None], name="input_ids")
    model = modeling.BertModel(bert_config, is_training=True, input_ids=ids,
                               input_mask=tf.ones_like(ids))
    logits = tf1.layers.dense(model.get_sequence_output(), 9)
    loss = tf.reduce_mean(tf.square(logits))
    train_op = optimization.create_train_op(
        loss, tf1.trainable_variables(), 5e-5, 1000, 100,
        sparse_embedding_updates=sparse_embedding_updates)
    feed = {ids: rng.randint(1, bert_config.vocab_size, [batch, length])}
    metadata = tf1.RunMetadata()
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      for _ in range(warmup):
        session.run(train_op, feed)
      seconds = []
      for _ in range(runs):
        start = time.perf_counter()
        session.run(train_op, feed)
        seconds.append(time.perf_counter() - start)
      session.run(train_op, feed, run_metadata=metadata, options=(
          tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE)))
  nodes = traced_nodes(metadata)
  return dict(shares(nodes), config=config_name, batch=batch, length=length,
              precision=precision,
              sparse_embedding_updates=sparse_embedding_updates, runs=runs,
              step_seconds=round(float(np.median(seconds)), 4),
              traced_nodes=len(nodes),
              onednn=os.environ.get(cpu_features.ONEDNN_ENV),
              cpu=cpu_features.cpu_model_name(),
              load_average=list(os.getloadavg()))


def markdown(result: Dict) -> str:
  """Markdown table of the parts, in `PARTS` order."""
  lines = ["| part | op ms | share | nodes |", "| --- | --- | --- | --- |"]
  for part in PARTS:
    row = result["by_part"].get(part)
    if row:
      lines.append(f"| {part} | {row['ms']:.1f} | {100 * row['share']:.1f}% "
                   f"| {row['nodes']} |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m bench.step_profile",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", choices=sorted(CONFIGS), default="minilm")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--runs", type=int, default=5,
                      help="timed steps (median reported), >= 1.")
  parser.add_argument("--precision", choices=("float32", "bfloat16"),
                      default="float32",
                      help="the encoder's compute dtype (bfloat16: as "
                      "--use_bf16 trains).")
  parser.add_argument("--sparse_embedding_updates", action="store_true",
                      help="lazy AdamW on the looked-up embedding rows "
                      "(as the trainer's flag of that name).")
  parser.add_argument("--output", default=os.path.join(
      REPO_ROOT, "bench", "results", "step_profile.json"))
  args = parser.parse_args(argv)
  if min(args.batch, args.length, args.runs) < 1:
    parser.error("--batch, --length and --runs must be >= 1.")
  result = profile(args.config, args.batch, args.length, args.runs,
                   precision=args.precision,
                   sparse_embedding_updates=args.sparse_embedding_updates)
  result["command"] = " ".join(["python -m bench.step_profile"] +
                               list(sys.argv[1:] if argv is None else argv))
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output, "w", encoding="utf-8") as writer:
    json.dump(result, writer, indent=2)
  print(json.dumps({k: result[k] for k in ("step_seconds", "traced_nodes",
                                           "load_average")}))
  print(markdown(result))


if __name__ == "__main__":
  main()
