"""Executed op types and step time of `bert.modeling.BertModel`, fused or not.

    python -m bench.op_profile                       # MiniLM size, all settings
    python -m bench.op_profile --config tiny --runs 3

For every combination of oneDNN on/off (``TF_ENABLE_ONEDNN_OPTS``, read once
per process, so each setting runs in its own subprocess),
`trainer.model.fused_ops` on/off and, optionally, oneDNN bfloat16 auto mixed
precision, it builds a BertModel in a `tf.compat.v1` Session and reports, for an
inference forward pass and for a training step (SGD on a squared-output loss):

  * the op types of the graph that actually ran (grappler's output, from
    `RunMetadata.partition_graphs`): total compute ops, fused MatMuls
    (``_FusedMatMul``, ``_MklNativeFusedMatMul``, ...) and their fused ops;
  * milliseconds per run (median of `--runs`), batch x length tokens;
  * the largest absolute difference of the forward output from the
    unfused float32 model on the same weights (same process, same seed).

Writes `bench/results/op_profile.json` and prints a markdown table.
"""

# Heavy frameworks are imported inside the functions that run in the
# measurement subprocesses, so the parent stays light.
# pylint: disable=import-outside-toplevel

import argparse
import collections
import json
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
from bench import children  # noqa: E402
from trainer import cpu_features  # noqa: E402  (pure Python)

# Model sizes: "minilm" is all-MiniLM-L6-v2's encoder.
CONFIGS = {
    "tiny": dict(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=64),
    "minilm": dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                   num_attention_heads=12, intermediate_size=1536),
}
# types_pb2.DT_BFLOAT16, without importing TensorFlow in the parent.
BFLOAT16_ENUM = 14
# Graph plumbing that is not computation.
NON_COMPUTE_OPS = frozenset([
    "_Arg", "_Retval", "Const", "NoOp", "Identity", "_Recv", "_Send",
    "VarHandleOp", "VariableV2", "Placeholder", "_MklToTf", "_HostRecv",
    "_HostSend"])


def count_ops(partition_graphs):
  """{op type: count} of computing nodes, and the fused-op attributes.

  Args:
    partition_graphs: `GraphDef`s from `RunMetadata.partition_graphs`.

  Returns:
    (Counter of op type -> nodes, Counter of "Op[fused_ops]" -> nodes for
    every node carrying a `fused_ops` attribute, Counter of op type -> nodes
    computing in bfloat16, i.e. with T=bfloat16).
  """
  ops = collections.Counter()
  fused = collections.Counter()
  bfloat16 = collections.Counter()
  for graph in partition_graphs:
    for node in graph.node:
      if node.op in NON_COMPUTE_OPS:
        continue
      ops[node.op] += 1
      if "fused_ops" in node.attr:
        names = [s.decode() for s in node.attr["fused_ops"].list.s]
        fused["%s[%s]" % (node.op, ",".join(names))] += 1
      if node.attr["T"].type == BFLOAT16_ENUM:
        bfloat16[node.op] += 1
  return ops, fused, bfloat16


def _session_config(bf16):
  import tensorflow as tf
  from tensorflow.core.protobuf import rewriter_config_pb2
  proto = tf.compat.v1.ConfigProto()
  if bf16:
    proto.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
        rewriter_config_pb2.RewriterConfig.ON)
  return proto


def _build(config_name, fused, training, batch, length,
           fused_layer_norm=None):
  """Graph with BertModel (fused or not); returns (inputs, output, train_op)."""
  import numpy as np
  import tensorflow as tf
  from trainer.model import fused_ops
  from trainer.tf_compat import modeling
  tf1 = tf.compat.v1
  bert_config = modeling.BertConfig(hidden_dropout_prob=0.0,
                                    attention_probs_dropout_prob=0.0,
                                    **CONFIGS[config_name])
  ids = tf1.placeholder(tf.int32, [None, None], name="input_ids")
  mask = tf1.placeholder(tf.int32, [None, None], name="input_mask")
  tf1.set_random_seed(1)
  with fused_ops.enabled(fused, fused_layer_norm=fused_layer_norm):
    model = modeling.BertModel(bert_config, is_training=training,
                               input_ids=ids, input_mask=mask)
  output = model.get_sequence_output()
  train_op = None
  if training:
    loss = tf.reduce_mean(tf.square(output))
    train_op = tf1.train.GradientDescentOptimizer(1e-3).minimize(loss)
  rng = np.random.RandomState(0)
  feed = {ids: rng.randint(1, bert_config.vocab_size, [batch, length]),
          mask: np.ones([batch, length], np.int32)}
  feed[mask][: batch // 2, length // 2:] = 0  # some padding
  return feed, output, train_op


def _load_named_weights(session):
  """Sets every variable from a seed derived from its name.

  Fused and unfused graphs create different numbers of ops, so graph-seeded
  initializers would differ; named weights make both the same model.
  """
  import zlib
  import numpy as np
  import tensorflow as tf
  for variable in tf.compat.v1.global_variables():
    rng = np.random.RandomState(zlib.crc32(variable.op.name.encode()))
    shape = variable.shape.as_list()
    value = rng.normal(0.0, 0.05, shape)
    if variable.op.name.endswith("gamma"):
      value += 1.0
    variable.load(value.astype(np.float32), session)


def measure(config_name, fused, training, bf16, batch, length, runs):
  """One setting, in this process; returns a JSON-able dict."""
  import numpy as np
  import tensorflow as tf
  tf1 = tf.compat.v1
  tf1.disable_eager_execution()
  with tf.Graph().as_default():
    feed, output, train_op = _build(config_name, fused, training, batch,
                                    length)
    fetch = train_op if training else output
    options = tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE,
                             output_partition_graphs=True)
    metadata = tf1.RunMetadata()
    with tf1.Session(config=_session_config(bf16)) as session:
      session.run(tf1.global_variables_initializer())
      _load_named_weights(session)
      first = session.run(output, feed)
      session.run(fetch, feed, options=options, run_metadata=metadata)
      times, cpu_times = [], []
      for _ in range(runs):
        start, cpu_start = time.perf_counter(), time.process_time()
        session.run(fetch, feed)
        times.append((time.perf_counter() - start) * 1000.0)
        cpu_times.append((time.process_time() - cpu_start) * 1000.0)
  ops, fused_nodes, bfloat16 = count_ops(metadata.partition_graphs)
  return {"ms": round(float(np.median(times)), 2),
          "cpu_ms": round(float(np.median(cpu_times)), 2),
          "compute_ops": sum(ops.values()),
          "fused_nodes": dict(sorted(fused_nodes.items())),
          "op_types": dict(sorted(ops.items())),
          "bfloat16_op_types": dict(sorted(bfloat16.items())),
          "output_sample":
              np.asarray(first, np.float64).ravel()[:4096].tolist()}


