"""CPU facts for bfloat16 and oneDNN: detection from /proc/cpuinfo.

oneDNN runs bfloat16 matmuls at full speed only on CPUs with AVX512_BF16
(Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later) or AMX
(Intel Sapphire Rapids and later). Elsewhere bfloat16 graphs still run, but
the kernels emulate bfloat16 and are slower than float32, so `--use_bf16`
(and the development server's --mixed_precision=bfloat16) is refused there
with a message saying why.

Pure Python, no TensorFlow: the Linux kernel lists the instruction sets in
the ``flags`` line of every processor in /proc/cpuinfo::

    processor : 0
    model name : Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
    flags : fpu vme ... avx512f avx512_bf16 ... amx_bf16 amx_tile amx_int8

gives ``has_avx512_bf16(cpu_flags(text)) == has_amx(cpu_flags(text)) ==
True``; an AVX2-only CPU (this repository's 2-core AMD EPYC) gives False.
"""

import os
import platform
from typing import FrozenSet, MutableMapping, Optional

CPUINFO_PATH = "/proc/cpuinfo"

# /proc/cpuinfo flag names (arch/x86/include/asm/cpufeatures.h).
AVX512_BF16_FLAG = "avx512_bf16"
# AMX's bfloat16 matmuls need the tile registers and the bf16 tile op.
AMX_BF16_FLAGS = frozenset(["amx_tile", "amx_bf16"])

# TensorFlow's switch for its oneDNN kernels and graph rewrites, read once,
# when TensorFlow first asks (its first graph optimization).
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# platform.machine() of the CPUs where this project turns oneDNN on.
ONEDNN_MACHINES = ("x86_64", "AMD64")


def read_cpuinfo(path: str = CPUINFO_PATH) -> str:
  """The text of /proc/cpuinfo, or "" where it does not exist (not Linux)."""
  try:
    with open(path, encoding="utf-8", errors="replace") as reader:
      return reader.read()
  except OSError:
    return ""


def _processor_values(cpuinfo: str, key: str):
  """The value of `key` for each processor block of a cpuinfo text."""
  values = []
  for line in cpuinfo.splitlines():
    name, separator, value = line.partition(":")
    if separator and name.strip() == key:
      values.append(value.strip())
  return values


def cpu_flags(cpuinfo: Optional[str] = None) -> FrozenSet[str]:
  """Instruction-set flags every processor has.

  Args:
    cpuinfo: /proc/cpuinfo text; None reads the file.

  Returns:
    The flags common to all ``flags`` lines (a feature only some cores have
    cannot be relied on by a thread pool); empty when there is none.

  Example: two processors with ``flags : sse avx512_bf16`` and
  ``flags : sse`` give ``frozenset({"sse"})``.
  """
  if cpuinfo is None:
    cpuinfo = read_cpuinfo()
  per_processor = [frozenset(value.split())
                   for value in _processor_values(cpuinfo, "flags")]
  if not per_processor:
    return frozenset()
  return frozenset.intersection(*per_processor)


def cpu_model_name(cpuinfo: Optional[str] = None) -> str:
  """The first ``model name`` of /proc/cpuinfo, or "unknown"."""
  if cpuinfo is None:
    cpuinfo = read_cpuinfo()
  names = _processor_values(cpuinfo, "model name")
  return names[0] if names else "unknown"


def has_avx512_bf16(flags: Optional[FrozenSet[str]] = None) -> bool:
  """True when every core has AVX512_BF16 (bfloat16 dot products)."""
  flags = cpu_flags() if flags is None else flags
  return AVX512_BF16_FLAG in flags


def has_amx(flags: Optional[FrozenSet[str]] = None) -> bool:
  """True when every core has AMX tiles with bfloat16 (amx_tile, amx_bf16)."""
  flags = cpu_flags() if flags is None else flags
  return AMX_BF16_FLAGS <= flags


def has_fast_bf16(flags: Optional[FrozenSet[str]] = None) -> bool:
  """True when oneDNN can run bfloat16 matmuls natively (AVX512_BF16/AMX)."""
  flags = cpu_flags() if flags is None else flags
  return has_avx512_bf16(flags) or has_amx(flags)


