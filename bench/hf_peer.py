"""The Hugging Face side of `bench.vs_pytorch`: PyTorch + transformers.

What a skilled user of transformers runs, on the same MiniLM weights and data
as our side (`pip install -e ".[bench]"` installs torch and transformers;
the trainer never needs them):

  `train`    `transformers.Trainer`'s step (AdamW 5e-5, linear warmup/decay,
             grad-norm clip 1.0) over `LengthGroupedSampler` batches
             (``group_by_length=True``) padded by
             `DataCollatorForTokenClassification`; or random ids [32, L] at
             one fixed length;
  `predict`  the test split in sequential batches of 32 (`Trainer.predict`);
  `latency`  one sentence: tokenize, forward, argmax, word tags.

With ``"precision": "bfloat16"`` in the spec every forward pass (and so its
backward) runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``: what
``TrainingArguments(bf16=True)`` makes Trainer do on a CPU (the weights and
the optimizer stay float32).

Each runs in its own subprocess, started by `bench.vs_pytorch`:

    python -m bench.hf_peer --child '{"measure": "train", ...}'

and prints one result line (`vs_pytorch.RESULT_PREFIX` + JSON) shaped by
`vs_pytorch.train_result`/`predict_result`/`latency_result`, so both sides'
figures are computed the same way.
"""

# torch and transformers are imported inside the measurements: importing
# this module (tests, the parent process) needs neither.
# pylint: disable=import-outside-toplevel

import itertools
import json
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

from bench import vs_pytorch
from bench.vs_pytorch import BATCH_SIZE
from bench.vs_pytorch import LEARNING_RATE
from bench.vs_pytorch import MAX_SEQ_LENGTH

# Label id of pieces the loss ignores (torch.nn.CrossEntropyLoss default).
IGNORED_LABEL = -100


def first_piece_labels(word_ids: Sequence[Optional[int]],
                       word_labels: Optional[Sequence[int]] = None
                       ) -> List[int]:
  """A label for each word's first piece, IGNORED_LABEL elsewhere.

  Args:
    word_ids: per piece, the index of its word, None for specials
      (`BatchEncoding.word_ids`).
    word_labels: per word, its label id; None marks first pieces with 0
      (where predictions are read).

  Example: word_ids [None, 0, 0, 1, None] with word_labels [3, 5] ->
  [-100, 3, -100, 5, -100].
  """
  return [IGNORED_LABEL if word is None or (index and
                                            word_ids[index - 1] == word)
          else (word_labels[word] if word_labels is not None else 0)
          for index, word in enumerate(word_ids)]


def _model(spec: Dict[str, Any], labels: Sequence[str]):
  import torch
  import transformers
  torch.manual_seed(0)
  tokenizer = transformers.AutoTokenizer.from_pretrained(spec["hf_model_dir"])
  model = transformers.AutoModelForTokenClassification.from_pretrained(
      spec["hf_model_dir"], num_labels=len(labels))
  return tokenizer, model


def _encode(tokenizer, words: List[List[str]],
            tags: Optional[List[List[str]]] = None,
            label_ids: Optional[Dict[str, int]] = None) -> List[Dict]:
  """Tokenized sentences with "labels" from `first_piece_labels`."""
  encoded = tokenizer(words, is_split_into_words=True, truncation=True,
                      max_length=MAX_SEQ_LENGTH)
  rows = []
  for index in range(len(words)):
    word_labels = ([label_ids[tag] for tag in tags[index]] if tags else None)
    rows.append(dict({key: encoded[key][index] for key in encoded.keys()},
                     labels=first_piece_labels(encoded.word_ids(index),
                                               word_labels)))
  return rows


def _precision(spec: Dict[str, Any]):
  """The autocast context of the spec's precision (a no-op for float32)."""
  import contextlib
  import torch
  if spec.get("precision") == "bfloat16":
    return torch.autocast("cpu", dtype=torch.bfloat16)
  return contextlib.nullcontext()


def _cycle(loader) -> Iterator:
  while True:
    yield from loader


def _batches(spec: Dict[str, Any], tokenizer, rows: List[Dict],
             num_labels: int) -> Iterator:
  """Length-grouped collated batches, or one random [32, L] batch repeated."""
  import torch
  import transformers
  from transformers import trainer_pt_utils
  fixed = spec.get("fixed_length")
  if fixed:  # random ids [32, L]: the per-step cost at one length
    generator = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 20000, (BATCH_SIZE, fixed),
                                        generator=generator),
             "attention_mask": torch.ones(BATCH_SIZE, fixed, dtype=torch.long),
             "labels": torch.randint(0, num_labels, (BATCH_SIZE, fixed),
                                     generator=generator)}
    return itertools.repeat(batch)
  sampler = trainer_pt_utils.LengthGroupedSampler(
      BATCH_SIZE, lengths=[len(r["input_ids"]) for r in rows],
      generator=torch.Generator().manual_seed(42))
  loader = torch.utils.data.DataLoader(
      rows, batch_size=BATCH_SIZE, sampler=sampler,
      collate_fn=transformers.DataCollatorForTokenClassification(tokenizer))
  return _cycle(loader)  # collated in the loop, as Trainer does


