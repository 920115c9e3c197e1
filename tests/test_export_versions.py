"""Version folders of an export base: which names count, latest, next."""

import os

import pytest

from trainer.export import export_versions


def _base(tmp_path):
  """1/ and 3/ complete, 4/ empty, a file 5, a staging folder, a non-number."""
  base = tmp_path / "export"
  for name in ("1", "3", ".tmp-export-ab12", "7a"):
    (base / name).mkdir(parents=True)
    (base / name / "saved_model.pb").write_bytes(b"")
  (base / "4").mkdir()
  (base / "5").write_text("not a folder")
  (base / "notes.txt").write_text("")
  return str(base)


def test_version_numbers_keep_integer_names_only():
  assert export_versions.version_numbers(
      ["3", "1/", ".tmp-export-ab12", "7a", "notes.txt", "10", "-2"]) == [
          1, 3, 10]
  assert export_versions.version_numbers([]) == []


def test_list_versions_needs_a_saved_model(tmp_path):
  base = _base(tmp_path)
  assert export_versions.list_versions(base) == [1, 3]
  assert export_versions.list_versions(os.path.join(base, "missing")) == []


def test_latest_version_dir(tmp_path):
  base = _base(tmp_path)
  assert export_versions.latest_version_dir(base) == os.path.join(base, "3")
  version_dir = os.path.join(base, "1")
  assert export_versions.latest_version_dir(version_dir) == version_dir
  with pytest.raises(ValueError, match="holds no saved_model.pb and no "
                                       "numbered version folder"):
    export_versions.latest_version_dir(os.path.join(base, "4"))


def test_next_version_counts_every_integer_name(tmp_path):
  base = _base(tmp_path)
  # 4 (empty) and 5 (a file) are taken too: a rename onto them would fail.
  assert export_versions.next_version(base) == 6
  assert export_versions.next_version(str(tmp_path / "none")) == 1
  (tmp_path / "empty").mkdir()
  assert export_versions.next_version(str(tmp_path / "empty")) == 1


class TrailingSlashFiles:
  """An object store as gfile lists it: folders with a trailing "/"."""

  def __init__(self, entries, complete):
    self.entries = entries
    self.complete = complete

  def listdir(self, path):
    assert path == "gs://bucket/export"
    return list(self.entries)

  def isdir(self, path):
    return path == "gs://bucket/export"

  def exists(self, path):
    return path in self.complete


def test_file_system_is_pluggable():
  files = TrailingSlashFiles(
      ["1/", "2/", ".tmp-export-x/", "9/"],
      {"gs://bucket/export/1/saved_model.pb",
       "gs://bucket/export/2/saved_model.pb"})
  assert export_versions.list_versions("gs://bucket/export", files) == [1, 2]
  assert export_versions.latest_version_dir("gs://bucket/export", files) == \
      "gs://bucket/export/2"
  assert export_versions.next_version("gs://bucket/export", files) == 10



def test_remove_stale_staging_takes_old_staging_folders_only(tmp_path):
  base = tmp_path / "export"
  for name, age_s in ((".tmp-export-old", 3601), (".tmp-export-young", 3599),
                      ("1", 90000), (".other-old", 90000)):
    (base / name).mkdir(parents=True)
    (base / name / "saved_model.pb").write_bytes(b"")
    os.utime(base / name, (1_000_000 - age_s, 1_000_000 - age_s))
  (base / ".tmp-export-file").write_text("a file, not a folder")
  removed = export_versions.remove_stale_staging(str(base), now=1_000_000)
  assert removed == [os.path.join(str(base), ".tmp-export-old")]
  assert sorted(os.listdir(base)) == [".other-old", ".tmp-export-file",
                                      ".tmp-export-young", "1"]
  assert export_versions.remove_stale_staging(
      str(tmp_path / "missing")) == []


def test_remove_stale_staging_through_a_file_system_object():
  class Store(TrailingSlashFiles):
    removed = []

    def stat(self, path):
      class Stat:
        mtime_nsec = {"gs://bucket/export/.tmp-export-a": 0}.get(
            path, 10**13)
      return Stat()

    def rmtree(self, path):
      self.removed.append(path)

  files = Store([".tmp-export-a/", ".tmp-export-b/", "1/"], set())
  files.isdir = lambda path: True
  assert export_versions.remove_stale_staging(
      "gs://bucket/export", files, now=10_000) == [
          "gs://bucket/export/.tmp-export-a"]
  assert files.removed == ["gs://bucket/export/.tmp-export-a"]