def bf16_support_error(cpuinfo: Optional[str] = None,
                       flag_name: str = "--use_bf16") -> Optional[str]:
  """Why bfloat16 cannot be used on this CPU, or None when it can.

  Args:
    cpuinfo: /proc/cpuinfo text; None reads the file.
    flag_name: the option named in the message.

  Returns:
    None on CPUs with AVX512_BF16 or AMX, else a message naming the CPU, the
    missing instructions and the fix.
  """
  if cpuinfo is None:
    cpuinfo = read_cpuinfo()
  flags = cpu_flags(cpuinfo)
  if has_fast_bf16(flags):
    return None
  if not flags:
    found = f"could not read CPU flags from {CPUINFO_PATH}"
  else:
    amx = " and ".join(sorted(AMX_BF16_FLAGS))
    found = (f"the CPU ({cpu_model_name(cpuinfo)}) has neither AVX512_BF16 "
             f"(flag {AVX512_BF16_FLAG}) nor AMX (flags {amx})")
  return (f"Cannot use {flag_name}: {found}. oneDNN would emulate bfloat16 "
          f"and run slower than float32. Drop {flag_name} on this machine, or "
          f"run on a CPU with AVX512_BF16 or AMX (Intel Cooper Lake / "
          f"Sapphire Rapids or later, AMD Zen 4 or later).")


def onednn_setting(environ: MutableMapping[str, str],
                   machine: str) -> Optional[str]:
  """The `ONEDNN_ENV` value this project sets, or None to leave it alone.

  TF 2.15 turns oneDNN on by itself only on x86 CPUs with AVX512_VNNI,
  AVX512_BF16, AVX_VNNI or AMX. On the others (AVX2 CPUs such as this
  repository's 2-core AMD EPYC) it is off, yet the fused dense/GELU/layer
  norm of `trainer.model.fused_ops` only become single kernels through oneDNN.
  Measured there (bench/results/onednn_buckets_ab.md): prediction 200 vs
  168 sentences/s, single-sentence p99 45 vs 69 ms, training within the
  run-to-run spread. So on x86-64 the project turns it on, unless the user
  set the variable (either way).

  Examples: ({}, "x86_64") -> "1"; ({"TF_ENABLE_ONEDNN_OPTS": "0"},
  "x86_64") -> None (the user's choice stands); ({}, "aarch64") -> None.
  """
  if ONEDNN_ENV in environ or machine not in ONEDNN_MACHINES:
    return None
  return "1"


def prefer_onednn(environ: Optional[MutableMapping[str, str]] = None,
                  machine: Optional[str] = None) -> bool:
  """Sets `onednn_setting`'s value in `environ` (os.environ); True if set.

  Call it before TensorFlow runs any graph in the process (training's
  `train_lib.run` and the serving sessions do); later it changes nothing.
  """
  environ = os.environ if environ is None else environ
  value = onednn_setting(environ, machine or platform.machine())
  if value is None:
    return False
  environ[ONEDNN_ENV] = value
  return True


def precision_note(use_bf16: bool, accelerated: bool = False,
                   flags: Optional[FrozenSet[str]] = None) -> str:
  """The log line that says which precision a run's products use.

  Args:
    use_bf16: --use_bf16.
    accelerated: a GPU/TPU run (--use_amp, --num_gpus, --use_tpu): no hint.
    flags: `cpu_flags()` (None reads /proc/cpuinfo).

  Examples: (True) -> "Encoder products in bfloat16 (--use_bf16) ...";
  (False) on a CPU with AMX -> "... float32; this CPU has native bfloat16
  (amx_bf16): --use_bf16 ..."; (False) on an AVX2 CPU -> "... float32."
  """
  if use_bf16:
    return ("Encoder products in bfloat16 (--use_bf16); weights, layer norm, "
            "softmax and the loss in float32.")
  flags = cpu_flags() if flags is None else flags
  if accelerated or not has_fast_bf16(flags):
    return "Encoder products in float32."
  native = sorted(flags & (AMX_BF16_FLAGS | {AVX512_BF16_FLAG}))
  return ("Encoder products in float32; this CPU has native bfloat16 "
          f"({', '.join(native)}): --use_bf16 trains and predicts faster "
          "(docs/speed.md).")


# The flags a benchmark result names, so a reader knows which CPU gave it.
REPORTED_FLAGS = frozenset(["avx2", AVX512_BF16_FLAG, "amx_bf16"])


def reported_flags(flags: Optional[FrozenSet[str]] = None) -> list[str]:
  """`REPORTED_FLAGS` this CPU has, sorted.

  Example: a CPU with ``avx2 avx512f avx512_bf16`` -> ["avx2", "avx512_bf16"].
  """
  flags = cpu_flags() if flags is None else flags
  return sorted(flags & REPORTED_FLAGS)
