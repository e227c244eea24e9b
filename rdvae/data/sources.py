"""Datasets of binary 28x28 images: their sources, checks and loading.

Two datasets, each split train / validation / test, images `uint8` arrays
[N, 28, 28, 1] of 0 and 1:

  binarized_mnist  the static binarized MNIST of Larochelle & Murray (2011),
                   50,000 / 10,000 / 10,000 (the paper's MNIST, Appendix F).
  omniglot         Lake et al. (2015) in 28x28 binary form (see
                   `preprocess_omniglot` for the exact resize and threshold).

Config keys (section `dataset`, declared by `default_config`):

  dataset.name           'binarized_mnist' or 'omniglot'.
  dataset.source         'npz': a local file of packed bits (the format of
                         `save_npz`); 'tfds': TensorFlow Datasets.
  dataset.path           the .npz file for source 'npz'; '' means the copy of
                         binarized MNIST shipped in the package (there is no
                         packaged Omniglot, so omniglot + npz needs a path).
  dataset.tfds_data_dir  the TFDS data directory; '' means the TFDS default.

The TFDS path reads through `tfds.data_source` (ArrayRecord files, random
access, decoded with numpy and PIL): reading needs no TensorFlow. *Preparing*
either dataset (the first `download_and_prepare`) does: both TFDS builders call
`tf.io.gfile`, and `binarized_mnist` encodes its images with
`tf.image.encode_png`. Prepare once where TensorFlow is installed, or use
source 'npz'. The files must be ArrayRecord (the format `tfds.data_source`
asks for), not the TFRecord files `tfds.load` prepares by default.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import pathlib
import zipfile
from typing import Optional

import ml_collections
import numpy as np

from rdvae import validation

NAMES = ('binarized_mnist', 'omniglot')
SOURCES = ('tfds', 'npz')
IMAGE_SHAPE = (28, 28, 1)
NPZ_KEYS = ('train', 'valid', 'test')  # the file's names for the three splits
_PACKED_WIDTH = 98  # bytes per image: ceil(784 / 8)
OMNIGLOT_THRESHOLD = 0.5
OMNIGLOT_VALIDATION_FRACTION = 10  # validation = the last 1/10 of TFDS train


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """The three splits of one dataset, on the host.

  Attributes:
    name: 'binarized_mnist' or 'omniglot'.
    train, validation, test: uint8 [N, 28, 28, 1] arrays of 0 and 1.
    image_shape: (H, W, C) of every image, `IMAGE_SHAPE` = (28, 28, 1) for
      both datasets; the model is built for it
      (`model.create_model(config, dataset.image_shape)`).
  """

  name: str
  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray
  image_shape: tuple[int, int, int] = IMAGE_SHAPE


def default_config() -> ml_collections.ConfigDict:
  """Every key of the `dataset` section: the packaged binarized MNIST."""
  return ml_collections.ConfigDict({
      'name': 'binarized_mnist',
      'source': 'npz',
      'path': '',
      'tfds_data_dir': '',
  })


def packaged_npz_path() -> pathlib.Path:
  """The binarized MNIST .npz shipped as package data (rdvae/data/)."""
  return pathlib.Path(
      str(importlib.resources.files('rdvae') / 'data' / 'binarized_mnist.npz'))


def _check_string(config, key: str) -> str:
  value = validation.get(config, key)
  if not isinstance(value, str):
    raise validation.ConfigError(
        f'config.{key}={value!r} must be a string (\'\' for the default)')
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


def check_npz(path: str, key: str = 'dataset.path') -> None:
  """Raises ConfigError unless `path` is an .npz in the format of `save_npz`.

  Only the array headers are read: keys `train`, `valid`, `test`, each
  uint8 of shape (N, 98) with N > 0.
  """
  if os.path.isdir(path):
    raise validation.ConfigError(
        f'config.{key}: {path!r} is a directory, not a dataset file')
  if not os.path.isfile(path):
    raise validation.ConfigError(
        f'config.{key}: the dataset file {path!r} does not exist')
  expected = 'keys train, valid, test, each uint8 of shape (N, 98)'
  try:
    with zipfile.ZipFile(path) as archive:
      members = set(archive.namelist())
      missing = [k for k in NPZ_KEYS if k + '.npy' not in members]
      if missing:
        raise validation.ConfigError(
            f'config.{key}: {path!r} lacks the arrays {missing}; expected '
            f'{expected}')
      for k in NPZ_KEYS:
        shape, dtype = _npy_header(archive, k + '.npy')
        if (dtype != np.uint8 or len(shape) != 2
            or shape[1] != _PACKED_WIDTH or shape[0] == 0):
          raise validation.ConfigError(
              f'config.{key}: array {k!r} of {path!r} is {dtype} of shape '
              f'{shape}; expected {expected}')
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    if isinstance(e, validation.ConfigError):
      raise
    raise validation.ConfigError(
        f'config.{key}: {path!r} is not a readable .npz ({e}); expected '
        f'{expected}') from None


def _npz_path(config) -> str:
  return config.dataset.path or str(packaged_npz_path())


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks `config.dataset` before any work, naming the bad key and value."""
  name = validation.check_choice(config, 'dataset.name', NAMES)
  source = validation.check_choice(config, 'dataset.source', SOURCES)
  path = _check_string(config, 'dataset.path')
  _check_string(config, 'dataset.tfds_data_dir')
  validation.warn_no_effect(
      config, ('dataset.tfds_data_dir',) if source == 'npz' else
      ('dataset.path',), default_config(),
      f"dataset.source={source!r} does not read it")
  if source == 'npz':
    if name == 'omniglot' and not path:
      raise validation.ConfigError(
          "config.dataset.path='' but dataset.name='omniglot' with "
          "dataset.source='npz' needs a path: only binarized_mnist is "
          "packaged (write one with rdvae.data.save_npz, or use source "
          "'tfds')")
    check_npz(_npz_path(config))


