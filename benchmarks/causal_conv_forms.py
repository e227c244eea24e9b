"""The two forms of PixelCNN++'s stride-1 causal convolutions, for
benchmarks that time them A B A B in one process.

  windowed  what `pixelcnn_layers.CausalConv` computes: one matrix product over the
            kernel's shifted windows (`nets.windowed_conv`);
  lax       the same map as `lax.conv_general_dilated`, the form it replaced.

`causal_conv_form('lax')` swaps `nets.windowed_conv` for the lax form while
programs are traced inside it; the caller must trace them again for each
form (a new `jax.jit`, or `programs._programs.cache_clear()`).
"""

from __future__ import annotations

import contextlib

import jax


from rdvae.models import nets

FORMS = ('windowed', 'lax')


def _lax_form(x, kernel, padding):
  return jax.lax.conv_general_dilated(
      x, kernel, (1, 1), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@contextlib.contextmanager
def causal_conv_form(form: str):
  """Within the block, stride-1 causal convolutions are traced in `form`."""
  if form not in FORMS:
    raise ValueError(f'causal convolution form {form!r}; expected one of '
                     f'{FORMS}')
  original = nets.windowed_conv
  if form == 'lax':
    nets.windowed_conv = _lax_form
  try:
    yield
  finally:
    nets.windowed_conv = original
