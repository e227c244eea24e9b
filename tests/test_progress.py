"""Tests of rdvae/evaluation/progress.py: the final evaluation's progress
lines and timings, and how many generated pairs it scores."""

import time

import pytest

from configs import mnist
from rdvae.evaluation import evaluator
from rdvae.evaluation import progress
from rdvae.training import loop as train


class _Clock:

  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_phase_prints_what_it_computes_then_a_line_per_interval(capsys):
  clock = _Clock()
  phase = progress.Phase('test', '200 examples, IWAE (K=100)', 10, clock)
  for _ in range(4):  # 5 s per batch: 30 s after the 6th
    clock.now += 5.0
    phase.advance()
  assert capsys.readouterr().out == (
      'evaluating test: 200 examples, IWAE (K=100)\n')
  clock.now += 10.0  # 30 s after the start, 6 of 10 batches
  phase.advance(2)
  assert capsys.readouterr().out == (
      '  test: 6/10 batches (60%), 30 s so far, about 20 s left\n')
  clock.now += 5.0
  phase.advance()  # 5 s after the last line: silent
  assert capsys.readouterr().out == ''
  assert phase.seconds() == 35.0
  phase.close()


def test_a_long_batch_still_gets_lines(capsys, monkeypatch):
  monkeypatch.setattr(progress, 'INTERVAL_SECONDS', 0.2)
  with progress.Phase('generative', None, 3):
    time.sleep(0.7)  # one device call longer than the interval
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) >= 2
  assert all(line.startswith('  generative: 0/3 batches (0%), ') and
             line.endswith(' so far, ETA after the first batch')
             for line in lines)
  time.sleep(0.4)  # closed: silent
  assert capsys.readouterr().out == ''


@pytest.mark.parametrize('generative, max_examples, pairs', [
    (1000, 0, 1000), (1000, 200, 200), (100, 2000, 100), (0, 200, 0)])
def test_max_examples_bounds_the_generated_pairs(generative, max_examples,
                                                  pairs):
  config = mnist.get_config()
  config.eval.generative_samples = generative
  config.eval.max_examples = max_examples
  assert evaluator.generative_pairs(config) == pairs
  assert evaluator.generative_batch_size(config) == max(1, min(500, pairs))


@pytest.mark.slow
def test_final_evaluation_prints_progress_and_times_each_part(
    tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(progress, 'INTERVAL_SECONDS', 0.0)  # every batch
  config = mnist.get_config('smoke')  # 12 examples in batches of 8, 4 pairs
  config.train.eval_every = 0
  results = train.train_and_eval(config, str(tmp_path / 'run'))
  out = capsys.readouterr().out
  for line in ('evaluating validation: 12 examples, R, D, ELBO and IWAE (K=2)',
               '  validation: 1/2 batches (50%), ',
               '  test: 2/2 batches (100%), ',
               'evaluating generative: 4 pairs z ~ m(z), x ~ d(x|z) for E '
               'and G, each x scored by IWAE (K=2)',
               '  generative: 1/1 batches (100%), '):
    assert line in out
  seconds = results['eval_seconds']
  assert sorted(seconds) == ['generative', 'grid', 'test', 'total',
                             'validation']
  assert all(v >= 0 for v in seconds.values())
  assert seconds['total'] >= sum(v for k, v in seconds.items()
                                 if k != 'total')
