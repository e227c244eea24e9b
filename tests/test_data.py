"""Tests of rdvae.data: the real binarized MNIST file, TFDS through
`tfds.testing.mock_data`, Omniglot preprocessing, on-device batching and the
exact means of masked evaluation batches."""

import hashlib
import io
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.binarized_mnist import (
    binarized_mnist_dataset_builder as mnist_builder)
from tensorflow_datasets.image_classification import (
    omniglot as omniglot_builder)

from rdvae.data import sources as data
from rdvae.data import tfds_source

from rdvae.data import batching
from rdvae import validation

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_NPZ = REPO.parent / 'shared' / 'data' / 'binarized_mnist.npz'
SHA256 = 'df14a884cb4aa7ac6692463fb31798a687c4e762c73c23a8ae3114fbec4e6093'


def _config(**dataset):
  section = data.default_config().to_dict()
  section.update(dataset)
  return ml_collections.ConfigDict({'dataset': section})


def _fake_source(splits):
  """An `as_data_source_fn` for mock_data that serves the given examples."""

  def as_data_source(self, split, decoders=None, deserialize_method=None,
                     **kwargs):
    del self, decoders, deserialize_method, kwargs
    if isinstance(split, str):
      return splits[split]
    return [splits[s] for s in split]

  return as_data_source


def _random_binary(rng, n):
  return (rng.random((n,) + data.IMAGE_SHAPE) < 0.3).astype(np.uint8)


# ------------------------------------------------------- the real npz file


@pytest.fixture(scope='module')
def mnist():
  return data.load_npz(str(data.packaged_npz_path()))


def test_packaged_file_is_the_documented_file():
  digest = hashlib.sha256(data.packaged_npz_path().read_bytes()).hexdigest()
  assert digest == SHA256


@pytest.mark.parametrize('where', ['packaged', 'shared'])
def test_npz_splits_and_pixel_means(where):
  if where == 'shared':
    if not SHARED_NPZ.exists():
      pytest.skip(f'{SHARED_NPZ} not present')
    config = _config(path=str(SHARED_NPZ))
  else:
    config = _config(path='')
  dataset = data.create_dataset(config)
  assert dataset.name == 'binarized_mnist'
  assert dataset.image_shape == (28, 28, 1)
  expected = {'train': (50000, 0.1306), 'validation': (10000, 0.1311),
              'test': (10000, 0.1325)}
  for split, (size, mean) in expected.items():
    images = getattr(dataset, split)
    assert images.shape == (size, 28, 28, 1)
    assert images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 1}
    assert round(float(images.mean()), 4) == mean


def test_save_and_load_npz_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  splits = {'train': _random_binary(rng, 7), 'validation': _random_binary(
      rng, 3), 'test': _random_binary(rng, 1)}
  path = str(tmp_path / 'tiny.npz')
  data.save_npz(path, **splits)
  data.check_npz(path)
  loaded = data.load_npz(path)
  for split, images in splits.items():
    np.testing.assert_array_equal(loaded[split], images)
  dataset = data.create_dataset(_config(name='omniglot', path=path))
  np.testing.assert_array_equal(dataset.validation, splits['validation'])


# ------------------------------------------------------------ config errors


def _write_npz(path, **arrays):
  np.savez(path, **arrays)
  return str(path)


def _good_arrays():
  return {k: np.zeros((2, 98), np.uint8) for k in data.NPZ_KEYS}


@pytest.mark.parametrize('case', [
    'unknown_name', 'unknown_source', 'missing_file', 'missing_key',
    'wrong_width', 'wrong_dtype', 'empty_split', 'not_a_zip',
    'omniglot_npz_without_path', 'path_not_a_string', 'data_dir_not_a_string',
    'missing_source_key'])