def describe_source(config: ml_collections.ConfigDict) -> str:
  """Where `config.dataset` is read from, for error messages."""
  c = config.dataset
  if c.source == 'npz':
    return repr(_npz_path(config))
  return f'TFDS {c.name!r} in {c.tfds_data_dir or "the TFDS default data_dir"}'


def check_images(images: np.ndarray, split: str, where: str) -> None:
  """Raises ConfigError unless `images` are uint8 [N > 0, 28, 28, 1] of 0/1.

  Args:
    images: one loaded split.
    split: its name ('train', 'validation', 'test').
    where: the file or source it came from (named in the message).
  """
  images = np.asarray(images)
  expected = f'uint8 images of shape (N > 0,) + {IMAGE_SHAPE} of 0 and 1'
  if (images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE
      or not len(images)):
    raise validation.ConfigError(
        f'{where}: split {split!r} is {images.dtype} of shape {images.shape}; '
        f'expected {expected}')
  if images.max(initial=0) > 1:
    values = np.unique(images)
    raise validation.ConfigError(
        f'{where}: split {split!r} holds values '
        f'{values[values > 1][:5].tolist()} besides 0 and 1; expected '
        f'{expected} (binarize it first)')


def create_dataset(config: ml_collections.ConfigDict) -> Dataset:
  """Loads `config.dataset` (validated first) into host memory.

  Raises:
    ConfigError: the file is unreadable (e.g. truncated or damaged) or a
      split is not uint8 [N, 28, 28, 1] of 0/1; the message names the file.
  """
  validate(config)
  c = config.dataset
  if c.source == 'npz':
    splits = load_npz(_npz_path(config))
  else:
    splits = load_tfds(c.name, c.tfds_data_dir or None)
  where = f'config.dataset: {describe_source(config)}'
  for split, images in splits.items():
    check_images(images, split, where)
  return Dataset(name=c.name, **splits)


