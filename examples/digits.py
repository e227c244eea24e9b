r"""scikit-learn's digits as an .npz of 8-bit images (dataset.source='npz').

  python -m examples.digits runs/digits.npz

The 1,797 8x8 handwritten digits of scikit-learn (17 grey levels, 0..16)
as uint8 images v = round(255 u / 16) in 0..255 (still 17 levels), shuffled
with seed 0 and split 1,437 train / 180 valid / 180 test: a real 8-bit image
dataset that a registry package ships, small enough for a CPU sweep
(examples/digits_rd.py). Needs scikit-learn (the `digits` extra).
"""

import sys

import numpy as np

NUM_VALID = NUM_TEST = 180


def digits_splits(seed: int = 0) -> dict[str, np.ndarray]:
  """{'train', 'valid', 'test'}: uint8 [N, 8, 8] images in 0..255."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  levels = datasets.load_digits().images  # [1797, 8, 8] float, 0..16
  images = np.round(levels * (255.0 / 16.0)).astype(np.uint8)
  order = np.random.default_rng(seed).permutation(len(images))
  images = images[order]
  held = NUM_VALID + NUM_TEST
  return {'train': images[:-held], 'valid': images[-held:-NUM_TEST],
          'test': images[-NUM_TEST:]}


def write_npz(path: str, seed: int = 0) -> str:
  np.savez(path, **digits_splits(seed))
  return path


if __name__ == '__main__':
  print(write_npz(sys.argv[1] if len(sys.argv) > 1 else 'runs/digits.npz'))