def test_validate_rejects(case, tmp_path):
  arrays = _good_arrays()
  missing = str(tmp_path / 'nowhere.npz')
  if case == 'unknown_name':
    config, needle = _config(name='cifar10'), 'dataset.name'
  elif case == 'unknown_source':
    config, needle = _config(source='hdf5'), 'dataset.source'
  elif case == 'missing_file':
    config, needle = _config(path=missing), missing
  elif case in ('missing_key', 'wrong_width', 'wrong_dtype', 'empty_split'):
    if case == 'missing_key':
      del arrays['valid']
    elif case == 'wrong_width':
      arrays['test'] = np.zeros((2, 784), np.uint8)
    elif case == 'wrong_dtype':
      arrays['train'] = np.zeros((2, 98), np.float32)
    else:
      arrays['train'] = np.zeros((0, 98), np.uint8)
    path = _write_npz(tmp_path / 'bad.npz', **arrays)
    config, needle = _config(path=path), path
  elif case == 'not_a_zip':
    path = tmp_path / 'text.npz'
    path.write_text('not a zip')
    config, needle = _config(path=str(path)), str(path)
  elif case == 'omniglot_npz_without_path':
    config, needle = _config(name='omniglot'), 'dataset.path'
  elif case == 'path_not_a_string':
    config, needle = _config(path=3), 'dataset.path'
  elif case == 'data_dir_not_a_string':
    config, needle = _config(tfds_data_dir=None), 'dataset.tfds_data_dir'
  else:
    config = _config()
    del config.dataset['source']
    needle = 'dataset.source'
  with pytest.raises(validation.ConfigError, match=None) as info:
    data.create_dataset(config)
  assert needle in str(info.value)


def test_validate_names_allowed_values():
  with pytest.raises(validation.ConfigError) as info:
    data.validate(_config(name='mnist'))
  assert "dataset.name='mnist'" in str(info.value)
  assert 'only binarized_mnist is packaged' in str(info.value)
  with pytest.raises(validation.ConfigError) as info:
    data.validate(_config(values='16bit'))
  assert "config.dataset.values='16bit'" in str(info.value)
  assert "('auto', 'binary', '8bit')" in str(info.value)


def test_default_config_validates():
  data.validate(_config())


# ----------------------------------------------------------------- TFDS


def test_tfds_binarized_mnist_splits_and_values():
  rng = np.random.default_rng(1)
  images = {'train': _random_binary(rng, 5), 'validation': _random_binary(
      rng, 3), 'test': _random_binary(rng, 2)}
  served = {k: [{'image': x} for x in v] for k, v in images.items()}
  with tfds.testing.mock_data(as_data_source_fn=_fake_source(served)):
    dataset = data.create_dataset(_config(source='tfds'))
  for split, expected in images.items():
    got = getattr(dataset, split)
    assert got.shape == expected.shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_tfds_binarized_mnist_rejects_non_binary_images():
  # The default mock serves random 0..255 pixels through the real
  # ArrayRecord data source path; binarized MNIST must be 0/1.
  with tfds.testing.mock_data(num_examples=3):
    with pytest.raises(ValueError, match='expected 0/1 images'):
      data.load_tfds('binarized_mnist')


def test_tfds_omniglot_through_default_mock():
  with tfds.testing.mock_data(num_examples=20):
    dataset = data.create_dataset(_config(name='omniglot', source='tfds'))
  sizes = {s: len(getattr(dataset, s)) for s in ('train', 'validation',
                                                  'test')}
  assert sizes == {'train': 18, 'validation': 2, 'test': 20}
  for split in ('train', 'validation', 'test'):
    images = getattr(dataset, split)
    assert images.shape[1:] == (28, 28, 1) and images.dtype == np.uint8
    assert set(np.unique(images)) <= {0, 1}


def _prepare_locally(builder_cls, data_dir, examples):
  """Prepares `examples` ({split: [example]}) as the ArrayRecord files of
  `builder_cls` in `data_dir`, without TensorFlow: images go in as PNG bytes,
  which TFDS stores without re-encoding."""

  class Local(builder_cls, skip_registration=True):
    name = builder_cls.name

    @classmethod
    def _get_pkg_dir_path(cls):
      return builder_cls._get_pkg_dir_path()  # pylint: disable=protected-access

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(split) for split in examples}

    def _generate_examples(self, split):
      yield from enumerate(examples[split])

  builder = Local(data_dir=str(data_dir), file_format='array_record')
  builder.download_and_prepare()


def _png(image):
  buffer = io.BytesIO()
  PIL.Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image
                      ).save(buffer, format='PNG')
  return buffer.getvalue()


def _sorted_rows(images):
  flat = images.reshape(len(images), -1)
  return flat[np.lexsort(flat.T[::-1])]