# ---------------------------------------------------------------- host files


def load_npz(path: str) -> dict[str, np.ndarray]:
  """Reads a packed-bits .npz into {'train', 'validation', 'test'} images.

  Each array of the file is uint8 [N, 98]: a row is one 28x28 image,
  row-major, packed with `np.packbits(axis=1)`.

  Returns:
    uint8 [N, 28, 28, 1] arrays of 0/1, keyed by split.

  Raises:
    ConfigError: the file is missing, not in this format, or damaged (a
      truncated file, an array shorter than its header, a failed CRC).
  """
  check_npz(path)
  try:
    with np.load(path) as f:
      packed = {k: f[k] for k in NPZ_KEYS}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise validation.ConfigError(
        f'config.dataset.path: {path!r} is damaged or truncated ({e}); '
        f'expected the arrays {NPZ_KEYS}, each uint8 of shape (N, '
        f'{_PACKED_WIDTH})') from None
  unpack = lambda a: np.unpackbits(a, axis=1)[:, :784].reshape(
      (-1,) + IMAGE_SHAPE)
  return {'train': unpack(packed['train']),
          'validation': unpack(packed['valid']),
          'test': unpack(packed['test'])}


def save_npz(path: str, train: np.ndarray, validation: np.ndarray,
             test: np.ndarray) -> None:
  """Writes three [N, 28, 28, 1] 0/1 image arrays in the `load_npz` format."""
  arrays = {}
  for key, images in zip(NPZ_KEYS, (train, validation, test)):
    images = np.asarray(images)
    if images.shape[1:] != IMAGE_SHAPE or not np.isin(images, (0, 1)).all():
      raise ValueError(f'split {key!r}: expected 0/1 images of shape '
                       f'[N, 28, 28, 1], got shape {images.shape}')
    arrays[key] = np.packbits(images.reshape(len(images), -1).astype(np.uint8),
                              axis=1)
  np.savez(path, **arrays)


# ---------------------------------------------------------------------- TFDS


def omniglot_resize_matrix(size_in: int = 105, size_out: int = 28
                           ) -> np.ndarray:
  """[size_out, size_in] area-averaging weights (an exact box filter).

  Output pixel i covers the input interval [s i, s (i + 1)), s =
  size_in / size_out (3.75 for Omniglot); A[i, k] is the length of its
  overlap with input pixel [k, k + 1), divided by s, so every row sums to 1.
  """
  scale = size_in / size_out
  lo = np.arange(size_out)[:, None] * scale
  k = np.arange(size_in)[None, :]
  overlap = np.minimum(k + 1, lo + scale) - np.maximum(k, lo)
  return (np.clip(overlap, 0.0, None) / scale).astype(np.float32)


def preprocess_omniglot(images: np.ndarray,
                        threshold: float = OMNIGLOT_THRESHOLD) -> np.ndarray:
  """TFDS Omniglot images -> 28x28 binary images with strokes = 1.

  For an image u [105, 105, C] in 0..255 (dark strokes on white):
    1. stroke intensity  s = 1 - mean_c(u) / 255, in [0, 1];
    2. antialiased resize by area averaging, r = A s A^T with A from
       `omniglot_resize_matrix`: r[i, j] is the mean of s over the
       3.75 x 3.75 input square that output pixel (i, j) covers;
    3. binarize: x[i, j] = 1 if r[i, j] >= threshold (default 0.5, i.e. at
       least half of the pixel's area is stroke), else 0.

  Args:
    images: uint8 [N, H, W, C], any H = W and C.
    threshold: the stroke fraction at and above which a pixel is 1.

  Returns:
    uint8 [N, 28, 28, 1] of 0/1.
  """
  images = np.asarray(images)
  a = omniglot_resize_matrix(images.shape[1], IMAGE_SHAPE[0])
  channels = images.shape[-1]
  out = np.empty((len(images),) + IMAGE_SHAPE, np.uint8)
  for start in range(0, len(images), 4096):  # bounds the float32 copy
    chunk = images[start:start + 4096]
    # The channel mean as a loop: numpy reduces a short last axis slowly.
    total = sum(chunk[..., c].astype(np.float32) for c in range(channels))
    stroke = 1.0 - total / (255.0 * channels)  # [n, H, W]
    # A s A^T as two large 2-D products (batched small matmuls are slow).
    n, h, w = stroke.shape
    cols = (stroke.reshape(n * h, w) @ a.T).reshape(n, h, -1)  # [n, H, 28]
    resized = (cols.transpose(0, 2, 1).reshape(-1, h) @ a.T).reshape(
        n, -1, IMAGE_SHAPE[0]).transpose(0, 2, 1)  # [n, 28, 28]
    out[start:start + 4096, ..., 0] = resized >= threshold
  return out


