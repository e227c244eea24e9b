"""Compiled programs that outlive a run: JAX's persistent compilation cache,
and counts of what each run compiled.

`setup()` (called by the entry points before they compile, never at import)
turns on JAX's persistent compilation cache: XLA executables are written to a
directory keyed by a hash of the program, its compile options (including the
`compiler_options` of a `jax.jit`), the devices and the JAX/XLA versions, so a
rerun, a resumed run or another process of a sweep that compiles the same
program reads it back instead of compiling it. The directory is, in order:
the `path` argument, the environment variable RDVAE_COMPILATION_CACHE, or
$XDG_CACHE_HOME/rdvae/jax (~/.cache/rdvae/jax); 'off' turns the cache off.

Sharing: JAX's file cache (jax 0.10, `lru_cache.LRUCache.put` without a size
limit) writes an entry with a plain `write_bytes`, so a reader can see a
half-written entry and a writer killed mid-write leaves a truncated entry that
is never rewritten (JAX then warns and recompiles it on every run). The cache
installed here is JAX's own class with one change: an entry is written to a
unique temporary file in the same directory and renamed into place
(`os.replace`, atomic on POSIX), so concurrent processes and killed runs see
either no entry or a whole one. JAX also writes from the first process of a
multi-process run only; here every process writes the entries it compiled
(`_write_from_every_process`), so that the others read theirs back on their
next run. If JAX's internals differ from what this expects, the plain JAX
cache is used instead.

Options: `known_options` keeps the XLA compile options (`compiler_options`
of a `jax.jit`) that this jaxlib accepts, so a program that asks for an
option a newer or older XLA lacks compiles without it instead of failing.

Counts: `Counter` listens to JAX's monitoring events (`jax.monitoring`) and
reports, per run, the programs compiled by XLA, the seconds spent tracing,
lowering and compiling (or reading from the cache), and the persistent cache's
hits and misses (a miss is a program compiled and written to the cache).
"""

from __future__ import annotations

import functools
import os
import threading
import uuid
import warnings
from typing import Any, Optional

ENV = 'RDVAE_COMPILATION_CACHE'
OFF = 'off'

# Cache every program, however fast it compiled. XLA:CPU compiles one
# operation run outside a jitted function (a model's initialisation or an
# evaluation's bookkeeping, run op by op) in 20-50 milliseconds and the
# training loops in seconds; reading an entry back takes a few milliseconds.
MIN_COMPILE_TIME_SECS = 0.0
# -1: no lower bound on the entry's size (JAX's default may raise it).
MIN_ENTRY_SIZE_BYTES = -1

_HITS = '/jax/compilation_cache/cache_hits'
_MISSES = '/jax/compilation_cache/cache_misses'  # compiled and written
_TRACE = '/jax/core/compile/jaxpr_trace_duration'
_LOWER = '/jax/core/compile/jaxpr_to_mlir_module_duration'
_COMPILE = '/jax/core/compile/backend_compile_duration'  # or read back