def test_tfds_binarized_mnist_from_prepared_files(tmp_path, mnist):
  # The real read path (tfds.data_source over ArrayRecord, PNG decoded by
  # PIL), no mock. TFDS shuffles examples when preparing: compare as sets.
  small = {'train': mnist['train'][:5], 'validation': mnist['validation'][:3],
           'test': mnist['test'][:2]}
  _prepare_locally(mnist_builder.Builder, tmp_path, {
      split: [{'image': _png(x)} for x in images]
      for split, images in small.items()})
  dataset = data.create_dataset(_config(source='tfds',
                                        tfds_data_dir=str(tmp_path)))
  for split, images in small.items():
    np.testing.assert_array_equal(_sorted_rows(getattr(dataset, split)),
                                  _sorted_rows(images))


def test_tfds_omniglot_from_prepared_files(tmp_path):

  def example(columns):
    stroke = np.zeros((105, 105), bool)
    stroke[:, :int(columns * 3.75)] = True
    return {'image': _png(_omniglot_image(stroke)), 'alphabet': 0,
            'alphabet_char_id': 0, 'label': 0}

  _prepare_locally(omniglot_builder.Omniglot, tmp_path, {
      'train': [example(c) for c in range(1, 11)],
      'test': [example(c) for c in (20, 21, 22)]})
  dataset = data.load_tfds('omniglot', str(tmp_path))
  ones = lambda images: sorted(images.sum(axis=(1, 2, 3)) // 28)
  assert len(dataset['train']) == 9 and len(dataset['validation']) == 1
  assert ones(np.concatenate([dataset['train'], dataset['validation']])) == (
      list(range(1, 11)))
  assert ones(dataset['test']) == [20, 21, 22]


def test_tfds_missing_tensorflow_is_a_clear_error(monkeypatch):
  def fail(*args, **kwargs):
    raise ModuleNotFoundError("No module named 'tensorflow'")

  monkeypatch.setattr(tfds, 'data_source', fail)
  with pytest.raises(RuntimeError, match='needs TensorFlow'):
    data.load_tfds('omniglot')


# ------------------------------------------------------ Omniglot preprocessing


def _omniglot_image(stroke):
  """A TFDS-style image: [105, 105, 3] uint8, dark strokes (0) on white."""
  return np.repeat(np.where(stroke, 0, 255).astype(np.uint8)[..., None], 3,
                   axis=-1)


@pytest.mark.parametrize('width,ones', [
    (30, 8),  # column 7 covers [26.25, 30): all stroke
    (28, 7),  # column 7 is 1.75 / 3.75 = 0.47 stroke: below 0.5
    (29, 8),  # column 7 is 2.75 / 3.75 = 0.73 stroke
    (0, 0), (105, 28)])
def test_omniglot_band_of_stroke(width, ones):
  stroke = np.zeros((105, 105), bool)
  stroke[:, :width] = True
  out = tfds_source.preprocess_omniglot(_omniglot_image(stroke)[None])
  expected = np.zeros((1, 28, 28, 1), np.uint8)
  expected[:, :, :ones] = 1
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, expected)


def test_omniglot_matches_area_average_on_a_fine_grid():
  # Upsampling 105 -> 420 = 28 * 15 turns the box filter into exact 15 x 15
  # block means; stroke fractions k / 225 never equal 0.5, so no ties.
  rng = np.random.default_rng(2)
  stroke = rng.random((3, 105, 105)) < 0.5
  fine = np.repeat(np.repeat(stroke, 4, axis=1), 4, axis=2)
  fraction = fine.reshape(3, 28, 15, 28, 15).mean(axis=(2, 4))
  images = np.stack([_omniglot_image(s) for s in stroke])
  out = tfds_source.preprocess_omniglot(images)
  np.testing.assert_array_equal(out[..., 0], (fraction >= 0.5).astype(np.uint8))
  np.testing.assert_allclose(tfds_source.omniglot_resize_matrix().sum(axis=1), 1.0,
                             rtol=1e-6)


def test_tfds_omniglot_split_mapping_on_hand_made_images():
  # Image i has a band of stroke i columns wide (in 28-pixel units) on the
  # left, so its binarized form has exactly i leading columns of ones.
  def band(columns):
    stroke = np.zeros((105, 105), bool)
    stroke[:, :int(columns * 3.75)] = True
    return {'image': _omniglot_image(stroke), 'label': 0}

  served = {'train': [band(i) for i in range(10)],
            'test': [band(i) for i in (20, 21)]}
  with tfds.testing.mock_data(as_data_source_fn=_fake_source(served)):
    dataset = data.create_dataset(_config(name='omniglot', source='tfds'))
  leading = lambda images: images[:, 0, :, 0].sum(axis=1).tolist()
  assert leading(dataset.train) == list(range(9))
  assert leading(dataset.validation) == [9]
  assert leading(dataset.test) == [20, 21]
  np.testing.assert_array_equal(dataset.train.sum(axis=(1, 2, 3)),
                                np.arange(9) * 28)


