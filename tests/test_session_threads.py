"""Each served session gets a kernel thread pool of its own size.

TensorFlow shares one process-wide kernel pool among sessions unless
TF_OVERRIDE_GLOBAL_THREADPOOL is set before the process's first session;
`serving.server.saved_model_session` sets it on import, so a "latency"
session (1 kernel thread) keeps one thread even after another session
started with all cores. Each check runs in a fresh Python process.
"""

import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A default session first (its pool: every core), then a session with the
# latency mode's config: CPU seconds per wall second of its big matmuls.
CPU_PER_WALL = """
import time
import numpy as np
from serving.server import saved_model_session
import tensorflow as tf
tf1 = tf.compat.v1
with tf1.Graph().as_default():
  x = tf1.placeholder(tf.float32, [None, 64])
  with tf1.Session() as first:
    first.run(tf.matmul(x, x, transpose_b=True), {x: np.ones([8, 64])})
with tf1.Graph().as_default():
  a = tf.random.uniform([1536, 1536])
  product = tf.reduce_sum(tf.matmul(a, a))
  intra, inter = saved_model_session.thread_settings("latency")
  config = saved_model_session.session_config(intra, inter)
  with tf1.Session(config=config) as session:
    session.run(product)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(8):
      session.run(product)
    print((time.process_time() - cpu) / (time.perf_counter() - wall))
"""


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
def test_a_latency_session_after_another_session_runs_on_one_thread():
  # With the shared pool (TF_OVERRIDE_GLOBAL_THREADPOOL=0) the same matmuls
  # ran on every core: about 1.9 CPU seconds per second on 2 cores.
  assert float(_python(CPU_PER_WALL)) < 1.3
