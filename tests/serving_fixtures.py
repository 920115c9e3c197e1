"""A tiny character-level Chinese model, trained, predicted and exported once.

`served_model()` trains a 1-layer hidden-32 BERT from scratch for a few
dozen steps on the inline data below, runs `train_lib.run(do_predict=True)`
on raw sentences (so `predictions.jsonl` is the trainer's own answer), and
exports the final checkpoint. It is memoised, so every serving test module
shares one model (about 15 s on 2 cores); the folder is removed at exit.
"""

import atexit
import contextlib
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import tensorflow as tf

from serving.server import model_manager
from serving.server import rest_api
from trainer.export import exporter as export_lib
from trainer import schema
from trainer.run import train_lib

TINY_CONFIG = {
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
    "intermediate_size": 37, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 64, "type_vocab_size": 2,
    "initializer_range": 0.02,
}
MAX_SEQ_LENGTH = 16  # 14 characters per window: the long sentence is split
DOC_STRIDE = 5

# (sentence, [(start, end_exclusive, type)]) written as IOB2 CoNLL.
TRAIN = [
    ("张三在北京工作。", [(0, 2, "PER"), (3, 5, "LOC")]),
    ("李四去上海开会。", [(0, 2, "PER"), (3, 5, "LOC")]),
    ("王五是华为公司的员工。", [(0, 2, "PER"), (3, 7, "ORG")]),
    ("赵六在深圳的腾讯公司上班。", [(0, 2, "PER"), (3, 5, "LOC"), (6, 10, "ORG")]),
    ("北京和上海都是大城市。", [(0, 2, "LOC"), (3, 5, "LOC")]),
    ("张三和李四在腾讯公司见面。", [(0, 2, "PER"), (3, 5, "PER"), (6, 10, "ORG")]),
    ("2024年王五去了深圳。", [(5, 7, "PER"), (9, 11, "LOC")]),
]
# Raw sentences for prediction. The first three are CJK only (a space is no
# token), so word tokens are characters and predict_text must agree with the
# trainer exactly; the third is longer than one window. The last mixes in
# ASCII words, which only the word-level signatures see as the trainer does.
PREDICT = [
    "张三在上海工作。",
    "李四 去北京开会。",
    "王五和赵六在华为公司见面，然后一起去深圳参观腾讯公司的新大楼。",
    "2024年 Zhang San 去了 ABC 公司。",
]
CJK_ONLY_PREDICT = PREDICT[:3]
# Characters the model never saw (map to [UNK]); also used by tests.
UNSEEN_TEXT = "龘靐"


def conll(sentences):
  """CoNLL lines 'character tag' for (sentence, spans) pairs."""
  blocks = []
  for text, spans in sentences:
    tags = ["O"] * len(text)
    for start, end, entity_type in spans:
      tags[start] = "B-" + entity_type
      for index in range(start + 1, end):
        tags[index] = "I-" + entity_type
    blocks.append("".join(f"{character} {tag}\n"
                          for character, tag in zip(text, tags)))
  return "\n".join(blocks)


@functools.lru_cache(maxsize=None)
def served_model():
  """Trains, predicts and exports once; returns a dict of paths and records."""
  root = tempfile.mkdtemp(prefix="ner_serving_test_")
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  vocab = list(schema.SPECIAL_TOKENS)
  for text in [text for text, _ in TRAIN] + PREDICT:
    for character in text.lower():
      if not character.isspace() and character not in vocab:
        vocab.append(character)
  vocab += ["zhang", "san", "abc", "##c"]
  paths = {name: os.path.join(root, name) for name in (
      "vocab.txt", "bert_config.json", "train.txt", "predict.txt")}
  with open(paths["vocab.txt"], "w", encoding="utf-8") as writer:
    writer.write("".join(piece + "\n" for piece in vocab))
  with open(paths["bert_config.json"], "w", encoding="utf-8") as writer:
    json.dump(dict(TINY_CONFIG, vocab_size=len(vocab)), writer)
  with open(paths["train.txt"], "w", encoding="utf-8") as writer:
    writer.write(conll(TRAIN))
  with open(paths["predict.txt"], "w", encoding="utf-8") as writer:
    writer.write("".join(line + "\n" for line in PREDICT))
  output_dir = os.path.join(root, "out")
  config = train_lib.NerConfig(
      output_dir=output_dir, train_file=paths["train.txt"],
      predict_file=paths["predict.txt"], data_format="auto",
      bert_config_file=paths["bert_config.json"],
      vocab_file=paths["vocab.txt"], max_seq_length=MAX_SEQ_LENGTH,
      doc_stride=DOC_STRIDE, train_batch_size=7, predict_batch_size=3,
      learning_rate=1e-2, num_train_steps=40, warmup_proportion=0.0,
      save_checkpoints_steps=1000, seed=1, do_train=True, do_predict=True)
  train_lib.run(config)
  with open(os.path.join(output_dir, schema.PREDICTIONS_JSONL_FILENAME),
            encoding="utf-8") as reader:
    records = [json.loads(line) for line in reader]
  ner_config = {"max_seq_length": MAX_SEQ_LENGTH, "doc_stride": DOC_STRIDE,
                "do_lower_case": True}
  export_dir = os.path.join(output_dir, schema.EXPORT_DIRNAME)
  version_dir = export_lib.export_model(
      export_dir, tf.train.latest_checkpoint(output_dir),
      paths["bert_config.json"], paths["vocab.txt"],
      os.path.join(output_dir, schema.LABELS_FILENAME), ner_config)
  return {"root": root, "output_dir": output_dir, "export_dir": export_dir,
          "version_dir": version_dir, "records": records,
          "vocab_file": paths["vocab.txt"],
          "bert_config_file": paths["bert_config.json"],
          "labels_file": os.path.join(output_dir, schema.LABELS_FILENAME),
          "ner_config": ner_config}


