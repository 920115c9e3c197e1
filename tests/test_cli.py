"""trainer.run.cli: flags -> NerConfig, and what the command line prints on
errors.
"""

import dataclasses
import errno
import os

from absl import flags
import pytest

from trainer.run import cli
from trainer.run import config as config_lib
from trainer import gfile_io
from trainer.run import train_lib
from trainer.errors import UserError

FLAGS = flags.FLAGS
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGLISH = os.path.join(REPO_ROOT, "tests", "testdata", "english.conll")


@pytest.fixture(autouse=True)
def defined_flags():
  if "do_train" not in FLAGS:
    cli.define_flags()
  FLAGS.unparse_flags()
  yield
  FLAGS.unparse_flags()


def _parse(*args):
  FLAGS(["run_ner.py", *args])


def _run_main(capsys, *args):
  """(exit code, stderr lines) of run_main with these flags."""
  with pytest.raises(SystemExit) as raised:
    cli.run_main(["run_ner.py", *args])
  return raised.value.code, capsys.readouterr().err.strip().split("\n")


def test_every_config_field_has_a_flag_with_the_same_default():
  defaults = config_lib.NerConfig()
  for field in dataclasses.fields(config_lib.NerConfig):
    assert field.name in FLAGS, field.name
    assert FLAGS[field.name].default == getattr(defaults, field.name), \
        field.name


def test_flags_fill_the_config():
  _parse("--do_train", "--data_dir=/d", "--max_seq_length=64",
         "--bucket_boundaries=16,32", "--head=crf", "--nobucketing")
  config = cli.config_from_flags()
  assert (config.do_train, config.do_eval, config.data_dir,
          config.max_seq_length, config.bucket_boundaries, config.head,
          config.bucketing) == (True, False, "/d", 64, [16, 32], "crf", False)
  assert config.learning_rate == 5e-5  # not the embedded default: data given


def test_embedded_default_settings_apply_only_to_unset_flags():
  _parse("--do_train", "--learning_rate=0.01")
  config = cli.config_from_flags()
  assert config.learning_rate == 0.01
  assert config.num_train_epochs == \
      config_lib.EMBEDDED_DEFAULT_SETTINGS["num_train_epochs"]
  assert config.train_batch_size == \
      config_lib.EMBEDDED_DEFAULT_SETTINGS["train_batch_size"]


def test_flagfile(tmp_path):
  flagfile = tmp_path / "run.flags"
  flagfile.write_text("--do_eval\n--max_seq_length=48\n--doc_stride=16\n")
  _parse(f"--flagfile={flagfile}", "--data_dir=/d")
  config = cli.config_from_flags()
  assert (config.do_eval, config.max_seq_length, config.doc_stride,
          config.data_dir) == (True, 48, 16, "/d")


def test_non_integer_bucket_boundaries():
  _parse("--do_train", "--bucket_boundaries=16,x")
  with pytest.raises(UserError, match="^--bucket_boundaries=16,x must be "
                     "comma-separated integers"):
    cli.config_from_flags()


def test_user_error_is_one_line_and_exit_1(capsys):
  code, lines = _run_main(capsys)
  assert code == 1
  assert lines == ["error: At least one of --do_train, --do_eval, "
                   "--do_predict or --do_export must be set."]


def test_max_seq_length_600_fails_before_any_work(capsys, tmp_path):
  out = tmp_path / "out"
  code, lines = _run_main(capsys, "--do_train", "--max_seq_length=600",
                          f"--output_dir={out}")
  assert code == 1
  assert lines == ["error: Cannot use sequence length 600 because the BERT "
                   "model was only trained up to sequence length 512 (the "
                   "built-in tiny model); pass --max_seq_length 512 or less."]
  assert not out.exists()


def test_output_dir_that_is_a_file(capsys, tmp_path):
  out = tmp_path / "out"
  out.write_text("")
  code, lines = _run_main(capsys, "--do_train", f"--output_dir={out}",
                          f"--train_file={ENGLISH}")
  assert code == 1
  assert lines == [f"error: --output_dir={out} is a file, not a directory; "
                   "pass a folder (it is created if missing)."]


@pytest.mark.parametrize("code_, cause", [
    (errno.ENOSPC, "no space left on device"),
    (errno.EACCES, "permission denied"),
    (errno.EROFS, "read-only file system"),
])
def test_full_or_read_only_disk(capsys, tmp_path, monkeypatch, code_, cause):
  # labels.txt is the first file a run writes after creating the folders.
  def write_bytes(path, data):
    raise OSError(code_, os.strerror(code_), path)
  monkeypatch.setattr(gfile_io, "write_bytes", write_bytes)
  out = tmp_path / "out"
  code, lines = _run_main(capsys, "--do_train", f"--output_dir={out}",
                          f"--train_file={ENGLISH}", "--max_seq_length=32",
                          "--doc_stride=8")
  assert code == 1
  assert lines == [f"error: {out}/labels.txt: {cause} (--output_dir={out})"]


def test_bad_data_is_one_line(capsys, tmp_path):
  bad = tmp_path / "train.txt"
  bad.write_text("EU B-ORG\nrejects O\nGerman B-MISC\ncall X-MISC\n",
                 encoding="utf-8")
  code, lines = _run_main(capsys, "--do_train", f"--train_file={bad}",
                          f"--output_dir={tmp_path / 'out'}")
  assert code == 1
  assert len(lines) == 1 and lines[0].startswith(f"error: {bad}:4")
  assert "X-MISC" in lines[0]


def test_internal_errors_keep_their_traceback(monkeypatch):
  def broken_run(config):
    raise KeyError("a bug")
  monkeypatch.setattr(train_lib, "run", broken_run)
  with pytest.raises(KeyError, match="a bug"):
    cli.run_main(["run_ner.py", "--do_train"])


def test_summary_is_printed(capsys, monkeypatch, tmp_path):
  monkeypatch.setattr(train_lib, "run", lambda config: {
      "output_dir": config.output_dir, "labels": ["O", "B-X"]})
  with pytest.raises(SystemExit) as raised:
    cli.run_main(["run_ner.py", "--do_export", f"--output_dir={tmp_path}",
                  "--data_dir=/d"])
  assert not raised.value.code  # success
  assert capsys.readouterr().out.split("\n")[1:4] == [
      "==== BERT-NER run finished ====", f"output_dir:   {tmp_path}",
      "labels:       O B-X"]
