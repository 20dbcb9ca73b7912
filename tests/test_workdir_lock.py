"""One writer per workdir: `workdir.RunLock` and the lock of `workdir.RunDirectory`."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import pytest

from pats_jax.training import validate
from pats_jax.training import workdir as workdir_lib


def _dead_pid() -> int:
  """The pid of a process that has exited (and been reaped)."""
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def _write_lock(folder, **holder):
  (folder / workdir_lib.LOCK_NAME).write_text(json.dumps(holder))


def test_second_lock_fails_at_once_naming_the_holder(tmp_path):
  first = workdir_lib.RunLock(tmp_path)
  first.acquire()
  holder = json.loads((tmp_path / "run.lock").read_text())
  assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
  second = workdir_lib.RunLock(tmp_path)
  with pytest.raises(workdir_lib.WorkdirError) as error:
    second.acquire()
  message = str(error.value)
  assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
  assert holder["started"] in message and "in use by another run" in message
  assert isinstance(error.value, validate.ConfigError)  # train.py: message, exit status 2.
  first.release()
  assert not (tmp_path / "run.lock").exists()
  second.acquire()  # Free again.
  second.release()


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, caplog):
  pid = _dead_pid()
  _write_lock(tmp_path, host=socket.gethostname(), pid=pid, started="earlier")
  lock = workdir_lib.RunLock(tmp_path)
  lock.acquire()
  assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
  assert f"pid {pid}" in caplog.text and "no longer runs" in caplog.text
  assert sorted(p.name for p in tmp_path.iterdir()) == ["run.lock"]  # No stale file left.
  lock.release()


def test_lock_of_a_reused_pid_is_taken_over(tmp_path):
  # This process's pid, but a process start that is not this process's: the pid was reused.
  start = workdir_lib._process_start(os.getpid())
  if start is None:
    pytest.skip("no /proc: process start times are unknown here")
  _write_lock(tmp_path, host=socket.gethostname(), pid=os.getpid(), process_start=start - 1)
  lock = workdir_lib.RunLock(tmp_path)
  lock.acquire()
  lock.release()


def test_lock_of_a_live_process_is_not_taken_over(tmp_path):
  start = workdir_lib._process_start(os.getppid())
  _write_lock(tmp_path, host=socket.gethostname(), pid=os.getppid(), process_start=start)
  with pytest.raises(workdir_lib.WorkdirError, match=f"pid {os.getppid()}"):
    workdir_lib.RunLock(tmp_path).acquire()
  assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getppid()


def test_lock_from_another_host_is_never_taken_over(tmp_path):
  _write_lock(tmp_path, host="another-host", pid=_dead_pid(), started="2026-01-01 00:00:00 UTC")
  with pytest.raises(workdir_lib.WorkdirError) as error:
    workdir_lib.RunLock(tmp_path).acquire()
  message = str(error.value)
  assert "on host another-host" in message
  assert f"delete {tmp_path / 'run.lock'}" in message and "its host is gone" in message
  assert (tmp_path / "run.lock").exists()


def test_unreadable_lock_is_held(tmp_path):
  (tmp_path / "run.lock").write_text("{not json")
  with pytest.raises(workdir_lib.WorkdirError, match="unknown process"):
    workdir_lib.RunLock(tmp_path).acquire()


def test_release_leaves_a_lock_that_is_not_its_own(tmp_path):
  lock = workdir_lib.RunLock(tmp_path)
  lock.acquire()
  _write_lock(tmp_path, host="another-host", pid=1)  # Removed and retaken by someone else.
  lock.release()
  assert json.loads((tmp_path / "run.lock").read_text())["host"] == "another-host"


def test_run_directory_releases_the_lock_on_an_exception(tmp_path):
  from _train_helpers import tiny_config

  config = tiny_config()
  with (
    pytest.raises(RuntimeError, match="inside the run"),
    workdir_lib.RunDirectory(tmp_path / "run", config) as run,
  ):
    run.open()
    assert (tmp_path / "run" / "run.lock").exists()
    raise RuntimeError("inside the run")
  assert not (tmp_path / "run" / "run.lock").exists()


def test_unwritable_workdir_is_a_clear_error(tmp_path, monkeypatch):
  from _train_helpers import tiny_config

  blocker = tmp_path / "file"
  blocker.write_text("")  # A workdir below a file cannot be created, whoever runs the test.
  with pytest.raises(workdir_lib.WorkdirError, match=r"cannot create the workdir .*writable"):
    workdir_lib.RunDirectory(blocker / "run", tiny_config()).open()

  # A read-only filesystem (EROFS): even root cannot create the lock file.
  real_open = os.open

  def read_only(path, flags, *args):
    if str(path).startswith(str(tmp_path)) and flags & os.O_CREAT:
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    return real_open(path, flags, *args)

  monkeypatch.setattr(os, "open", read_only)
  (tmp_path / "existing").mkdir()
  with pytest.raises(workdir_lib.WorkdirError, match=r"cannot write to the workdir .*Read-only"):
    workdir_lib.RunDirectory(tmp_path / "existing", tiny_config()).open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_a_clear_error(tmp_path):
  from _train_helpers import tiny_config

  (tmp_path / "run").mkdir()
  (tmp_path / "run").chmod(0o555)
  try:
    with pytest.raises(workdir_lib.WorkdirError, match="cannot write to the workdir"):
      workdir_lib.RunDirectory(tmp_path / "run", tiny_config()).open()
  finally:
    (tmp_path / "run").chmod(0o755)


def test_a_new_workdir_is_locked_at_once_and_removed_if_the_run_never_starts(tmp_path):
  from _train_helpers import tiny_config

  path = tmp_path / "runs" / "new" / "run"
  with (
    pytest.raises(RuntimeError, match="data not found"),
    workdir_lib.RunDirectory(path, tiny_config()) as run,
  ):
    run.open()
    assert (path / "run.lock").exists()
    # A second process on the same new folder fails at once, naming the holder.
    with pytest.raises(workdir_lib.WorkdirError, match=f"pid {os.getpid()}"):
      workdir_lib.RunDirectory(path, tiny_config()).open()
    raise RuntimeError("data not found")
  assert not (tmp_path / "runs").exists()  # Every folder this start made is gone again.


def test_a_started_run_keeps_its_new_workdir(tmp_path):
  from _train_helpers import tiny_config

  path = tmp_path / "run"
  with (
    pytest.raises(RuntimeError, match="after the start"),
    workdir_lib.RunDirectory(path, tiny_config()) as run,
  ):
    run.open()
    run.record_start(resumed_from=None)
    raise RuntimeError("after the start")
  assert (path / "config.json").is_file() and not (path / "run.lock").exists()


def test_an_existing_workdir_is_never_removed(tmp_path):
  from _train_helpers import tiny_config

  path = tmp_path / "run"
  path.mkdir()
  with pytest.raises(RuntimeError), workdir_lib.RunDirectory(path, tiny_config()) as run:
    run.open()
    raise RuntimeError("failed start")
  assert path.is_dir()
