"""Tests of rdvae.nets: gated activation and the exact fast (de)convolutions."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rdvae.models import nets

DN = ('NHWC', 'HWIO', 'NHWC')

# (name, input size, kernel, stride, padding): the layer kinds of F.2 first,
# then other shapes to check that the index bookkeeping is general.
DECONV_CASES = [
    ('f2_dense_7_valid_1x1', 1, 7, 1, 'VALID'),
    ('f2_same_5_stride1', 7, 5, 1, 'SAME'),
    ('f2_same_5_stride2_7to14', 7, 5, 2, 'SAME'),
    ('f2_same_5_stride2_14to28', 14, 5, 2, 'SAME'),
    ('f2_same_4_stride1_even', 28, 4, 1, 'SAME'),
    ('valid_3_stride2', 5, 3, 2, 'VALID'),
    ('same_4_stride3', 6, 4, 3, 'SAME'),
    ('valid_4_stride2_1x1', 1, 4, 2, 'VALID'),
    ('empty_phases_2_stride3', 4, 2, 3, 'VALID'),
    ('empty_phase_1_stride2', 4, 1, 2, 'SAME'),
]


def _random(seed, shape):
  # Test inputs from NumPy: jax.random.normal compiles a program per shape.
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape),
                     jnp.float32)


def test_gated_activation_matches_hand_computation():
  h = jnp.array([[1.0, -2.0, 0.5, 3.0]])  # halves a = (1, -2), b = (0.5, 3)
  expected = np.array([[1.0 / (1.0 + np.exp(-0.5)),
                        -2.0 / (1.0 + np.exp(-3.0))]])
  np.testing.assert_allclose(nets.gated_activation(h), expected, rtol=1e-6)


def test_gated_dense_is_two_linear_maps():
  layer = nets.GatedDense(3)
  x = _random(0, (4, 5))
  params = layer.init(jax.random.key(1), x)['params']
  w, b = params['Dense_0']['kernel'], params['Dense_0']['bias']
  w = w.at[:].set(_random(2, w.shape))
  b = _random(3, b.shape)
  params = {'Dense_0': {'kernel': w, 'bias': b}}
  linear = x @ w[:, :3] + b[:3]
  gate = x @ w[:, 3:] + b[3:]
  np.testing.assert_allclose(layer.apply({'params': params}, x),
                             linear / (1.0 + jnp.exp(-gate)), rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize('transpose_kernel', [False, True],
                         ids=['flax_kernel', 'tf_kernel'])
@pytest.mark.parametrize('name,size,kernel,stride,padding', DECONV_CASES,
                         ids=[c[0] for c in DECONV_CASES])
def test_conv_transpose_equals_lax(name, size, kernel, stride, padding,
                                   transpose_kernel):
  del name
  x = _random(0, (2, size, size, 3))
  shape = (kernel, kernel, 4, 3) if transpose_kernel else (kernel, kernel, 3, 4)
  w = _random(1, shape)
  expected, got = jax.jit(lambda x, w: (
      jax.lax.conv_transpose(x, w, (stride, stride), padding,
                             dimension_numbers=DN,
                             transpose_kernel=transpose_kernel),
      nets.conv_transpose(x, w, (stride, stride), padding,
                          transpose_kernel=transpose_kernel)))(x, w)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize('name,size,kernel,stride,padding', DECONV_CASES[:5],
                         ids=[c[0] for c in DECONV_CASES[:5]])
def test_convert_conv_transpose_kernel_matches_flax_layer(name, size, kernel,
                                                         stride, padding):
  """A flax ConvTranspose's weights, converted, give its outputs (+ bias)."""
  del name
  x = _random(0, (2, size, size, 8))
  layer = nn.ConvTranspose(6, (kernel, kernel), (stride, stride), padding,
                           bias_init=nn.initializers.normal(1.0))
  params = layer.init(jax.random.key(1), x)['params']
  expected = jax.jit(layer.apply)({'params': params}, x)

  @jax.jit
  def converted(kernel, x):
    sub, (dh, dw) = nets.convert_conv_transpose_kernel(
        kernel, (stride, stride), padding)
    assert sub.shape[2:] == (8, stride * stride * 6)
    if size == 1:
      return nets.conv_transpose(x, kernel, (stride, stride), padding)
    span = sub.shape[0]
    pads = ((-dh, span - 1 + dh), (-dw, span - 1 + dw))
    y = jax.lax.conv_general_dilated(x, sub, (1, 1), pads, dimension_numbers=DN)
    return nets.depth_to_space(y, (stride, stride))

  got = converted(params['kernel'], x)
  np.testing.assert_allclose(got + params['bias'], expected, rtol=1e-5,
                             atol=2e-5)


def test_stride2_same_kernel_5_tap_layout():
  """(5, 2, SAME): phase 0 reads taps 1, 3 at offsets -1, 0; phase 1 taps 0, 2, 4."""
  w = jnp.arange(1.0, 6.0).reshape(5, 1, 1, 1)  # a 5x1 kernel, tap t = t + 1
  sub, (dh, _) = nets.convert_conv_transpose_kernel(w, (2, 2), 'SAME')
  assert dh == -1 and sub.shape == (3, 1, 1, 4)
  phase0 = sub[:, 0, 0, 0]  # (rh, rw) = (0, 0)
  phase1 = sub[:, 0, 0, 2]  # (rh, rw) = (1, 0)
  np.testing.assert_array_equal(phase0, [2.0, 4.0, 0.0])  # taps 1, 3, none
  np.testing.assert_array_equal(phase1, [1.0, 3.0, 5.0])  # taps 0, 2, 4


