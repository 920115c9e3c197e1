"""Tests for trainer.cpu_features (pure Python, fake /proc/cpuinfo texts)."""


import pytest

from tests.import_checks import assert_imports_without_tensorflow
from trainer import cpu_features

SAPPHIRE_RAPIDS = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu vme sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu vme sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""

COOPER_LAKE = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8380H CPU @ 2.90GHz
flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16
"""

ZEN3 = """\
processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma vaes vpclmulqdq

processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma vaes vpclmulqdq
"""

# AMX tiles without the bf16 tile op, and a core missing avx512_bf16.
AMX_INT8_ONLY_MIXED = """\
processor\t: 0
model name\t: Hypothetical
flags\t\t: avx512f avx512_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Hypothetical
flags\t\t: avx512f amx_tile amx_int8
"""


@pytest.mark.parametrize("text, avx512_bf16, amx, fast", [
    (SAPPHIRE_RAPIDS, True, True, True),
    (COOPER_LAKE, True, False, True),
    (ZEN3, False, False, False),
    (AMX_INT8_ONLY_MIXED, False, False, False),
    ("", False, False, False),
])
def test_bf16_detection(text, avx512_bf16, amx, fast):
  flags = cpu_features.cpu_flags(text)
  assert cpu_features.has_avx512_bf16(flags) is avx512_bf16
  assert cpu_features.has_amx(flags) is amx
  assert cpu_features.has_fast_bf16(flags) is fast
  assert (cpu_features.bf16_support_error(text) is None) is fast


def test_cpu_flags_are_common_to_every_processor():
  assert cpu_features.cpu_flags(AMX_INT8_ONLY_MIXED) == frozenset(
      ["avx512f", "amx_tile", "amx_int8"])
  assert cpu_features.cpu_flags(ZEN3) == frozenset(
      ["fpu", "sse2", "avx", "avx2", "fma", "vaes", "vpclmulqdq"])
  assert cpu_features.cpu_flags("processor : 0\n") == frozenset()


def test_model_name():
  assert cpu_features.cpu_model_name(COOPER_LAKE) == \
      "Intel(R) Xeon(R) Platinum 8380H CPU @ 2.90GHz"
  assert cpu_features.cpu_model_name("") == "unknown"


def test_error_message_names_cpu_flags_and_fix():
  message = cpu_features.bf16_support_error(ZEN3, flag_name="--use_bf16")
  assert message == (
      "Cannot use --use_bf16: the CPU (AMD EPYC 7B13) has neither AVX512_BF16 "
      "(flag avx512_bf16) nor AMX (flags amx_bf16 and amx_tile). oneDNN would "
      "emulate bfloat16 and run slower than float32. Drop --use_bf16 on this "
      "machine, or run on a CPU with AVX512_BF16 or AMX (Intel Cooper Lake / "
      "Sapphire Rapids or later, AMD Zen 4 or later).")
  assert cpu_features.bf16_support_error("").startswith(
      "Cannot use --use_bf16: could not read CPU flags from /proc/cpuinfo.")


def test_reads_the_real_file_or_nothing(tmp_path):
  path = tmp_path / "cpuinfo"
  path.write_text(COOPER_LAKE, encoding="utf-8")
  assert cpu_features.read_cpuinfo(str(path)) == COOPER_LAKE
  assert cpu_features.read_cpuinfo(str(tmp_path / "missing")) == ""
  # Without arguments the answer is this machine's own /proc/cpuinfo's.
  own_flags = cpu_features.cpu_flags(cpu_features.read_cpuinfo())
  assert cpu_features.has_fast_bf16() is (
      "avx512_bf16" in own_flags or {"amx_bf16", "amx_tile"} <= own_flags)


def test_does_not_import_tensorflow():
  assert_imports_without_tensorflow("trainer.cpu_features")


def _validate_bf16(monkeypatch, cpuinfo, onednn=True, **fields):
  """NerConfig(use_bf16=True, ...).validate() on a CPU described by text."""
  from trainer.run import config as config_lib  # imports TensorFlow
  from trainer.model import fused_ops
  monkeypatch.setattr(cpu_features, "read_cpuinfo", lambda *_: cpuinfo)
  monkeypatch.setattr(fused_ops, "onednn_enabled", lambda: onednn)
  config_lib.NerConfig(do_train=True, use_bf16=True, **fields).validate()


def test_use_bf16_is_refused_on_a_cpu_without_native_bfloat16(monkeypatch):
  from trainer.errors import UserError
  with pytest.raises(UserError) as raised:
    _validate_bf16(monkeypatch, ZEN3)
  assert str(raised.value) == cpu_features.bf16_support_error(ZEN3)


def test_use_bf16_needs_onednn(monkeypatch):
  from trainer.errors import UserError
  with pytest.raises(UserError, match="TF_ENABLE_ONEDNN_OPTS=1"):
    _validate_bf16(monkeypatch, SAPPHIRE_RAPIDS, onednn=False)


@pytest.mark.parametrize("fields", [{"use_amp": True}, {"num_gpus": 2},
                                    {"use_tpu": True, "tpu_name": "t"}])
def test_use_bf16_is_cpu_only(monkeypatch, fields):
  from trainer.errors import UserError
  with pytest.raises(UserError, match="cannot be combined with --use_amp, "
                                      "--num_gpus or --use_tpu"):
    _validate_bf16(monkeypatch, SAPPHIRE_RAPIDS, **fields)


@pytest.mark.parametrize("cpuinfo, bf16_flags", [
    (SAPPHIRE_RAPIDS, ("avx512_bf16", "amx_bf16")),
    (COOPER_LAKE, ("avx512_bf16",)),
])
def test_use_bf16_accepted_with_avx512_bf16_or_amx_and_onednn(monkeypatch,
                                                              cpuinfo,
                                                              bf16_flags):
  from trainer.errors import UserError
  _validate_bf16(monkeypatch, cpuinfo)  # accepted: raises nothing
  # The same machine without its bfloat16 flags is refused, so the check
  # above passed because of those flags, not because nothing was checked.
  without = cpuinfo
  for flag in bf16_flags:
    without = without.replace(" " + flag, "")
  assert cpu_features.has_fast_bf16(cpu_features.cpu_flags(without)) is False
  with pytest.raises(UserError) as raised:
    _validate_bf16(monkeypatch, without)
  assert str(raised.value) == cpu_features.bf16_support_error(without)


@pytest.mark.parametrize("environ, machine, expected", [
    ({}, "x86_64", "1"),
    ({}, "AMD64", "1"),
    ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "x86_64", None),
    ({"TF_ENABLE_ONEDNN_OPTS": "1"}, "x86_64", None),
    ({}, "aarch64", None),
    ({}, "arm64", None),
])
def test_onednn_setting_only_where_the_user_left_it_unset(environ, machine,
                                                          expected):
  assert cpu_features.onednn_setting(environ, machine) == expected


def test_prefer_onednn_sets_the_variable_once():
  environ = {"PATH": "/bin"}
  assert cpu_features.prefer_onednn(environ, "x86_64")
  assert environ == {"PATH": "/bin", "TF_ENABLE_ONEDNN_OPTS": "1"}
  environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
  assert not cpu_features.prefer_onednn(environ, "x86_64")
  assert environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
  arm = {}
  assert not cpu_features.prefer_onednn(arm, "aarch64") and arm == {}


def test_precision_note_hints_bf16_only_where_it_pays():
  amx = frozenset(["avx2", "avx512_bf16", "amx_tile", "amx_bf16"])
  assert cpu_features.precision_note(True, flags=amx) == (
      "Encoder products in bfloat16 (--use_bf16); weights, layer norm, "
      "softmax and the loss in float32.")
  assert cpu_features.precision_note(False, flags=amx) == (
      "Encoder products in float32; this CPU has native bfloat16 "
      "(amx_bf16, amx_tile, avx512_bf16): --use_bf16 trains and predicts "
      "faster (docs/speed.md).")
  assert cpu_features.precision_note(False, flags=frozenset(["avx2"])) == (
      "Encoder products in float32.")
  assert cpu_features.precision_note(False, accelerated=True, flags=amx) == (
      "Encoder products in float32.")


def test_reported_flags_name_the_bf16_relevant_ones():
  assert cpu_features.reported_flags(frozenset(
      ["sse", "avx2", "avx512f", "avx512_bf16"])) == ["avx2", "avx512_bf16"]
  assert cpu_features.reported_flags(frozenset(["sse"])) == []
