"""Fault injection for the crash tests: a process kills itself at a named
point of a run when the environment asks for it.

`RDVAE_FAULT=<point>@<step>[:<signal>]` (e.g. `checkpoint@4`,
`dispatch@6:SIGTERM`) makes `point(<point>, <step>)` send the process
<signal> (SIGKILL by default). Points:

  dispatch     after a training dispatch that ended at <step> returned;
  checkpoint   during the save of the checkpoint of <step>: its files are
               written to orbax's temporary directory, not yet renamed;
  metrics      while writing the metrics.jsonl record of <step> that holds
               validation figures (an evaluation), after half of its line.

Unset (always, outside tests), `point` does nothing.
"""

from __future__ import annotations

import os
import signal

ENV = 'RDVAE_FAULT'


def _parse() -> tuple[str, int, int] | None:
  value = os.environ.get(ENV)
  if not value:
    return None
  target, _, name = value.partition(':')
  where, _, step = target.partition('@')
  return where, int(step), getattr(signal, name or 'SIGKILL')


def active(where: str) -> bool:
  """Whether a fault is set for point `where` (at any step)."""
  fault = _parse()
  return fault is not None and fault[0] == where


def point(where: str, step: int) -> None:
  """Sends the configured signal to this process at (`where`, `step`)."""
  fault = _parse()
  if fault is not None and fault[:2] == (where, int(step)):
    os.kill(os.getpid(), fault[2])
