"""training.atomic_files: a folder or a file is replaced whole or not at all, with the umask's permissions."""

import os
import re
import stat

import pytest

from training.atomic_files import staged_folder, write_file_atomic


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_staged_folder_replaces_out_whole_with_the_usual_permissions(tmp_path, umask_022):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old\n")
    linked = tmp_path / "elsewhere"
    linked.mkdir(mode=0o700)
    with staged_folder(str(out)) as staged:
        assert os.path.dirname(staged.path) == str(tmp_path) and staged.path.endswith(".partial")
        assert (out / "old.txt").is_file()  # untouched while the new folder is written
        private = os.path.join(staged.path, "model.bin")
        with open(os.open(private, os.O_CREAT | os.O_WRONLY, 0o600), "w") as fh:
            fh.write("new\n")
        os.symlink(linked, os.path.join(staged.path, "link"))
    assert sorted(os.listdir(out)) == ["link", "model.bin"]
    assert mode(out) == 0o755 and mode(out / "model.bin") == 0o644
    assert mode(linked) == 0o700  # a link inside is not followed
    assert staged.previous is None
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "out"]  # the earlier OUT and the staging are gone


def test_a_failed_write_leaves_out_as_it_was_and_nothing_beside(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old\n")
    with pytest.raises(RuntimeError, match="half way"), staged_folder(str(out)) as staged:
        open(os.path.join(staged.path, "new.txt"), "w").close()
        raise RuntimeError("half way")
    assert os.listdir(tmp_path) == ["out"] and os.listdir(out) == ["old.txt"]


def test_keep_previous_keeps_a_folder_that_is_not_empty_under_a_dated_name(tmp_path):
    out = tmp_path / "model"
    with staged_folder(str(out), keep_previous=True) as staged:  # no earlier one
        open(os.path.join(staged.path, "a"), "w").close()
    assert staged.previous is None
    with staged_folder(str(out), keep_previous=True) as staged:
        open(os.path.join(staged.path, "b"), "w").close()
    assert re.fullmatch(r"model\.previous-\d{8}-\d{6}", os.path.basename(staged.previous))
    assert os.listdir(staged.previous) == ["a"] and os.listdir(out) == ["b"]
    for name in os.listdir(out):
        os.unlink(out / name)
    with staged_folder(str(out), keep_previous=True) as again:  # an empty folder is only replaced
        pass
    assert again.previous is None
    assert sorted(os.listdir(tmp_path)) == sorted(["model", os.path.basename(staged.previous)])


def test_a_named_staging_folder_left_by_a_kill_is_started_again(tmp_path):
    out, staging = tmp_path / "model", tmp_path / "model.partial"
    staging.mkdir()
    (staging / "half.bin").write_text("x")
    with staged_folder(str(out), staging=str(staging)) as staged:
        assert staged.path == str(staging) and os.listdir(staging) == []
        (staging / "whole.bin").write_text("y")
    assert os.listdir(tmp_path) == ["model"] and os.listdir(out) == ["whole.bin"]


def test_write_file_atomic(tmp_path, umask_022):
    path = tmp_path / "result.json"
    path.write_text("old")

    def fail(tmp):
        with open(tmp, "w") as fh:
            fh.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_file_atomic(str(path), fail)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["result.json"]

    def write(tmp):
        with open(tmp, "w") as fh:
            fh.write("new")

    write_file_atomic(str(path), write)  # into mkstemp's file, which is private
    assert path.read_text() == "new" and mode(path) == 0o644 and os.listdir(tmp_path) == ["result.json"]