def run_setting(args, onednn, fused, training, bf16):
  """Runs `measure` in a subprocess with TF_ENABLE_ONEDNN_OPTS set."""
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if onednn else "0",
             TF_CPP_MIN_LOG_LEVEL="2")
  command = [sys.executable, "-m", "bench.op_profile", "--child",
             json.dumps([args.config, fused, training, bf16, args.batch,
                         args.length, args.runs])]
  result = children.run_child(command, cwd=REPO_ROOT, env=env, check=True,
                              capture_output=True, text=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def write_result(args, argv, rows):
  """Writes the rows so far to --output."""
  result = {"config": args.config, "batch": args.batch, "length": args.length,
            "runs": args.runs, "load_average": os.getloadavg(),
            "cpu": cpu_features.cpu_model_name(),
            "cpu_fast_bf16": cpu_features.has_fast_bf16(),
            "command": " ".join(["python -m bench.op_profile"] +
                                (argv or sys.argv[1:])),
            "rows": rows}
  os.makedirs(os.path.dirname(args.output), exist_ok=True)
  with open(args.output, "w", encoding="utf-8") as writer:
    json.dump(result, writer, indent=2)


def settings(args, training):
  """(onednn, fused, bf16) triples to run for one pass."""
  combos = [(onednn, fused, False) for onednn in (False, True)
            for fused in (False, True)]
  if args.bf16 and not (training and args.bf16_inference_only):
    combos += [(True, False, True), (True, True, True)]
  return combos


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m bench.op_profile",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", choices=sorted(CONFIGS), default="minilm")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--runs", type=int, default=10,
                      help="timed runs per setting (median reported).")
  parser.add_argument("--bf16", action="store_true",
                      help="also run oneDNN bfloat16 auto mixed precision.")
  parser.add_argument("--bf16_inference_only", action="store_true",
                      help="bfloat16 rows for the forward pass only (a CPU "
                      "without AVX512_BF16/AMX emulates it very slowly).")
  parser.add_argument("--no_training", action="store_true",
                      help="forward pass only.")
  parser.add_argument("--output", default=os.path.join(
      REPO_ROOT, "bench", "results", "op_profile.json"))
  parser.add_argument("--child", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(measure(*json.loads(args.child))))
    return
  rows = []
  for training in ([False] if args.no_training else [False, True]):
    reference = None
    for onednn, fused, bf16 in settings(args, training):
      row = run_setting(args, onednn, fused, training, bf16)
      sample = row.pop("output_sample")
      if reference is None:  # oneDNN off, unfused, float32: the baseline
        reference = sample
      differences = [abs(a - b) for a, b in zip(sample, reference)]
      row["max_abs_diff_vs_baseline"] = max(differences)
      row["mean_abs_diff_vs_baseline"] = sum(differences) / len(differences)
      row.update(onednn=onednn, fused=fused, bf16=bf16, training=training)
      rows.append(row)
      write_result(args, argv, rows)  # after each row: partial runs count
      print(json.dumps({k: row[k] for k in (
          "training", "onednn", "fused", "bf16", "ms", "cpu_ms", "compute_ops",
          "fused_nodes", "max_abs_diff_vs_baseline")}), flush=True)
  print("| pass | oneDNN | fused | bf16 | ms | CPU ms | compute ops |"
        " fused MatMuls | _MklLayerNorm | max abs diff |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for row in rows:
    print("| %s | %s | %s | %s | %.1f | %.1f | %d | %d | %d | %.2g |" % (
        "train" if row["training"] else "infer", row["onednn"], row["fused"],
        row["bf16"], row["ms"], row["cpu_ms"], row["compute_ops"],
        sum(row["fused_nodes"].values()),
        row["op_types"].get("_MklLayerNorm", 0),
        row["max_abs_diff_vs_baseline"]))


if __name__ == "__main__":
  main()