# ------------------------------------------------------- device batching


KEY = jax.random.key(0)
N, B = 10, 3  # 3 steps per epoch; one example is dropped in every epoch


@pytest.mark.parametrize('num_examples', [1, N, 50000])
def test_epoch_permutation_is_a_permutation(num_examples):
  orders = [np.asarray(batching.epoch_permutation(KEY, e, num_examples))
            for e in (0, 1)]
  for order in orders:
    assert order.dtype == np.int32
    np.testing.assert_array_equal(np.sort(order), np.arange(num_examples))
  if num_examples > 1:
    assert not np.array_equal(orders[0], orders[1])
  np.testing.assert_array_equal(
      orders[0], batching.epoch_permutation(KEY, 0, num_examples))


def test_steps_per_epoch_drops_the_incomplete_batch():
  assert batching.steps_per_epoch(50000, 64) == 781
  assert batching.steps_per_epoch(12, 4) == 3
  with pytest.raises(ValueError):
    batching.steps_per_epoch(3, 4)


@pytest.fixture(scope='module')
def indices_by_step():
  """batch_indices of steps 0..11 (four epochs), traced in the step."""
  return np.asarray(jax.vmap(lambda s: batching.batch_indices(KEY, s, N, B))(
      jnp.arange(12)))


def test_batch_indices_follow_the_epoch_permutation(indices_by_step):
  for step in range(12):
    epoch, position = divmod(step, 3)
    order = np.asarray(batching.epoch_permutation(KEY, epoch, N))
    np.testing.assert_array_equal(indices_by_step[step],
                                  order[position * B:(position + 1) * B])
  for epoch in range(4):
    assert len(set(indices_by_step[3 * epoch:3 * epoch + 3].ravel())) == 9
  np.testing.assert_array_equal(batching.batch_indices(KEY, 7, N, B),
                                indices_by_step[7])


def _train_batch(images, key, step, batch_size):
  """The batch of `step`, as the training loop gathers it."""
  return batching.gather_batch(
      images, batching.batch_indices(key, step, len(images), batch_size))


def test_same_key_and_step_give_the_same_batch():
  images = jnp.asarray(_random_binary(np.random.default_rng(3), N))
  batch = jax.jit(_train_batch, static_argnums=3)
  first = batch(images, KEY, 5, B)
  np.testing.assert_array_equal(first, batch(images, KEY, 5, B))
  np.testing.assert_array_equal(first, _train_batch(images, KEY, 5, B))
  assert first.dtype == jnp.float32 and first.shape == (B, 28, 28, 1)
  np.testing.assert_array_equal(
      first, np.asarray(images)[batching.batch_indices(KEY, 5, N, B)])
  other = batch(images, jax.random.key(1), 5, B)
  assert not np.array_equal(first, other)


@pytest.mark.parametrize('start,num_steps,traced', [
    (0, 3, False),  # one epoch exactly
    (1, 3, False),  # crosses one epoch boundary
    (4, 8, False),  # spans three epochs
    (1, 3, True),
    (4, 8, True)])
def test_batch_index_block_equals_stacked_steps(start, num_steps, traced,
                                                indices_by_step):
  if traced:
    block = jax.jit(lambda s: batching.batch_index_block(KEY, s, num_steps, N, B))(
        start)
  else:
    block = batching.batch_index_block(KEY, start, num_steps, N, B)
  assert block.shape == (num_steps, B) and block.dtype == jnp.int32
  np.testing.assert_array_equal(block,
                                indices_by_step[start:start + num_steps])


def test_block_feeds_a_scan():
  images = jnp.asarray(_random_binary(np.random.default_rng(4), N))
  block = batching.batch_index_block(KEY, 1, 3, N, B)

  def body(total, indices):
    return total + batching.gather_batch(images, indices).sum(), None

  total, _ = jax.lax.scan(body, jnp.float32(0), block)
  expected = sum(float(_train_batch(images, KEY, s, B).sum())
                 for s in range(1, 4))
  assert float(total) == expected


