"""metrics.jsonl, TensorBoard events and sample images: what a run logs as
it trains, with the reader of metrics.jsonl beside its writer.

metrics.jsonl is append-only, one JSON object per logged step; a resumed run
first drops the lines written after the step it resumed from and a last line
torn by a kill, so the file of a killed and resumed run equals that of an
uninterrupted one. NaN and inf are written as strings.
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from rdvae.files import atomic_files
from rdvae.runtime import faults

METRICS_FILE = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'
IMAGES_DIR = 'images'
GRID_FORMAT = 'grid_{step:08d}.png'
# A grid PNG's column labels (data | x ~ d(x|z), z ~ e(z|x) | mean of the
# decodes || x ~ d(x|z), z ~ m(z) | mean), in a white strip of GRID_HEADER
# rows above the tiles; the PNG's text chunk HEADER_KEY says how many.
GRID_LABELS = ('data', 'recon', 'mean', 'gen', 'mean')
GRID_HEADER = 12
HEADER_KEY = 'rdvae-label-rows'


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """All records of metrics.jsonl, in order ([] when there is none).

  A last line without its newline that is not valid JSON (torn by a kill
  mid-write) is left out.

  Raises:
    atomic_files.DamagedFileError: a line other than the last is not a JSON
      object (the message names the line).
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
      record = json.loads(line)
    except json.JSONDecodeError as e:
      if number == len(lines):  # no newline after it: a torn last write
        break
      raise atomic_files.DamagedFileError(
          path, f'line {number}: not a JSON record ({e})') from None
    if not isinstance(record, dict):
      raise atomic_files.DamagedFileError(
          path, f'line {number}: not a JSON object')
    records.append(record)
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
          os.path.join(workdir, TENSORBOARD_DIR), purge_step=start_step + 1)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    record = {'step': int(step)}
    record.update(atomic_files.to_json_value(dict(scalars)))
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


def image_grid(columns: list[Any], pad: int = 1, gap: int = 4) -> np.ndarray:
  """Tiles image columns side by side: row i shows example i of every column.

  Args:
    columns: a list of groups; each group is a list of [N, H, W] or
      [N, H, W, C] arrays with values in [0, 1] (e.g. data | one sample |
      mean of 5 decodes). Columns within a group are separated by `pad`
      pixels, groups by `gap` pixels of background (0.5 grey).
    pad: pixels between images.
    gap: pixels between groups.

  Returns:
    A float32 [H', W'] image in [0, 1] (grey images), or [H', W', C] (C > 1).
  """
  blocks = []
  for group in columns:
    tiles = [np.asarray(c, np.float32) for c in group]
    tiles = [t if t.ndim == 4 else t[..., None] for t in tiles]
    n, h, w, channels = tiles[0].shape
    block = np.full((n * (h + pad) + pad, len(tiles) * (w + pad) + pad,
                     channels), 0.5, np.float32)
    for j, tile in enumerate(tiles):
      for i in range(n):
        top, left = pad + i * (h + pad), pad + j * (w + pad)
        block[top:top + h, left:left + w] = tile[i]
    blocks.append(block)
  height = max(b.shape[0] for b in blocks)
  parts = []
  for k, block in enumerate(blocks):
    if k:
      parts.append(np.full((height, gap, blocks[0].shape[-1]), 0.5,
                           np.float32))
    padded = np.full((height,) + block.shape[1:], 0.5, np.float32)
    padded[:block.shape[0]] = block
    parts.append(padded)
  grid = np.concatenate(parts, axis=1)
  return grid[..., 0] if grid.shape[-1] == 1 else grid


def write_png(path: str, image: Any, header: Sequence[tuple[float, str]] = ()
              ) -> None:
  """Writes a [H, W] (or [H, W, 3]) image with values in [0, 1] as an
  8-bit grey (colour) PNG; with
  `header`, (x, label) pairs, a white strip of `GRID_HEADER` rows above it
  holds each label centred at its x (`read_grid` takes it off again)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from PIL import ImageDraw  # pylint: disable=g-import-not-at-top
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top
  from PIL import PngImagePlugin  # pylint: disable=g-import-not-at-top
  pixels = np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
  mode = 'L' if pixels.ndim == 2 else 'RGB'
  picture = Image.fromarray(pixels, mode=mode)
  info = PngImagePlugin.PngInfo()
  if header:
    labelled = Image.new(mode, (picture.width,
                                picture.height + GRID_HEADER), 'white')
    labelled.paste(picture, (0, GRID_HEADER))
    draw = ImageDraw.Draw(labelled)
    font = ImageFont.load_default(size=9)
    for x, label in header:
      draw.text((x, GRID_HEADER // 2), label, fill=0, font=font, anchor='mm')
    picture = labelled
    info.add_text(HEADER_KEY, str(GRID_HEADER))
  tmp = f'{path}.tmp.png'
  picture.save(tmp, pnginfo=info)
  os.replace(tmp, path)


def read_grid(path: str) -> np.ndarray:
  """A grid PNG as a float [H, W] image in [0, 1], without the label strip
  `write_png` put above it (grids written before it had none)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as image:
    rows = int(image.info.get(HEADER_KEY, 0))
    return np.asarray(image.convert('L'), np.float32)[rows:] / 255.0


def write_sample_grid(workdir: str, writer: Optional['MetricWriter'],
                      step: int, samples: Mapping[str, Any]) -> str:
  """The Fig. 4 style grid of one evaluation, as PNG and in TensorBoard.

  Left block, reconstructions: data | one x' ~ d(x'|z), z ~ e(z|x) | mean of
  the decodes with that same z. Right block, generations: one x ~ d(x|z),
  z ~ m(z) | mean of the decodes with that same z. The PNG has the column
  labels `GRID_LABELS` above the tiles (`read_grid` reads the tiles alone).

  Args:
    workdir: the run's directory; the PNG goes to images/grid_<step>.png.
    writer: the run's MetricWriter (or None for the PNG only).
    step: the training step.
    samples: the dict of `evaluation.steps.make_sample_fn`.

  Returns:
    The PNG's path.
  """
  groups = [[samples['data'], samples['reconstruction'],
             samples['reconstruction_mean']],
            [samples['generation'], samples['generation_mean']]]
  grid = image_grid(groups)
  directory = os.path.join(workdir, IMAGES_DIR)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, GRID_FORMAT.format(step=int(step)))
  width = np.shape(samples['data'])[2]
  centres = [1 + j * (width + 1) + (width - 1) / 2 for j in range(3)]
  centres += [3 * (width + 1) + 1 + 4 + 1 + j * (width + 1) + (width - 1) / 2
              for j in range(2)]
  write_png(path, grid, list(zip(centres, GRID_LABELS)))
  if writer is not None:
    writer.write_images(step, {'samples/grid': grid})
  return path


def latest_grid(workdir: str) -> Optional[str]:
  """The path of workdir's sample grid of the highest step, or None."""
  paths = glob.glob(os.path.join(workdir, IMAGES_DIR, 'grid_*.png'))
  steps = {int(m.group(1)): p for p in paths
           if (m := re.fullmatch(r'grid_(\d+)\.png', os.path.basename(p)))}
  return steps[max(steps)] if steps else None