def _read_images(source) -> np.ndarray:
  return np.stack([np.asarray(source[i]['image']) for i in range(len(source))])


def _tfds_sources(name: str, splits: list[str], data_dir: Optional[str]):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.data_source(
        name, split=splits, data_dir=data_dir,
        builder_kwargs={'file_format': 'array_record'})
  except ModuleNotFoundError as e:
    if 'tensorflow' not in str(e):
      raise
    where = data_dir or 'the TFDS default data_dir'
    raise RuntimeError(
        f'TFDS {name!r} is not prepared in {where}, and preparing it needs '
        'TensorFlow (its builder uses tf.io.gfile). Prepare it once where '
        "tensorflow-cpu is installed, or use dataset.source='npz'.") from e


def load_tfds(name: str, data_dir: Optional[str] = None
              ) -> dict[str, np.ndarray]:
  """Reads a dataset through `tfds.data_source` into uint8 0/1 images.

  Split mapping:
    binarized_mnist: TFDS train / validation / test as they are.
    omniglot: TFDS `train` (images_background, 964 characters, 19,280
      images) gives train = its first N - N // 10 examples and validation =
      its last N // 10 (17,352 / 1,928), in the order of the prepared files
      (TFDS shuffles examples by key hash when preparing, so the slice is a
      fixed pseudo-random subset); test = TFDS `test` (images_evaluation, 659
      characters of 20 other alphabets, 13,180 images). `small1` and `small2`
      are subsets of the background set and are not used. This split differs
      from Burda et al.'s 24,345 / 8,070 (chardata.mat), so likelihoods are
      not directly comparable with theirs.

  Returns:
    {'train', 'validation', 'test'}: uint8 [N, 28, 28, 1] of 0/1.
  """
  if name == 'binarized_mnist':
    sources = _tfds_sources(name, ['train', 'validation', 'test'], data_dir)
    splits = dict(zip(('train', 'validation', 'test'),
                      (_read_images(s) for s in sources)))
    for split, images in splits.items():
      if images.shape[1:] != IMAGE_SHAPE or images.max(initial=0) > 1:
        raise ValueError(
            f'TFDS binarized_mnist {split}: expected 0/1 images of shape '
            f'{IMAGE_SHAPE}, got shape {images.shape[1:]} with maximum '
            f'{images.max(initial=0)}')
    return splits
  if name == 'omniglot':
    train_source, test_source = _tfds_sources(name, ['train', 'test'],
                                              data_dir)
    train = preprocess_omniglot(_read_images(train_source))
    num_valid = len(train) // OMNIGLOT_VALIDATION_FRACTION
    return {'train': train[:len(train) - num_valid],
            'validation': train[len(train) - num_valid:],
            'test': preprocess_omniglot(_read_images(test_source))}
  raise ValueError(f'unknown dataset {name!r}; expected one of {NAMES}')


# ------------------------------------------------- device batches (traceable)


# ---------------------------------------------------------- evaluation (host)


