"""A SavedModel in a `tf.compat.v1.Session` of its own, with its own threads.

Used by the development server (`model_manager`: one per served version) and by
the client's in-process transport (`serving.client.transports`). TensorFlow is
imported when a session is made, so the thread-mode table imports without it.

Importing this module sets TF_OVERRIDE_GLOBAL_THREADPOOL=1 (unless the
environment already sets it): TensorFlow then gives each session's CPU device
a kernel thread pool of the session's own `intra_op_parallelism_threads`.
Without it every session's kernels share one process-wide pool, sized by
whichever session came first: after any other session (training, an export,
another model), a "latency" session's small ops were handed to a 2-thread
pool, and one CoNLL sentence through MiniLM-L6 took 10.5 ms instead of 4.7
(p50, bfloat16, 2-core Xeon). TensorFlow reads the variable once, when the
process's first session starts, so import this module before that.
"""

import os
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from trainer import cpu_features

Arrays = Dict[str, np.ndarray]

PER_SESSION_THREADPOOL_ENV = "TF_OVERRIDE_GLOBAL_THREADPOOL"
os.environ.setdefault(PER_SESSION_THREADPOOL_ENV, "1")

# Thread modes of the in-process model and the development server.
LATENCY = "latency"        # single requests: a request's ops in its thread
THROUGHPUT = "throughput"  # batches: TensorFlow's defaults (all cores)
THREAD_MODES = (LATENCY, THROUGHPUT)
# (intra_op_parallelism_threads, inter_op_parallelism_threads); 0 lets
# TensorFlow pick (one thread per core), as TF Serving's
# --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism.
_THREADS = {LATENCY: (1, 1), THROUGHPUT: (0, 0)}


# TF Serving's --mixed_precision values. "bfloat16" turns on grappler's oneDNN
# bfloat16 auto-mixed-precision rewrite in every served session: matmuls and
# the ops between them run in bfloat16 on the float32 SavedModel, whose
# variables stay float32 (as TF Serving's model server does).
BFLOAT16 = "bfloat16"
MIXED_PRECISION_MODES = (BFLOAT16,)


def check_mixed_precision(mixed_precision: Optional[str]) -> None:
  """Raises ValueError unless `mixed_precision` is None, "" or a mode.

  Example: check_mixed_precision("float16") raises, naming "bfloat16".
  """
  if mixed_precision and mixed_precision not in MIXED_PRECISION_MODES:
    raise ValueError(f"mixed_precision={mixed_precision!r}; use one of "
                     f"{', '.join(MIXED_PRECISION_MODES)} (or none).")


def session_config(intra_op_threads: int = 0, inter_op_threads: int = 0,
                   mixed_precision: Optional[str] = None):
  """The `tf.compat.v1.ConfigProto` of a served session.

  Example: session_config(1, 1, "bfloat16") has 1 and 1 threads, per-session
  pools and `graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16`
  ON (`RewriterConfig.ON`, 1).
  """
  check_mixed_precision(mixed_precision)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.core.protobuf import rewriter_config_pb2  # pylint: disable=g-import-not-at-top
  config = tf.compat.v1.ConfigProto(
      intra_op_parallelism_threads=intra_op_threads,
      inter_op_parallelism_threads=inter_op_threads,
      use_per_session_threads=True)
  if mixed_precision == BFLOAT16:
    config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
        rewriter_config_pb2.RewriterConfig.ON)
  return config


def thread_settings(thread_mode: str) -> Tuple[int, int]:
  """(intra_op, inter_op) threads of a thread mode.

  "latency": a single sentence is hundreds of small ops, and handing each
  to a pool thread costs more than running it; one thread runs them in
  order. "throughput" keeps TensorFlow's defaults, which a batch of 32
  sentences keeps busy.

  Example: thread_settings("latency") -> (1, 1).
  """
  if thread_mode not in _THREADS:
    raise ValueError(f"thread_mode={thread_mode!r}; use one of "
                     f"{', '.join(THREAD_MODES)}.")
  return _THREADS[thread_mode]


class SessionSavedModel:
  """A SavedModel loaded into a `tf.compat.v1.Session` with its own threads.

  TF Serving runs each model in a Session configured by
  --tensorflow_intra_op_parallelism and --tensorflow_inter_op_parallelism;
  this does the same in process. (Eager `tf.saved_model.load` cannot: its
  thread settings are per process and fixed once TensorFlow starts.)

  With `inter_op_threads=1` every call runs its ops in the calling thread
  (`RunOptions.inter_op_thread_pool=-1`): the same order as one pool thread,
  without a hand-off per call, and concurrent callers run side by side
  instead of queueing on the one thread. `intra_op_threads` sizes the
  session's own kernel thread pool (see the module docstring: in a process
  whose first session started before this module was imported, kernels
  share that session's pool).

  Args:
    version_dir: a SavedModel folder (`saved_model.pb`, variables/).
    intra_op_threads: threads one op may use (0: TensorFlow's default).
    inter_op_threads: ops run at once (0: TensorFlow's default).
    mixed_precision: None (float32) or "bfloat16" (`session_config`).

  Attributes:
    config: the session's `ConfigProto` (`session_config`).
    signature_defs: {signature name: `SignatureDef`} of the export.
    run_options: `RunOptions` of every call (caller's thread with
      `inter_op_threads=1`), or None.
  """

  def __init__(self, version_dir: str, intra_op_threads: int = 0,
               inter_op_threads: int = 0,
               mixed_precision: Optional[str] = None):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf1 = tf.compat.v1
    cpu_features.prefer_onednn()  # as training does; before the first graph
    graph = tf.Graph()
    self.config = session_config(intra_op_threads, inter_op_threads,
                                 mixed_precision)
    self._session = tf1.Session(graph=graph, config=self.config)
    self.run_options = (tf1.RunOptions(inter_op_thread_pool=-1)
                        if inter_op_threads == 1 else None)
    with graph.as_default():
      meta_graph = tf1.saved_model.loader.load(
          self._session, [tf.saved_model.SERVING], version_dir)
    self.signature_defs = dict(meta_graph.signature_def)

  def run(self, signature_name: str,
          inputs: Mapping[str, np.ndarray]) -> Arrays:
    """{output key: array} of one signature; raises `tf.errors.OpError`s.

    Raises:
      KeyError: for a signature or input key the export does not have.
    """
    signature = self.signature_defs[signature_name]
    feed = {signature.inputs[key].name: value for key, value in inputs.items()}
    fetches = {key: info.name for key, info in signature.outputs.items()}
    return self._session.run(fetches, feed, options=self.run_options)

  def close(self) -> None:
    self._session.close()
