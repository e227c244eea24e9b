"""What a dataset's images must be, and what their values are.

Every split is a uint8 array [N, H, W, C] with N > 0, the same (H, W, C) in
all three splits. Its values are declared by `dataset.values`:

  'binary'  every value is 0 or 1 (one Bernoulli per subpixel);
  '8bit'    values 0..255 (every uint8 is in range);
  'auto'    binary when every value of every split is 0 or 1, else 8-bit.

`check_splits` holds loaded splits to this and names the bad split, the bad
value and what was expected; `resolve_values` turns 'auto' into the kind the
data has. A model sees images as float32 (`MAX_VALUE` maps them to [0, 1]).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from rdvae import validation

VALUES = ('auto', 'binary', '8bit')
SPLITS = ('train', 'validation', 'test')
# The largest value of each kind: a model reads an image as x = v / MAX_VALUE.
MAX_VALUE = {'binary': 1, '8bit': 255}
NUM_LEVELS = {'binary': 2, '8bit': 256}


def as_images(array: np.ndarray) -> np.ndarray:
  """[N, H, W] -> [N, H, W, 1]; [N, H, W, C] as it is (no copy)."""
  array = np.asarray(array)
  return array[..., None] if array.ndim == 3 else array


def check_split(images, split: str, where: str) -> np.ndarray:
  """One split as uint8 [N > 0, H, W, C], or a ConfigError naming it.

  Args:
    images: the split, [N, H, W] or [N, H, W, C].
    split: its name ('train', 'validation', 'test').
    where: the source it came from (named in the message).
  """
  if images is None:
    raise validation.ConfigError(
        f'{where}: split {split!r} is missing; expected uint8 images '
        '[N, H, W] or [N, H, W, C] for each of train, validation and test')
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise validation.ConfigError(
        f'{where}: split {split!r} has dtype {images.dtype}; expected uint8 '
        'images (0 and 1 for binary data, 0..255 for 8-bit data)')
  if images.ndim not in (3, 4):
    raise validation.ConfigError(
        f'{where}: split {split!r} has shape {images.shape}; expected uint8 '
        'images [N, H, W] or [N, H, W, C]')
  if not len(images) or not all(images.shape[1:]):
    raise validation.ConfigError(
        f'{where}: split {split!r} is empty (shape {images.shape}); expected '
        'at least one image')
  return as_images(images)


def check_splits(splits: Mapping[str, np.ndarray], where: str
                 ) -> dict[str, np.ndarray]:
  """The three splits checked (`check_split`) and of one image shape.

  Raises:
    ConfigError: a split is missing, empty, not uint8 or not images, or the
      splits' image shapes differ; the message names the split and `where`.
  """
  checked = {s: check_split(splits.get(s), s, where) for s in SPLITS}
  shapes = {s: checked[s].shape[1:] for s in SPLITS}
  if len(set(shapes.values())) > 1:
    listed = ', '.join(f'{s} {shape}' for s, shape in shapes.items())
    raise validation.ConfigError(
        f'{where}: the splits hold images of different shapes ({listed}); '
        'expected one shape (H, W, C) for all three')
  return checked


def resolve_values(splits: Mapping[str, np.ndarray], declared: str,
                   where: str, key: str = 'dataset.values') -> str:
  """'binary' or '8bit': the declared kind, checked, or for 'auto' the data's.

  Args:
    splits: checked uint8 splits (`check_splits`).
    declared: 'auto', 'binary' or '8bit' (config.`key`).
    where: the source, for messages.
    key: the config key that declared it.

  Raises:
    ConfigError: declared 'binary' but a split holds a value above 1.
  """
  largest = {s: int(a.max()) for s, a in splits.items()}
  if declared == 'auto':
    return 'binary' if max(largest.values()) <= 1 else '8bit'
  if declared == 'binary':
    for split, images in splits.items():
      if largest[split] > 1:
        values = np.unique(images)
        raise validation.ConfigError(
            f'{where}: split {split!r} holds values '
            f'{values[values > 1][:5].tolist()} besides 0 and 1, but '
            f'config.{key}={declared!r} expects images of 0 and 1 (binarize '
            "them, or declare '8bit' or 'auto')")
  return declared
