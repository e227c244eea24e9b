"""Image datasets through TensorFlow Datasets, and Omniglot's preparation.

`load_tfds(name, data_dir, splits)` reads any TFDS dataset with an image
feature through `tfds.data_source` (ArrayRecord files, random access, decoded
with numpy and PIL: reading needs no TensorFlow; *preparing* a dataset the
first time usually does). Two names have their own preparation:

  binarized_mnist  TFDS train / validation / test as they are (0/1 images).
  omniglot         28x28 binary images from TFDS's 105x105 ones
                   (`preprocess_omniglot`), validation the last tenth of
                   TFDS train unless the splits are named.

Any other name (e.g. 'cifar10', 'mnist', 'fashion_mnist') is read as it is:
uint8 images [N, H, W, C] of the feature `image` (or of the only uint8 image
feature of the examples), from the splits named in config
(`dataset.train_split`, `valid_split`, `test_split`; TFDS split strings, so
a held-out slice such as 'train[90%:]' serves where a dataset has no
validation split).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

IMAGE_SIZE = 28  # Omniglot's images after preprocessing: 28x28x1
OMNIGLOT_THRESHOLD = 0.5
OMNIGLOT_VALIDATION_FRACTION = 10  # validation = the last 1/10 of TFDS train
DEFAULT_SPLITS = ('train', 'validation', 'test')



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
  a = omniglot_resize_matrix(images.shape[1], IMAGE_SIZE)
  channels = images.shape[-1]
  out = np.empty((len(images), IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
  for start in range(0, len(images), 4096):  # bounds the float32 copy
    chunk = images[start:start + 4096]
    # The channel mean as a loop: numpy reduces a short last axis slowly.
    total = sum(chunk[..., c].astype(np.float32) for c in range(channels))
    stroke = 1.0 - total / (255.0 * channels)  # [n, H, W]
    # A s A^T as two large 2-D products (batched small matmuls are slow).
    n, h, w = stroke.shape
    cols = (stroke.reshape(n * h, w) @ a.T).reshape(n, h, -1)  # [n, H, 28]
    resized = (cols.transpose(0, 2, 1).reshape(-1, h) @ a.T).reshape(
        n, -1, IMAGE_SIZE).transpose(0, 2, 1)  # [n, 28, 28]
    out[start:start + 4096, ..., 0] = resized >= threshold
  return out


def image_feature(example: dict, name: str) -> str:
  """The key of an example's image: 'image', else its only uint8 array of
  2 or 3 dimensions (ValueError naming the keys when there is none or
  several)."""
  if 'image' in example:
    return 'image'
  keys = [k for k, v in example.items()
          if isinstance(v, np.ndarray) and v.dtype == np.uint8
          and v.ndim in (2, 3)]
  if len(keys) != 1:
    raise ValueError(
        f'TFDS {name!r}: cannot tell the image feature among '
        f'{sorted(example)} (expected a feature \'image\', or exactly one '
        'uint8 array [H, W] or [H, W, C])')
  return keys[0]


def _read_images(source, name: str = '') -> np.ndarray:
  """The images of a data source stacked: uint8 [N, H, W] or [N, H, W, C]
  (ValueError when they differ in shape)."""
  if not len(source):
    return np.zeros((0, 0, 0, 0), np.uint8)
  key = image_feature(source[0], name)
  images = [np.asarray(source[i][key]) for i in range(len(source))]
  shapes = {x.shape for x in images}
  if len(shapes) > 1:
    raise ValueError(f'TFDS {name!r}: images of different shapes '
                     f'{sorted(shapes)[:4]}; expected one shape')
  return np.stack(images)


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


def load_tfds(name: str, data_dir: Optional[str] = None,
              splits: Optional[Sequence[str]] = None
              ) -> dict[str, np.ndarray]:
  """Reads a dataset through `tfds.data_source` into uint8 images.

  Args:
    name: the TFDS name.
    data_dir: the TFDS data directory (None: TFDS's default).
    splits: the TFDS splits of (train, validation, test); None for the
      dataset's own mapping below.

  Split mapping (`splits` None):
    binarized_mnist and any other name: TFDS train / validation / test.
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
    {'train', 'validation', 'test'}: uint8 [N, H, W] or [N, H, W, C]
    (binarized_mnist and omniglot: [N, 28, 28, 1] of 0/1).
  """
  keys = ('train', 'validation', 'test')
  if name == 'omniglot':
    if splits is None:
      train_source, test_source = _tfds_sources(name, ['train', 'test'],
                                                data_dir)
      train = preprocess_omniglot(_read_images(train_source, name))
      num_valid = len(train) // OMNIGLOT_VALIDATION_FRACTION
      return {'train': train[:len(train) - num_valid],
              'validation': train[len(train) - num_valid:],
              'test': preprocess_omniglot(_read_images(test_source, name))}
    sources = _tfds_sources(name, list(splits), data_dir)
    return {k: preprocess_omniglot(_read_images(s, name))
            for k, s in zip(keys, sources)}
  sources = _tfds_sources(name, list(splits or DEFAULT_SPLITS), data_dir)
  loaded = dict(zip(keys, (_read_images(s, name) for s in sources)))
  if name == 'binarized_mnist':
    for split, images in loaded.items():
      if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1) or images.max(
          initial=0) > 1:
        raise ValueError(
            f'TFDS binarized_mnist {split}: expected 0/1 images of shape '
            f'{(IMAGE_SIZE, IMAGE_SIZE, 1)}, got shape {images.shape[1:]} '
            f'with maximum {images.max(initial=0)}')
  return loaded
