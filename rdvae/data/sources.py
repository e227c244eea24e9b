"""Image datasets: their sources, checks and loading into host memory.

A dataset is three splits, train / validation / test, each uint8 images
[N, H, W, C] of one shape, with values declared by `dataset.values`
(`images`: 'binary' 0/1, '8bit' 0..255, or 'auto', the default: binary when
every value is 0 or 1, else 8-bit). The image shape comes from the data.

Config keys (section `dataset`, declared by `default_config`):

  dataset.name           the dataset's name: for source 'tfds' the TFDS
                         name (any dataset with an image feature, e.g.
                         'binarized_mnist', 'omniglot', 'mnist', 'cifar10';
                         see `tfds_source`); for 'npz' and 'arrays' a label
                         ('binarized_mnist' with path '' is the packaged file).
  dataset.source         'npz': a local .npz file; 'tfds': TensorFlow
                         Datasets; 'arrays': the splits passed from Python
                         (`rdvae.train_and_eval(config, workdir, data=...)`).
  dataset.path           the .npz file for source 'npz'; '' means the copy of
                         binarized MNIST shipped in the package. The file holds
                         arrays `train`, `valid`, `test`, each uint8 images
                         (N, H, W) or (N, H, W, C), or each packed bits of
                         28x28 binary images, (N, 98) (`save_npz`).
  dataset.tfds_data_dir  the TFDS data directory; '' means the TFDS default.
  dataset.train_split, dataset.valid_split, dataset.test_split
                         the TFDS splits of source 'tfds' ('' for the
                         dataset's own: train, validation, test; Omniglot's
                         see `tfds_source.load_tfds`), any TFDS split string,
                         e.g. 'train[:90%]' and 'train[90%:]'.
  dataset.values         'auto', 'binary' or '8bit' (`images`).

binarized_mnist and omniglot from TFDS, and packed bits, are binary by
construction: 'auto' takes them as binary, so a stray value above 1 is an
error rather than 8-bit data.

The TFDS path reads through `tfds.data_source` (ArrayRecord files, random
access, decoded with numpy and PIL): reading needs no TensorFlow. *Preparing*
a dataset (the first `download_and_prepare`) usually does. Prepare once where
TensorFlow is installed, or use source 'npz'. The files must be ArrayRecord
(the format `tfds.data_source` asks for), not the TFRecord files `tfds.load`
prepares by default.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import pathlib
import zipfile
from typing import Any, Mapping, Optional

import ml_collections
import numpy as np

from rdvae import validation
from rdvae.data import images as images_lib
from rdvae.data.tfds_source import load_tfds

NAMES = ('binarized_mnist', 'omniglot')  # binary by construction in TFDS
SOURCES = ('tfds', 'npz', 'arrays')
VALUES = images_lib.VALUES
SPLIT_KEYS = ('train_split', 'valid_split', 'test_split')
IMAGE_SHAPE = (28, 28, 1)  # the images of the packed-bit format (MNIST's)
NPZ_KEYS = ('train', 'valid', 'test')  # the file's names for the three splits
_PACKED_WIDTH = 98  # bytes per image: ceil(784 / 8)
_NEW_KEYS = {'values': 'auto', 'train_split': '', 'valid_split': '',
             'test_split': ''}  # absent from the configs of older runs


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """The three splits of one dataset, on the host.

  Attributes:
    name: `dataset.name`.
    train, validation, test: uint8 [N, H, W, C] arrays.
    image_shape: (H, W, C) of every image; the model is built for it
      (`model.create_model(config, dataset.image_shape, values=...)`).
    values: 'binary' (0 and 1) or '8bit' (0..255), 'auto' resolved.
  """

  name: str
  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray
  image_shape: tuple[int, int, int] = IMAGE_SHAPE
  values: str = 'binary'

  @property
  def max_value(self) -> int:
    """1 for binary images, 255 for 8-bit ones: x = v / max_value."""
    return images_lib.MAX_VALUE[self.values]


def default_config() -> ml_collections.ConfigDict:
  """Every key of the `dataset` section: the packaged binarized MNIST."""
  return ml_collections.ConfigDict({
      'name': 'binarized_mnist',
      'source': 'npz',
      'path': '',
      'tfds_data_dir': '',
      **_NEW_KEYS,
  })


def packaged_npz_path() -> pathlib.Path:
  """The binarized MNIST .npz shipped as package data (rdvae/data/)."""
  return pathlib.Path(
      str(importlib.resources.files('rdvae') / 'data' / 'binarized_mnist.npz'))


def _setting(config, key: str) -> Any:
  """config.dataset.<key>; a key newer than the run's config its default."""
  if key in _NEW_KEYS and key not in config.dataset:
    return _NEW_KEYS[key]
  return validation.get(config, 'dataset.' + key)