def default_path() -> str:
  """$XDG_CACHE_HOME/rdvae/jax, or ~/.cache/rdvae/jax."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'rdvae', 'jax')


def resolve_path(path: Optional[str] = None) -> Optional[str]:
  """The cache directory `setup(path)` uses, or None when it is 'off'."""
  path = path or os.environ.get(ENV) or default_path()
  return None if path.strip().lower() == OFF else os.path.abspath(
      os.path.expanduser(path))


_lock = threading.Lock()
_state: dict[str, Any] = {'done': False, 'path': None}


def setup(path: Optional[str] = None) -> Optional[str]:
  """Turns on the persistent compilation cache (idempotent).

  Args:
    path: the cache directory; default RDVAE_COMPILATION_CACHE, else
      `default_path()`; 'off' leaves the cache off.

  Returns:
    The directory in use, or None when the cache is off. A process keeps the
    first directory it set up (JAX opens its cache once): a later call
    without `path` returns it, one asking for another raises ValueError.
  """
  import jax  # pylint: disable=g-import-not-at-top
  _counts.install()
  with _lock:
    if _state['done']:  # set up before: keep it
      if path is not None and resolve_path(path) != _state['path']:
        raise ValueError(
            f'the compilation cache is already {_state["path"] or OFF!r}; '
            f'a process uses one cache directory (asked for {path!r})')
      return _state['path']
    path = resolve_path(path)
    _state['done'] = True
    if path is None:
      return None
    _make_writable(path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs',
                      MIN_COMPILE_TIME_SECS)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes',
                      MIN_ENTRY_SIZE_BYTES)
    jax.config.update('jax_compilation_cache_dir', path)
    if _install_atomic_cache(path):
      _write_from_every_process()
    _state['path'] = path
    return path


class CacheDirectoryError(ValueError):
  """The compilation cache directory cannot be created or written."""


def _make_writable(path: str) -> None:
  try:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
      raise PermissionError('not writable')
  except OSError as e:
    _state['done'] = False
    reason = e.strerror or str(e)
    raise CacheDirectoryError(
        f'the compilation cache directory {path!r} cannot be written '
        f'({reason}); pass --compilation_cache=DIR with a writable DIR (or '
        "'off'), or set RDVAE_COMPILATION_CACHE") from None


def cache_path() -> Optional[str]:
  """The directory set up in this process, or None."""
  return _state['path']


def _install_atomic_cache(path: str) -> bool:
  """Makes JAX's file cache write entries atomically (see the module doc)."""
  try:
    # pylint: disable=g-import-not-at-top
    from jax._src import compilation_cache as jax_cache
    from jax._src import lru_cache
    # pylint: enable=g-import-not-at-top
    if (getattr(jax_cache, '_cache', 0) is not None
        or not hasattr(lru_cache.LRUCache, 'put')
        or not hasattr(lru_cache, '_CACHE_SUFFIX')):
      return False
    suffix = lru_cache._CACHE_SUFFIX  # pylint: disable=protected-access
  except ImportError:
    return False

  class AtomicFileCache(lru_cache.LRUCache):
    """JAX's unbounded file cache, each entry written by rename."""

    def put(self, key: str, value: bytes) -> None:
      if not key:
        raise ValueError('key cannot be empty')
      target = os.path.join(str(self.path), f'{key}{suffix}')
      if os.path.exists(target):
        return
      tmp = f'{target}.tmp-{os.getpid()}-{uuid.uuid4().hex}'
      try:
        with open(tmp, 'wb') as f:
          f.write(value)
        os.replace(tmp, target)
      finally:
        if os.path.exists(tmp):
          os.remove(tmp)

  with jax_cache._cache_initialized_mutex:  # pylint: disable=protected-access
    jax_cache._cache = AtomicFileCache(path, max_size=-1)  # pylint: disable=protected-access
    jax_cache._cache_initialized = True  # pylint: disable=protected-access
  return True


def _write_from_every_process() -> bool:
  """Lets every process of a multi-process run write its cache entries.

  JAX writes entries from process 0 only (`compiler._cache_write`), so that
  processes sharing a remote directory do not contend. On the CPU the keys
  of the other processes' programs differ from process 0's (all of them
  miss, the train loop too), so with JAX's writes alone every process but
  the first compiles every program on every run, a resumed one included.
  The cache here is a local directory written by rename
  (`_install_atomic_cache`), where concurrent writers are safe, so every
  process writes what it compiled, under JAX's other conditions (no host
  callbacks, `jax_persistent_cache_min_compile_time_secs`). If JAX's
  function is not the one expected, JAX's behaviour stays.
  """
  try:
    # pylint: disable=g-import-not-at-top
    import inspect
    import jax
    from jax._src import compilation_cache as jax_cache
    from jax._src import compiler
    from jax._src import distributed
    # pylint: enable=g-import-not-at-top
    original = compiler._cache_write  # pylint: disable=protected-access
    expected = ['cache_key', 'compile_time_secs', 'module_name', 'backend',
                'executable', 'host_callbacks']
    if (list(inspect.signature(original).parameters) != expected
        or not hasattr(jax_cache, 'put_executable_and_time')
        or not hasattr(distributed.global_state, 'process_id')):
      return False
  except (ImportError, AttributeError, TypeError, ValueError):
    return False
  if getattr(original, 'every_process', False):
    return True

  def cache_write(cache_key, compile_time_secs, module_name, backend,
                  executable, host_callbacks):
    if distributed.global_state.process_id == 0 or host_callbacks:
      return original(cache_key, compile_time_secs, module_name, backend,
                      executable, host_callbacks)
    # JAX's other condition: programs quicker to compile than the threshold
    # are not kept.
    threshold = jax.config.jax_persistent_cache_min_compile_time_secs
    if compile_time_secs < threshold:
      return None
    try:
      jax_cache.put_executable_and_time(cache_key, module_name, executable,
                                        backend, int(compile_time_secs))
    except Exception as e:  # pylint: disable=broad-except
      warnings.warn(f'Error writing persistent compilation cache entry for '
                    f'{module_name!r}: {type(e).__name__}: {e}')
    return None

  cache_write.every_process = True
  compiler._cache_write = cache_write  # pylint: disable=protected-access
  return True