@functools.lru_cache(maxsize=None)
def loaded_manager():
  """A `ModelManager` serving `served_model()`'s export, version 1 loaded."""
  manager = model_manager.ModelManager(schema.DEFAULT_MODEL_NAME,
                                       served_model()["export_dir"])
  assert manager.load_latest() == 1
  return manager


def model_limits():
  """{vocab_size, type_vocab_size, max_position_embeddings} of the model."""
  with open(served_model()["bert_config_file"], encoding="utf-8") as reader:
    config = json.load(reader)
  return {key: config[key] for key in (
      "vocab_size", "type_vocab_size", "max_position_embeddings")}


# --- HTTP helpers ---------------------------------------------------------------

HTTP_TIMEOUT_S = 20.0


@contextlib.contextmanager
def rest_server(manager, **limits):
  """`rest_api.start_rest_server` on a free loopback port; yields the port."""
  server, thread = rest_api.start_rest_server(manager, "127.0.0.1", 0,
                                              **limits)
  try:
    yield server.server_address[1]
  finally:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def http_post(port, path, body, headers=None):
  """(status, JSON answer) of a POST; `body` is JSON-encoded unless bytes."""
  data = body if isinstance(body, bytes) else json.dumps(body).encode()
  request = urllib.request.Request(
      f"http://127.0.0.1:{port}{path}", data=data,
      headers=dict({"Content-Type": "application/json"}, **(headers or {})))
  try:
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as reply:
      return reply.status, json.load(reply)
  except urllib.error.HTTPError as error:
    return error.code, json.load(error)


def http_get(port, path):
  """(status, JSON answer) of a GET."""
  try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                timeout=HTTP_TIMEOUT_S) as reply:
      return reply.status, json.load(reply)
  except urllib.error.HTTPError as error:
    return error.code, json.load(error)


def raw_exchange(port, data, timeout_s=5.0):
  """Sends raw bytes, reads until the server closes (or `timeout_s`).

  Returns:
    (bytes received, seconds until the server closed the connection or None
    when it did not within `timeout_s`).
  """
  with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
    sock.sendall(data)
    start = time.monotonic()
    received = b""
    try:
      while True:
        chunk = sock.recv(65536)
        if not chunk:
          return received, time.monotonic() - start
        received += chunk
    except socket.timeout:
      return received, None


def http_status_and_json(response):
  """(status int, JSON body) of a raw HTTP/1.1 response."""
  head, _, body = response.partition(b"\r\n\r\n")
  return int(head.split(b" ")[1]), json.loads(body.decode("utf-8"))


# --- A server in a process of its own (memory measured from outside) -----------


def memory_mb(pid, field="VmRSS"):
  """A /proc/<pid>/status memory field in MiB (VmRSS now, VmHWM the peak)."""
  with open(f"/proc/{pid}/status", encoding="ascii") as reader:
    return int(re.search(rf"{field}:\s+(\d+) kB", reader.read()).group(1)) / 1024


def start_server_process(export_dir, log_path, *flags):
  """`python -m serving.local_server` on free ports.

  Returns:
    (the `subprocess.Popen`, gRPC port, REST port); terminate it when done.
  """
  log = open(log_path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
  process = subprocess.Popen(
      [sys.executable, "-m", "serving.local_server", "--model_base_path",
       str(export_dir), "--port", "0", "--rest_api_port", "0", *flags],
      stdout=log, stderr=subprocess.STDOUT,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  deadline = time.time() + 180
  while time.time() < deadline and process.poll() is None:
    with open(log_path, encoding="utf-8") as reader:
      match = re.search(r"gRPC 127\.0\.0\.1:(\d+), REST 127\.0\.0\.1:(\d+)",
                        reader.read())
    if match:
      return process, int(match.group(1)), int(match.group(2))
    time.sleep(0.2)
  process.kill()
  with open(log_path, encoding="utf-8") as reader:
    raise AssertionError(f"server did not start:\n{reader.read()[-3000:]}")