def _check_string(config, key: str, empty: bool = True) -> str:
  value = _setting(config, key.partition('.')[2])
  if not isinstance(value, str) or not (empty or value):
    raise validation.ConfigError(
        f'config.{key}={value!r} must be a '
        + ("string ('' for the default)" if empty else 'non-empty string'))
  return value


def _npy_header(archive: zipfile.ZipFile, member: str):
  """(shape, dtype) of one array of an .npz, read from its header only."""
  with archive.open(member) as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
      shape, _, dtype = np.lib.format.read_array_header_2_0(f)
  return shape, dtype


NPZ_EXPECTED = ('keys train, valid, test, each uint8 images (N, H, W) or '
                '(N, H, W, C) of one shape, or each packed bits (N, 98)')


def _header_error(shape, dtype) -> Optional[str]:
  if dtype != np.uint8:
    return f'has dtype {dtype}, not uint8'
  if len(shape) not in (2, 3, 4) or (len(shape) == 2
                                     and shape[1] != _PACKED_WIDTH):
    return f'has shape {shape}, neither images nor packed bits'
  if not all(shape):
    return f'is empty (shape {shape})'
  return None


def npz_shapes(path: str, key: str = 'dataset.path') -> dict[str, tuple]:
  """{file key: array shape} of an .npz in the format of the module doc,
  read from the array headers only; a ConfigError naming the file, the
  array and what was expected otherwise."""
  if os.path.isdir(path):
    raise validation.ConfigError(
        f'config.{key}: {path!r} is a directory, not a dataset file')
  if not os.path.isfile(path):
    raise validation.ConfigError(
        f'config.{key}: the dataset file {path!r} does not exist')
  shapes = {}
  try:
    with zipfile.ZipFile(path) as archive:
      members = set(archive.namelist())
      missing = [k for k in NPZ_KEYS if k + '.npy' not in members]
      if missing:
        raise validation.ConfigError(
            f'config.{key}: {path!r} lacks the arrays {missing}; expected '
            f'{NPZ_EXPECTED}')
      for k in NPZ_KEYS:
        shape, dtype = _npy_header(archive, k + '.npy')
        error = _header_error(shape, dtype)
        if error:
          raise validation.ConfigError(
              f'config.{key}: array {k!r} of {path!r} {error}; expected '
              f'{NPZ_EXPECTED}')
        shapes[k] = tuple(shape)
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    if isinstance(e, validation.ConfigError):
      raise
    raise validation.ConfigError(
        f'config.{key}: {path!r} is not a readable .npz ({e}); expected '
        f'{NPZ_EXPECTED}') from None
  image_shapes = {k: images_lib.as_images(np.empty((0,) + v[1:])).shape[1:]
                  if len(v) > 2 else IMAGE_SHAPE for k, v in shapes.items()}
  if len(set(image_shapes.values())) > 1:
    raise validation.ConfigError(
        f'config.{key}: the arrays of {path!r} hold images of different '
        f'shapes {image_shapes}; expected {NPZ_EXPECTED}')
  return shapes


