"""What a run writes to its workdir: config.json, metrics.jsonl, TensorBoard
events, images and results.json.

Every file is written so that a crash cannot corrupt what was there before:
whole files go through a temporary file, fsync and `os.replace` (and an
fsync of the directory, so the rename itself survives a power cut);
metrics.jsonl is append-only, one JSON object per logged step, and a resumed
run first drops the lines written after the step it resumed from and a last
line torn by a kill, so the file of a killed and resumed run equals that of
an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Callable, Mapping, Optional

import ml_collections
import numpy as np

from rdvae.runtime import faults

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.jsonl'
RESULTS_FILE = 'results.json'


class WorkdirConflictError(RuntimeError):
  """The workdir holds a run whose config differs from the one given."""


def _to_json_value(value: Any) -> Any:
  """Turns numpy/JAX scalars into floats and ints; NaN and inf as strings."""
  if isinstance(value, Mapping):
    return {str(k): _to_json_value(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_to_json_value(v) for v in value]
  if hasattr(value, 'shape') and getattr(value, 'shape', None) != ():
    return [_to_json_value(v) for v in np.asarray(value).tolist()]
  if hasattr(value, 'item'):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def write_json_atomic(path: str, payload: Mapping[str, Any]) -> None:
  """Writes JSON through a temporary file so a crash leaves the old file."""
  write_text_atomic(path, json.dumps(_to_json_value(payload), indent=2,
                                     sort_keys=True) + '\n')


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` so that a crash at any moment leaves either the
  old file or the new one: a unique temporary file beside it (so several
  processes may write `path` at once), fsync, rename, fsync of the directory
  (e.g. results.json, a sweep's summary.csv, a report's files)."""
  directory, base = os.path.split(path)
  fd, tmp = tempfile.mkstemp(prefix=f'.{base}.', suffix='.tmp',
                             dir=directory or '.')
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  fsync_directory(directory or '.')


def fsync_directory(path: str) -> None:
  """Makes a rename or a new file in directory `path` durable (POSIX)."""
  if os.name != 'posix':
    return
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def read_json(path: str) -> dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  """A nested dict as {dotted key: leaf}, e.g. {'a': {'b': 1}} -> {'a.b': 1}."""
  if not isinstance(tree, Mapping):
    return {prefix[:-1]: tree}
  flat = {}
  for key, value in tree.items():
    flat.update(flatten(value, f'{prefix}{key}.'))
  return flat


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Creates the workdir and its config.json, or checks the one there.

  Returns:
    True when the workdir already held a run of the same config (a resume).

  Raises:
    WorkdirConflictError: config.json exists with a different config or is
      unreadable, or the workdir is a file; what is there is left untouched.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirConflictError(
        f'workdir {workdir!r} is a file, not a directory; choose another '
        'workdir')
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path):
    check_workdir(workdir, config)
    return True
  os.makedirs(workdir, exist_ok=True)
  write_json_atomic(path, config_to_dict(config))
  return False