@pytest.mark.parametrize('kernel,stride,expected', [
    (5, 2, (([1, 3], -1), ([0, 2, 4], -1))),
    (5, 1, (([0, 1, 2, 3, 4], -2),)),
    (4, 1, (([0, 1, 2, 3], -2),)),
    (1, 2, (([0], 0), ([], 0))),
], ids=['f2_stride2', 'f2_stride1', 'f2_even', 'empty_phase'])
def test_phase_taps(kernel, stride, expected):
  """Each phase's taps and the input offset of its first tap ('SAME')."""
  got = nets.phase_taps(kernel, stride, 'SAME')
  assert [(list(t), first) for t, first in got] == [
      (list(t), first) for t, first in expected]


def _assert_same_map_and_gradients(fast, ref, x, w, value_tol, grad_tol):
  """fast(x, w) equals ref(x, w), and so do their gradients with respect to
  x and w under a random cotangent; tolerances are (rtol, atol)."""
  expected, got = jax.jit(lambda x, w: (ref(x, w), fast(x, w)))(x, w)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=value_tol[0],
                             atol=value_tol[1])
  cotangent = _random(2, expected.shape)
  grad = lambda f: jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * cotangent),
                                    argnums=(0, 1)))(x, w)
  for a, b in zip(grad(fast), grad(ref)):
    np.testing.assert_allclose(a, b, rtol=grad_tol[0], atol=grad_tol[1])


@pytest.mark.parametrize('size,kernel,stride,padding', [
    (7, 7, 1, 'VALID'), (5, 5, 1, 'VALID'), (14, 5, 2, 'SAME')],
    ids=['f1_valid_dense', 'valid_dense_5', 'f1_stride2'])
def test_conv_equals_lax(size, kernel, stride, padding):
  x = _random(0, (2, size, size, 3))
  w = _random(1, (kernel, kernel, 3, 4))
  ref = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (stride, stride), padding, dimension_numbers=DN)
  fast = lambda x, w: nets.conv(x, w, (stride, stride), padding)
  # The gradients agree too (the dense form exists for its backward pass).
  _assert_same_map_and_gradients(fast, ref, x, w, value_tol=(1e-5, 2e-5),
                                 grad_tol=(1e-4, 1e-4))


@pytest.mark.parametrize('kernel,padding', [
    ((2, 3), ((1, 0), (1, 1))), ((2, 2), ((1, 0), (1, 0))),
    ((2, 3), ((0, 0), (1, 1))), ((3, 1), ((2, 1), (0, 0)))],
    ids=['down', 'down_right', 'down_row_window', 'uneven'])
def test_windowed_conv_equals_lax(kernel, padding):
  # PixelCNN++'s causal kernels and paddings (the row window of the sampler
  # has no top padding), and a taller kernel padded above and below.
  x = _random(0, (2, 6, 5, 3))
  w = _random(1, (*kernel, 3, 4))
  ref = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), padding, dimension_numbers=DN)
  windowed = lambda x, w: nets.windowed_conv(x, w, padding)
  _assert_same_map_and_gradients(windowed, ref, x, w, value_tol=(1e-5, 1e-5),
                                 grad_tol=(1e-5, 1e-5))


def test_depth_to_space_layout():
  """Channel block (rh, rw) of input pixel (i, j) lands at (2i + rh, 2j + rw)."""
  x = jnp.arange(2 * 2 * 3 * 12, dtype=jnp.float32).reshape(2, 2, 3, 12)
  y = nets.depth_to_space(x, (2, 2))
  assert y.shape == (2, 4, 6, 3)
  for rh in range(2):
    for rw in range(2):
      block = slice((2 * rh + rw) * 3, (2 * rh + rw + 1) * 3)
      np.testing.assert_array_equal(y[:, rh::2, rw::2], x[..., block])


@pytest.mark.parametrize('kernel,stride,padding,size', [
    (7, 1, 'VALID', 1), (5, 2, 'SAME', 7), (4, 1, 'SAME', 6)],
    ids=['dense', 'stride2', 'even_kernel'])
def test_gated_deconv_fast_equals_flax_conv_transpose(kernel, stride, padding,
                                                      size):
  """Same parameters, same values as gating an nn.ConvTranspose of 2C outputs."""
  x = _random(0, (3, size, size, 5))
  layer = nets.GatedDeconv(4, kernel, stride, padding)
  params = layer.init(jax.random.key(1), x)['params']
  params = {'kernel': params['kernel'], 'bias': _random(2, (8,))}
  flax_layer = nn.ConvTranspose(8, (kernel, kernel), (stride, stride), padding)
  expected = jax.jit(lambda p, x: nets.gated_activation(
      flax_layer.apply({'params': p}, x)))(params, x)
  for fast in (True, False):
    got = jax.jit(nets.GatedDeconv(4, kernel, stride, padding, fast=fast).apply
                  )({'params': params}, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_gated_conv_fast_equals_flax_conv():
  x = _random(0, (3, 28, 28, 2))
  layer = nets.GatedConv(4, 5, 2, 'SAME')
  params = layer.init(jax.random.key(1), x)['params']
  params = {'kernel': params['kernel'], 'bias': _random(2, (8,))}
  flax_layer = nn.Conv(8, (5, 5), (2, 2), 'SAME')
  expected = jax.jit(lambda p, x: nets.gated_activation(
      flax_layer.apply({'params': p}, x)))(params, x)
  got = jax.jit(layer.apply)({'params': params}, x)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