@pytest.mark.parametrize('count', [1, 2, 4])
def test_process_slices_tile_the_global_batch(count):
  block = jnp.arange(24).reshape(3, 8)
  shares = [batching.process_slice(block, axis=1, process_index=p,
                               process_count=count) for p in range(count)]
  np.testing.assert_array_equal(jnp.concatenate(shares, axis=1), block)
  assert shares[0].shape == (3, 8 // count)


def test_process_slice_rejects_uneven_split():
  with pytest.raises(ValueError, match='does not split'):
    batching.process_slice(jnp.arange(6), process_index=0, process_count=4)


# ------------------------------------------------------ evaluation batches


@pytest.mark.parametrize('n,batch_size', [(10, 4), (8, 4), (3, 5), (1, 1)])
def test_eval_batches_give_exact_means(n, batch_size):
  images = _random_binary(np.random.default_rng(6), n)
  batches = list(batching.eval_batches(images, batch_size))
  assert len(batches) == -(-n // batch_size)
  total = count = 0.0
  for x, mask in batches:
    assert x.shape == (batch_size, 28, 28, 1) and x.dtype == np.float32
    assert mask.shape == (batch_size,) and mask.dtype == np.float32
    np.testing.assert_array_equal(x[mask == 0], 0.0)
    total += float(np.sum(mask * x.sum(axis=(1, 2, 3))))
    count += float(mask.sum())
  assert count == n
  assert total / count == images.reshape(n, -1).sum(axis=1).mean()
  np.testing.assert_array_equal(
      np.concatenate([x for x, _ in batches])[:n], images)


def test_eval_mean_of_the_real_test_split(mnist):
  total = count = 0.0
  for x, mask in batching.eval_batches(mnist['test'], 999):
    total += float(np.sum(mask * x.mean(axis=(1, 2, 3), dtype=np.float64)))
    count += float(mask.sum())
  assert count == 10000
  np.testing.assert_allclose(total / count, mnist['test'].mean(), rtol=1e-12)
  assert round(total / count, 4) == 0.1325


@pytest.mark.parametrize('n,size,seed', [(10, 4, 0), (1000, 999, 3),
                                         (7, 0, 0), (7, 7, 1), (7, 20, 2)])
def test_subset_indices_are_a_fixed_sorted_sample(n, size, seed):
  indices = batching.subset_indices(n, size, seed)
  assert len(indices) == (min(size, n) if size else n)
  assert np.all(np.diff(indices) > 0) and indices.min() >= 0
  assert indices.max() < n
  np.testing.assert_array_equal(indices, batching.subset_indices(n, size, seed))
  if 0 < size < n:  # another seed, another sample
    assert not np.array_equal(indices, batching.subset_indices(n, size, seed + 1))
  images = _random_binary(np.random.default_rng(seed), n)
  np.testing.assert_array_equal(batching.eval_subset(images, size, seed),
                                images[indices])


def test_seeded_subset_represents_the_class_ordered_test_split(mnist):
  # The static binarized MNIST test split is ordered by class: the pixel
  # means of its 1000-image blocks run 0.170, 0.076, 0.140, ... The first
  # 2000 images are two of those blocks; a seeded 2000 spreads over all.
  test = mnist['test']
  pixel_mean = lambda images: images.mean(dtype=np.float64)
  blocks = [pixel_mean(test[i:i + 1000]) for i in range(0, 10000, 1000)]
  np.testing.assert_allclose(blocks[:3], [0.1701, 0.0764, 0.1404], atol=1e-4)
  whole = pixel_mean(test)
  first = pixel_mean(test[:2000])
  seeded = pixel_mean(batching.eval_subset(test, 2000, seed=0))
  assert abs(first - whole) > 0.009     # measured 0.1232 vs 0.1325
  assert abs(seeded - whole) < 0.0003   # measured 0.13266 vs 0.13251
  # Every class block is sampled at about its share (binomial sd ~12.6):
  # 181..222 of 200; the first 2000 take 1000, 1000 and 0 x 8.
  per_block = np.bincount(batching.subset_indices(10000, 2000, 0) // 1000,
                          minlength=10)
  assert per_block.min() >= 175 and per_block.max() <= 225, per_block
  # The block-weighted pixel mean of the subset follows the whole split's.
  weighted = np.dot(per_block, blocks) / 2000
  assert abs(weighted - whole) < 0.0005