def check_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises WorkdirConflictError unless workdir's config.json is `config`
  (e.g. on the processes that wait for process 0's `prepare_workdir`)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise WorkdirConflictError(f'workdir {workdir!r} has no {CONFIG_FILE}')
  try:
    existing = read_json(path)
  except (ValueError, OSError) as e:
    raise WorkdirConflictError(
        f'workdir {workdir!r} holds a {CONFIG_FILE} that cannot be read '
        f'({e}); it is not a run of this config: choose another workdir or '
        'remove it yourself') from None
  wanted = config_to_dict(config)
  if existing != wanted:
    changed = sorted(_diff_keys(existing, wanted))
    raise WorkdirConflictError(
        f'workdir {workdir!r} holds a run with a different config '
        f'(keys that differ: {changed}); choose another workdir or remove '
        'it yourself')


def _diff_keys(a: Mapping, b: Mapping, prefix: str = '') -> set[str]:
  keys = set()
  for key in set(a) | set(b):
    name = f'{prefix}{key}'
    va, vb = a.get(key), b.get(key)
    if isinstance(va, Mapping) and isinstance(vb, Mapping):
      keys |= _diff_keys(va, vb, name + '.')
    elif va != vb:
      keys.add(name)
  return keys


def write_results(workdir: str, results: Mapping[str, Any]) -> None:
  write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """All records of metrics.jsonl, in order.

  A last line without its newline that is not valid JSON (torn by a kill
  mid-write) is left out; a bad line anywhere else raises ValueError naming
  the file and line.
  """
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.read().split('\n')
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if number == len(lines):  # no newline after it: a torn last write
        break
      raise ValueError(f'{path}, line {number}: not a JSON record ({e})'
                       ) from None
  return records


class MetricWriter:
  """Writes scalars to metrics.jsonl and TensorBoard, images to TensorBoard.

  Args:
    workdir: the run's directory.
    start_step: the step the run (re)starts from; records with a larger step
      left by an interrupted run are dropped, since they will be rewritten.
    tensorboard: also write TensorBoard event files (via tensorboardX, which
      needs no TensorFlow).
    keep: which existing records to keep (default: step <= start_step).
  """

  def __init__(self, workdir: str, start_step: int = 0,
               tensorboard: bool = True,
               keep: Optional[Callable[[Mapping[str, Any]], bool]] = None):
    self.workdir = workdir
    self._path = os.path.join(workdir, METRICS_FILE)
    if keep is None:
      keep = lambda record: record.get('step', 0) <= start_step
    kept = [r for r in read_metrics(workdir) if keep(r)]
    tmp = f'{self._path}.tmp'
    with open(tmp, 'w') as f:
      for record in kept:
        f.write(json.dumps(record, sort_keys=True) + '\n')
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self._path)
    self._file = open(self._path, 'a')
    self._tb = None
    if tensorboard:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tb = tensorboardX.SummaryWriter(
          os.path.join(workdir, 'tensorboard'), purge_step=start_step + 1)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    record = {'step': int(step)}
    record.update(_to_json_value(dict(scalars)))
    line = json.dumps(record, sort_keys=True) + '\n'
    if faults.active('metrics') and any(k.startswith('validation/')
                                        for k in record):
      self._file.write(line[:len(line) // 2])  # a torn line, for the tests
      self._file.flush()
      faults.point('metrics', step)
      line = line[len(line) // 2:]
    self._file.write(line)
    self._file.flush()
    if self._tb is not None:
      for name, value in scalars.items():
        value = float(np.asarray(value))
        self._tb.add_scalar(name, value, global_step=int(step))

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    """Images as [H, W] or [H, W, C] arrays with values in [0, 1]."""
    if self._tb is None:
      return
    for name, image in images.items():
      image = np.asarray(image, np.float32)
      dataformats = 'HW' if image.ndim == 2 else 'HWC'
      self._tb.add_image(name, image, global_step=int(step),
                         dataformats=dataformats)

  def flush(self) -> None:
    self._file.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    self._file.close()
    if self._tb is not None:
      self._tb.close()

  def __enter__(self) -> 'MetricWriter':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class NullWriter:
  """MetricWriter's interface writing nothing: the writer of every process
  but the one that writes the run's files."""

  def __init__(self, workdir: str):
    self.workdir = workdir

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    del step, scalars

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    del step, images

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def latest_record(workdir: str, key: str) -> Optional[dict[str, Any]]:
  """The last metrics.jsonl record holding `key`, or None."""
  for record in reversed(read_metrics(workdir)):
    if key in record:
      return record
  return None


def image_grid(columns: list[Any], pad: int = 1, gap: int = 4) -> np.ndarray:
  """Tiles image columns side by side: row i shows example i of every column.

  Args:
    columns: a list of groups; each group is a list of [N, H, W] or
      [N, H, W, 1] arrays with values in [0, 1] (e.g. data | one sample |
      mean of 5 decodes). Columns within a group are separated by `pad`
      pixels, groups by `gap` pixels of background (0.5 grey).
    pad: pixels between images.
    gap: pixels between groups.

  Returns:
    A float32 [H', W'] image in [0, 1].
  """
  blocks = []
  for group in columns:
    tiles = [np.asarray(c, np.float32).reshape(np.shape(c)[:3])
             for c in group]
    n, h, w = tiles[0].shape
    block = np.full((n * (h + pad) + pad, len(tiles) * (w + pad) + pad), 0.5,
                    np.float32)
    for j, tile in enumerate(tiles):
      for i in range(n):
        top, left = pad + i * (h + pad), pad + j * (w + pad)
        block[top:top + h, left:left + w] = tile[i]
    blocks.append(block)
  height = max(b.shape[0] for b in blocks)
  parts = []
  for k, block in enumerate(blocks):
    if k:
      parts.append(np.full((height, gap), 0.5, np.float32))
    padded = np.full((height, block.shape[1]), 0.5, np.float32)
    padded[:block.shape[0]] = block
    parts.append(padded)
  return np.concatenate(parts, axis=1)


def write_png(path: str, image: Any) -> None:
  """Writes a [H, W] image with values in [0, 1] as an 8-bit grey PNG."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pixels = np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
  tmp = f'{path}.tmp.png'
  Image.fromarray(pixels, mode='L').save(tmp)
  os.replace(tmp, path)


def write_sample_grid(workdir: str, writer: Optional['MetricWriter'],
                      step: int, samples: Mapping[str, Any]) -> str:
  """The Fig. 4 style grid of one evaluation, as PNG and in TensorBoard.

  Left block, reconstructions: data | one x' ~ d(x'|z), z ~ e(z|x) | mean of
  the decodes with that same z. Right block, generations: one x ~ d(x|z),
  z ~ m(z) | mean of the decodes with that same z.

  Args:
    workdir: the run's directory; the PNG goes to images/grid_<step>.png.
    writer: the run's MetricWriter (or None for the PNG only).
    step: the training step.
    samples: the dict of `evaluation.steps.make_sample_fn`.

  Returns:
    The PNG's path.
  """
  grid = image_grid([
      [samples['data'], samples['reconstruction'],
       samples['reconstruction_mean']],
      [samples['generation'], samples['generation_mean']]])
  directory = os.path.join(workdir, 'images')
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f'grid_{int(step):08d}.png')
  write_png(path, grid)
  if writer is not None:
    writer.write_images(step, {'samples/grid': grid})
  return path
