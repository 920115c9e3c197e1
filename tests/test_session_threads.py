"""Each served session gets a kernel thread pool of its own size.

TensorFlow shares one process-wide kernel pool among sessions unless
TF_OVERRIDE_GLOBAL_THREADPOOL is set before the process's first session;
`serving.server.saved_model_session` sets it on import, so a "latency"
session (1 kernel thread) keeps one thread after a session with all cores,
and a "throughput" session gets a pool of its own after a "latency" one
(whose one-thread pool it used to share). Each check runs in a fresh
Python process.
"""

import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What each check's process runs first: `config(mode)` is a thread mode's
# session config, importing saved_model_session sets the variable.
PRELUDE = """
import os
import time
import numpy as np
from serving.server import saved_model_session
import tensorflow as tf
tf1 = tf.compat.v1
def config(mode):
  return saved_model_session.session_config(
      *saved_model_session.thread_settings(mode))
"""

# A session in thread mode FIRST, then one in mode THEN: CPU seconds per
# wall second of the second session's big matmuls.
CPU_PER_WALL = PRELUDE + """
with tf1.Graph().as_default():
  x = tf1.placeholder(tf.float32, [None, 64])
  with tf1.Session(config=config("FIRST")) as first:
    first.run(tf.matmul(x, x, transpose_b=True), {x: np.ones([8, 64])})
with tf1.Graph().as_default():
  a = tf.random.uniform([1536, 1536])
  product = tf.reduce_sum(tf.matmul(a, a))
  with tf1.Session(config=config("THEN")) as session:
    session.run(product)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(8):
      session.run(product)
    print((time.process_time() - cpu) / (time.perf_counter() - wall))
"""


def _cpu_per_wall(first, then):
  return float(_python(CPU_PER_WALL.replace("FIRST", first).replace(
      "THEN", then)))


def _python(code, **env):
  return subprocess.run(
      [sys.executable, "-c", code], cwd=REPO_ROOT, check=True,
      capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=REPO_ROOT, **env)).stdout.split()[-1]


def test_import_asks_for_per_session_pools_unless_the_user_chose():
  code = ("import os; from serving.server import saved_model_session; "
          "print(os.environ['TF_OVERRIDE_GLOBAL_THREADPOOL'])")
  environment = {key: value for key, value in os.environ.items()
                 if key != "TF_OVERRIDE_GLOBAL_THREADPOOL"}
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                          check=True, capture_output=True, text=True,
                          env=dict(environment, PYTHONPATH=REPO_ROOT))
  assert result.stdout.split()[-1] == "1"
  assert _python(code, TF_OVERRIDE_GLOBAL_THREADPOOL="0") == "0"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2+ cores")
def test_a_latency_session_after_a_throughput_one_runs_on_one_thread():
  # With the shared pool (TF_OVERRIDE_GLOBAL_THREADPOOL=0) the same matmuls
  # ran on every core: 1.83 CPU seconds per second on 2 cores.
  assert _cpu_per_wall("throughput", "latency") < 1.3


# Threads a "throughput" session adds to a process whose first session was
# a "latency" one (pools of one thread).
THREADS_ADDED = PRELUDE + """
with tf1.Graph().as_default():
  x = tf1.placeholder(tf.float32, [None, 64])
  with tf1.Session(config=config("latency")) as first:
    first.run(tf.matmul(x, x, transpose_b=True), {x: np.ones([8, 64])})
    before = len(os.listdir("/proc/self/task"))
    with tf1.Graph().as_default():
      a = tf.random.uniform([256, 256])
      with tf1.Session(config=config("throughput")) as session:
        session.run(tf.reduce_sum(tf.matmul(a, a)))
        print(len(os.listdir("/proc/self/task")) - before)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"),
                    reason="counts threads in /proc")
def test_a_throughput_session_after_a_latency_one_gets_its_own_kernel_pool():
  # Shared (TF_OVERRIDE_GLOBAL_THREADPOOL=0): only its inter-op threads are
  # new, and its kernels run on the latency session's one thread (2 added
  # on 2 cores); with a pool of its own, a kernel thread per core more (4).
  shared = int(_python(THREADS_ADDED, TF_OVERRIDE_GLOBAL_THREADPOOL="0"))
  own = int(_python(THREADS_ADDED))
  assert own > shared
