"""Claims: which sweep runner is working on a point, shared through files.

Several runners (one per accelerator, or a second one started by mistake) may
work on one sweep directory. A point directory holds

  claim.lock   an empty file; a runner owns the point while it holds an
               exclusive `flock` on it. The kernel drops the lock when the
               owner exits, however it dies (SIGKILL included), so a dead
               runner's claim is free at once, with no timeout to guess.
  claim.json   who owns it: {'pid', 'host', 'token', 'started', 'heartbeat'}
               (Unix seconds), written atomically when the point is claimed,
               its heartbeat refreshed every `heartbeat_seconds` by a
               thread, removed on release. Only for readers (the summary's
               'running' status): a claim.json left by a dead runner is
               stale and the next owner overwrites it.

`flock` needs a filesystem that shares locks between the processes that use
it: any local filesystem, and NFSv4 or Lustre (mounted with flock) across
hosts.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
import time
import uuid
from typing import Any, Optional

from rdvae.files import atomic_files

LOCK_FILE = 'claim.lock'
CLAIM_FILE = 'claim.json'
HEARTBEAT_SECONDS = 30.0
# A claim from another host counts as live while its heartbeat is younger.
STALE_SECONDS = 600.0


class Claim:
  """A held claim on one point directory; `release()` gives it up."""

  def __init__(self, directory: str, fd: int,
               heartbeat_seconds: float = HEARTBEAT_SECONDS):
    self.directory = directory
    self.path = os.path.join(directory, CLAIM_FILE)
    self._fd = fd
    now = time.time()
    self.record = {'pid': os.getpid(), 'host': socket.gethostname(),
                   'token': uuid.uuid4().hex, 'started': now,
                   'heartbeat': now}
    atomic_files.write_json_atomic(self.path, self.record)
    self._stop = threading.Event()
    self._thread = threading.Thread(
        target=self._beat, args=(heartbeat_seconds,), daemon=True,
        name=f'heartbeat {os.path.basename(directory)}')
    self._thread.start()

  def _beat(self, seconds: float) -> None:
    while not self._stop.wait(seconds):
      self.record['heartbeat'] = time.time()
      try:
        atomic_files.write_json_atomic(self.path, self.record)
      except OSError:  # e.g. the directory went away; the lock still holds
        pass

  def release(self) -> None:
    """Stops the heartbeat, removes claim.json and drops the lock."""
    if self._fd is None:
      return
    self._stop.set()
    self._thread.join()
    try:
      os.remove(self.path)
    except FileNotFoundError:
      pass
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self) -> 'Claim':
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def try_claim(directory: str, heartbeat_seconds: float = HEARTBEAT_SECONDS
              ) -> Optional[Claim]:
  """Claims `directory` (created if needed), or returns None when a live
  runner holds it. A claim left by a runner that died is taken over."""
  os.makedirs(directory, exist_ok=True)
  fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT,
               0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      return None
    raise
  try:
    return Claim(directory, fd, heartbeat_seconds)
  except BaseException:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    raise


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, owned by another user
    return True
  return True


def live_owner(directory: str, now: Optional[float] = None,
               stale_seconds: float = STALE_SECONDS
               ) -> Optional[dict[str, Any]]:
  """The claim.json record of a live owner of `directory`, else None.

  Live: on this host, its pid exists (and its heartbeat is younger than
  `stale_seconds`, which guards against a reused pid); on another host, its
  heartbeat is younger than `stale_seconds`. A claim.json that is damaged
  or lacks these fields names no owner (owners write it whole). For display
  only: ownership itself is the lock (`try_claim`).
  """
  try:
    record = atomic_files.read_json(os.path.join(directory, CLAIM_FILE))
  except atomic_files.DamagedFileError:
    return None
  if not record:
    return None
  now = time.time() if now is None else now
  try:
    fresh = now - float(record['heartbeat']) < stale_seconds
    if record['host'] == socket.gethostname():
      return record if fresh and _pid_alive(int(record['pid'])) else None
  except (KeyError, TypeError, ValueError):
    return None
  return record if fresh else None