def known_options(options: dict[str, Any]) -> dict[str, Any]:
  """The entries of `options` that XLA accepts as compile options here.

  Each (name, value) is tried once per process on a trivial program; XLA
  rejects an unknown name ('No such compile option') or a value it cannot
  parse with INVALID_ARGUMENT, and such entries are left out.
  """
  return {name: value for name, value in options.items()
          if _accepts(name, value)}


@functools.cache
def _accepts(name: str, value: Any) -> bool:
  import jax  # pylint: disable=g-import-not-at-top
  probe = jax.jit(lambda: 0, compiler_options={name: value})
  try:
    probe.lower().compile()
  except Exception as e:  # pylint: disable=broad-except
    if 'INVALID_ARGUMENT' in str(e) or 'compile option' in str(e):
      return False
    raise
  return True


class _Counts:
  """Running totals of JAX's compilation events in this process."""

  def __init__(self):
    self._installed = False
    self.totals = {'programs': 0, 'trace_seconds': 0.0,
                   'lower_seconds': 0.0, 'compile_seconds': 0.0,
                   'cache_hits': 0, 'cache_misses': 0}

  def install(self) -> None:
    with _lock:
      if self._installed:
        return
      import jax  # pylint: disable=g-import-not-at-top
      jax.monitoring.register_event_listener(self._event)
      jax.monitoring.register_event_duration_secs_listener(self._duration)
      self._installed = True

  def _event(self, event: str, **kwargs) -> None:
    del kwargs
    if event == _HITS:
      self.totals['cache_hits'] += 1
    elif event == _MISSES:
      self.totals['cache_misses'] += 1

  def _duration(self, event: str, duration_secs: float, **kwargs) -> None:
    del kwargs
    if event == _COMPILE:
      self.totals['programs'] += 1
      self.totals['compile_seconds'] += duration_secs
    elif event == _TRACE:
      self.totals['trace_seconds'] += duration_secs
    elif event == _LOWER:
      self.totals['lower_seconds'] += duration_secs


_counts = _Counts()


class Counter:
  """What was compiled between `Counter()` and `report()`.

  Example:
    counter = compilation.Counter()
    ...  # build and run programs
    summary = counter.report()  # {'seconds': ..., 'cache_hits': ..., ...}
  """

  def __init__(self):
    _counts.install()
    self._start = dict(_counts.totals)

  def report(self) -> dict[str, Any]:
    """The counts since construction.

    Returns:
      `programs` (XLA compilations requested: compiled or read from the
      persistent cache), `cache_hits`, `cache_misses` (compiled and written
      to the cache), `seconds` (tracing + lowering + compiling or reading
      back), those three parts, and `cache_dir` (None when off).
    """
    now = _counts.totals
    out: dict[str, Any] = {k: now[k] - self._start[k] for k in now}
    for k in ('trace_seconds', 'lower_seconds', 'compile_seconds'):
      out[k] = round(out[k], 3)
    out['seconds'] = round(out['trace_seconds'] + out['lower_seconds']
                           + out['compile_seconds'], 3)
    out['cache_dir'] = cache_path()
    return out


def describe(report: dict[str, Any]) -> str:
  """One log line for a `Counter.report()`."""
  where = report['cache_dir'] or 'off'
  return (f'compilation: {report["programs"]} programs, '
          f'{report["seconds"]:.1f} s (trace {report["trace_seconds"]:.1f}, '
          f'lower {report["lower_seconds"]:.1f}, '
          f'compile/read {report["compile_seconds"]:.1f}); persistent cache '
          f'{report["cache_hits"]} hits, {report["cache_misses"]} misses '
          f'({where})')