def train(spec: Dict[str, Any]) -> Dict[str, Any]:
  """Trainer's step over length-grouped batches; steady-state rates."""
  import torch
  import transformers
  words, tags = vs_pytorch.read_conll(spec["train_file"])
  labels = sorted({t for sentence in tags for t in sentence})
  tokenizer, model = _model(spec, labels)
  rows = _encode(tokenizer, words, tags,
                 {tag: i for i, tag in enumerate(labels)})
  steps = spec["warmup_steps"] + spec["steps"]
  optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE,
                                weight_decay=0.0)
  schedule = transformers.get_linear_schedule_with_warmup(
      optimizer, int(0.1 * steps), steps)
  model.train()
  times, real, padded = [], 0, 0
  batches = _batches(spec, tokenizer, rows, len(labels))
  for step, batch in zip(range(steps), batches):
    with _precision(spec):
      loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()
    if step >= spec["warmup_steps"] - 1:
      times.append(time.perf_counter())
      if step >= spec["warmup_steps"]:
        real += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
  return vs_pytorch.train_result(times, real, padded)


def predict(spec: Dict[str, Any]) -> Dict[str, Any]:
  """Tags the test split in sequential batches of 32 (Trainer.predict)."""
  import torch
  import transformers
  start = time.perf_counter()
  words, _ = vs_pytorch.read_conll(spec["test_file"])
  labels = spec["labels"]
  tokenizer, model = _model(spec, labels)
  model.eval()
  rows = _encode(tokenizer, words)
  collate = transformers.DataCollatorWithPadding(tokenizer)
  tagged, batch_ends = [], []
  with torch.inference_mode(), _precision(spec):
    for first in range(0, len(rows), BATCH_SIZE):
      chunk = rows[first:first + BATCH_SIZE]
      batch = collate([{k: v for k, v in r.items() if k != "labels"}
                       for r in chunk])
      predicted = model(**batch).logits.argmax(-1).tolist()
      for row, ids in zip(chunk, predicted):
        tagged.append([labels[i] for i, label in zip(ids, row["labels"])
                       if label != IGNORED_LABEL] or ["O"])
      batch_ends.append(time.perf_counter())
  return vs_pytorch.predict_result(len(words), start, batch_ends[-1],
                                   batch_ends)


def latency(spec: Dict[str, Any]) -> Dict[str, Any]:
  """p50/p99 ms of one sentence: tokenize, forward, argmax, word tags."""
  import torch
  words, _ = vs_pytorch.read_conll(spec["test_file"])
  labels = spec["labels"]
  tokenizer, model = _model(spec, labels)
  model.eval()
  latencies = []
  with torch.inference_mode(), _precision(spec):
    for index in range(spec["requests"] + 10):
      sentence = words[index % len(words)]
      start = time.perf_counter()
      encoded = tokenizer([sentence], is_split_into_words=True,
                          truncation=True, max_length=MAX_SEQ_LENGTH,
                          return_tensors="pt")
      ids = model(**encoded).logits.argmax(-1)[0].tolist()
      word_ids = encoded.word_ids(0)
      tags = [labels[ids[i]] for i, w in enumerate(word_ids)
              if w is not None and (not i or word_ids[i - 1] != w)]
      if index >= 10:
        latencies.append((time.perf_counter() - start) * 1000.0)
      if len(tags) != len(sentence) and len(encoded["input_ids"][0]) < \
          MAX_SEQ_LENGTH:
        raise RuntimeError(f"{len(tags)} tags for {len(sentence)} words.")
  return vs_pytorch.latency_result(latencies)


MEASUREMENTS = {"train": train, "predict": predict, "latency": latency}


def main(argv: Optional[Sequence[str]] = None) -> None:
  """`--child SPEC`: one measurement, as `vs_pytorch.launch` starts it."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if len(argv) != 2 or argv[0] != "--child":
    raise SystemExit("usage: python -m bench.hf_peer --child SPEC_JSON "
                     "(started by python -m bench.vs_pytorch)")
  spec = json.loads(argv[1])

  def extra():
    import torch
    return {"torch_threads": torch.get_num_threads()}

  vs_pytorch.run_child(spec, MEASUREMENTS, extra)


if __name__ == "__main__":
  main()