def check_npz(path: str, key: str = 'dataset.path') -> None:
  """Raises ConfigError unless `path` is an .npz of the module doc's format
  (`npz_shapes`)."""
  npz_shapes(path, key)


def _npz_path(config) -> str:
  return config.dataset.path or str(packaged_npz_path())


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks `config.dataset` before any work, naming the bad key and value."""
  name = _check_string(config, 'dataset.name', empty=False)
  if 'source' not in config.dataset:  # e.g. the toy's config, renamed
    raise validation.ConfigError(
        f'config.dataset.source is missing, which config.dataset.name='
        f"{name!r}, an image dataset, needs (the toy's config takes "
        "dataset.name='toy')")
  source = validation.check_choice(config, 'dataset.source', SOURCES)
  path = _check_string(config, 'dataset.path')
  _check_string(config, 'dataset.tfds_data_dir')
  for split_key in SPLIT_KEYS:
    _check_string(config, 'dataset.' + split_key)
  values = _setting(config, 'values')
  if values not in VALUES:
    raise validation.ConfigError(
        f'config.dataset.values={values!r} is not one of the allowed values '
        f'{VALUES}')
  unused = {'npz': ('tfds_data_dir',) + SPLIT_KEYS, 'tfds': ('path',),
            'arrays': ('path', 'tfds_data_dir') + SPLIT_KEYS}[source]
  validation.warn_no_effect(
      config, [f'dataset.{k}' for k in unused if k in config.dataset],
      default_config(), f'dataset.source={source!r} does not read it')
  if source == 'npz':
    if name != 'binarized_mnist' and not path:
      raise validation.ConfigError(
          f"config.dataset.name={name!r} with dataset.source='npz' needs a "
          "file in config.dataset.path: only binarized_mnist is packaged "
          "(path=''); write an .npz of uint8 images, or use source 'tfds'")
    check_npz(_npz_path(config))


def declared(config: ml_collections.ConfigDict
             ) -> tuple[Optional[tuple[int, int, int]], Optional[str]]:
  """(image shape, values) that `config.dataset` (validated) fixes before
  its data is read, each None where only the data can tell: an .npz's
  shape from its headers; 'binary' for packed bits and the binary datasets
  (NAMES), else `dataset.values` unless it is 'auto'."""
  values = _setting(config, 'values')
  shape = None
  if config.dataset.source == 'npz':
    stored = npz_shapes(_npz_path(config))['train']
    shape = (IMAGE_SHAPE if len(stored) == 2 else
             images_lib.as_images(np.empty((0,) + stored[1:])).shape[1:])
    if len(stored) == 2 and values == 'auto':
      values = 'binary'
  if (values == 'auto' and config.dataset.source == 'tfds'
      and config.dataset.name in NAMES):
    values = 'binary'
  return shape, (None if values == 'auto' else values)


def describe_source(config: ml_collections.ConfigDict) -> str:
  """Where `config.dataset` is read from, for error messages."""
  c = config.dataset
  if c.source == 'npz':
    return repr(_npz_path(config))
  if c.source == 'arrays':
    return 'the arrays passed as data='
  return f'TFDS {c.name!r} in {c.tfds_data_dir or "the TFDS default data_dir"}'


def _tfds_splits(config) -> Optional[tuple[str, str, str]]:
  """The TFDS splits named in config, None when all three are ''."""
  named = tuple(_setting(config, k) for k in SPLIT_KEYS)
  if not any(named):
    return None
  defaults = ('train', 'validation', 'test')
  return tuple(n or d for n, d in zip(named, defaults))


def _as_splits(data: Any) -> dict[str, Any]:
  """data= as {'train', 'validation', 'test'}: a mapping (keys 'valid' or
  'validation') or a sequence of the three."""
  if isinstance(data, Mapping):
    data = dict(data)
    if 'valid' in data and 'validation' not in data:
      data['validation'] = data.pop('valid')
    return data
  if isinstance(data, (list, tuple)) and len(data) == 3:
    return dict(zip(images_lib.SPLITS, data))
  raise validation.ConfigError(
      f'data={type(data).__name__} must be the three splits: a dict with '
      "keys 'train', 'validation' (or 'valid') and 'test', or a tuple "
      '(train, validation, test) of uint8 image arrays')


def create_dataset(config: ml_collections.ConfigDict,
                   data: Any = None) -> Dataset:
  """Loads `config.dataset` (validated first) into host memory and checks it.

  Args:
    config: the experiment config.
    data: the splits for source 'arrays' (see `_as_splits`).

  Raises:
    ConfigError: the file is unreadable (e.g. truncated or damaged), a split
      is missing, empty or not uint8 images, the splits' shapes differ, or
      their values break `dataset.values`; the message names the source.
  """
  validate(config)
  c = config.dataset
  where = f'config.dataset: {describe_source(config)}'
  values = _setting(config, 'values')
  if c.source == 'arrays':
    if data is None:
      raise validation.ConfigError(
          "config.dataset.source='arrays' takes its splits from Python: pass "
          'data=(train, validation, test) to rdvae.train_and_eval')
    splits = _as_splits(data)
  elif data is not None:
    raise validation.ConfigError(
        f'data= was passed but config.dataset.source={c.source!r}; set '
        "config.dataset.source='arrays' to train on the passed arrays")
  elif c.source == 'npz':
    splits = load_npz(_npz_path(config))
  else:
    splits = load_tfds(c.name, c.tfds_data_dir or None, _tfds_splits(config))
  splits = images_lib.check_splits(splits, where)
  if values == 'auto' and (c.source == 'tfds' and c.name in NAMES or
                           c.source == 'npz' and _packed(_npz_path(config))):
    values = 'binary'  # binary by construction: a value above 1 is an error
  values = images_lib.resolve_values(splits, values, where)
  return Dataset(name=c.name, image_shape=splits['train'].shape[1:],
                 values=values, **splits)


# ---------------------------------------------------------------- host files


def _packed(path: str) -> bool:
  """Whether the .npz at `path` (checked) holds packed bits."""
  return len(npz_shapes(path)['train']) == 2


def load_npz(path: str) -> dict[str, np.ndarray]:
  """Reads an .npz of the module doc's format into its three splits.

  Packed bits (uint8 [N, 98]: a row is one 28x28 image, row-major, packed
  with `np.packbits(axis=1)`) unpack to [N, 28, 28, 1] of 0/1; image arrays
  are returned as they are ([N, H, W] gains a channel axis).

  Returns:
    {'train', 'validation', 'test'}: uint8 [N, H, W, C] arrays.

  Raises:
    ConfigError: the file is missing, not in this format, or damaged (a
      truncated file, an array shorter than its header, a failed CRC).
  """
  npz_shapes(path)
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in NPZ_KEYS}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise validation.ConfigError(
        f'config.dataset.path: {path!r} is damaged or truncated ({e}); '
        f'expected {NPZ_EXPECTED}') from None

  def unpack(a):
    if a.ndim > 2:
      return images_lib.as_images(a)
    return np.unpackbits(a, axis=1)[:, :784].reshape((-1,) + IMAGE_SHAPE)

  return {'train': unpack(arrays['train']),
          'validation': unpack(arrays['valid']),
          'test': unpack(arrays['test'])}


def save_npz(path: str, train: np.ndarray, validation: np.ndarray,
             test: np.ndarray) -> None:
  """Writes three [N, 28, 28, 1] 0/1 image arrays as packed bits."""
  arrays = {}
  for key, images in zip(NPZ_KEYS, (train, validation, test)):
    images = np.asarray(images)
    if images.shape[1:] != IMAGE_SHAPE or not np.isin(images, (0, 1)).all():
      raise ValueError(f'split {key!r}: expected 0/1 images of shape '
                       f'[N, 28, 28, 1], got shape {images.shape}')
    arrays[key] = np.packbits(images.reshape(len(images), -1).astype(np.uint8),
                              axis=1)
  np.savez(path, **arrays)
