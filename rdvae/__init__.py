"""rdvae: train and measure VAEs by rate and distortion (Alemi et al., 2018).

`rdvae.train_and_eval(config, workdir)` runs one experiment (see
`rdvae.training.loop`); `rdvae.load(workdir)` gives its trained model
(`rdvae.runs.trained`). Both are imported lazily so that `import
rdvae.types` stays light. `rdvae.__version__` is the installed package's
version.
"""

from importlib import metadata as _metadata

try:
  __version__ = _metadata.version('rdvae')
except _metadata.PackageNotFoundError:  # run from a checkout, not installed
  __version__ = '0+unknown'


def __getattr__(name):
  if name == 'train_and_eval':
    from rdvae.training import loop as train  # pylint: disable=g-import-not-at-top
    return train.train_and_eval
  if name == 'load':
    from rdvae.runs import trained  # pylint: disable=g-import-not-at-top
    return trained.load
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
