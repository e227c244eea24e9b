"""Tests for rdvae/analysis/report.py, rdvae/analysis/sweep_results.py,
rdvae/analysis/figures.py and experiments/report.py on a fake sweep directory
(written by the real writers of each file): point status, a failed point's
error, H-hat, frontier.csv against brute force, report.md rows, the figures
and the TensorBoard HParams runs."""

import csv
import os
import subprocess
import sys
import tempfile
import threading
import traceback

from absl.testing import absltest
import ml_collections
import numpy as np
from tensorboardX.proto import event_pb2

from rdvae.analysis import figures
from rdvae.analysis import report
from rdvae.analysis import sweep_results
from rdvae.analysis import toy_figures
from rdvae.files import metric_files
from rdvae.files import run_files
from rdvae.files import sweep_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAILURE_MESSAGE = "non-finite loss at step 7 (train.nonfinite='stop')"

# name, family, kind, beta, rate target, R, D, IWAE, E, G, active units
DONE = [
    ('a_beta0.1', '---', 'beta_vae', 0.1, 0.0, 60.0, 40.0, -97.0, 5.0, 70.0,
     30),
    ('b_beta1', '---', 'elbo', 1.0, 0.0, 25.0, 75.0, -96.0, None, None, None),
    ('c_beta10', '---', 'beta_vae', 10.0, 0.0, 0.2, 150.0, -150.0, 1.0, 3.0, 2),
    ('d_dominated', '+--', 'beta_vae', 0.5, 0.0, 61.0, 45.0, -104.0, None,
     None, None),
    ('e_duplicate', '++v', 'beta_vae', 1.0, 0.0, 25.0, 75.0, -98.0, None, None,
     None),
    ('f_pixel', '-+-', 'beta_vae', 1.0, 0.0, 0.5, 105.0, -90.5, None, None,
     None),
    ('g_target', '-+v', 'target_rate', 1.0, 30.0, 30.0, 72.0, -101.0, None,
     None, None),
    ('h_collinear', '+++', 'beta_vae', 2.0, 0.0, 40.0, 60.0, -99.0, None,
     None, None),
]


def _write_point(workdir, name, family, kind, beta, rate, result=None,
                 failure=None, grid=True):
  directory = os.path.join(workdir, name)
  os.makedirs(os.path.join(directory, 'images'))
  config = {'model': {'family': family},
            'objective': {'kind': kind, 'beta': beta, 'rate': rate,
                          'distortion': 0.0, 'beta_schedule': 'constant'}}
  run_files.prepare_workdir(directory, ml_collections.ConfigDict(config))
  sweep_files.write_sweep_point(
      directory, name, {'model.family': family, 'objective.beta': beta})
  if grid:
    for step in (10, 200):  # the report must take the highest step
      image = np.full((20, 30), 0.0 if step == 200 else 1.0)
      image[5:15, 5:25] = 1.0 if step == 200 else 0.0
      metric_files.write_png(
          os.path.join(directory, 'images', f'grid_{step:08d}.png'), image)
  if result is not None:
    run_files.write_results(directory, result)
  if failure is not None:  # as the sweep runner records it
    try:
      raise failure
    except type(failure) as e:
      run_files.write_failure(directory, e, traceback.format_exc())


def make_fake_sweep(workdir):
  for (name, family, kind, beta, target, r, d, iwae, e, g, units) in DONE:
    result = {'rate': r, 'distortion': d, 'elbo': -(r + d), 'iwae': iwae,
              'test/rate': r, 'test/distortion': d}
    if e is not None:
      result.update({'test/generative_lower': e, 'test/generative_upper': g,
                     'test/active_units': units})
    _write_point(workdir, name, family, kind, beta, target, result)
  _write_point(workdir, 'x_pending', '--v', 'beta_vae', 3.0, 0.0, grid=False)
  _write_point(workdir, 'y_failed', '+-v', 'beta_vae', 4.0, 0.0,
               failure=FloatingPointError(FAILURE_MESSAGE))
  os.makedirs(os.path.join(workdir, 'not_a_point'))  # ignored


def _brute_frontier(points):
  """Names of the non-dominated (R, D) values, first of duplicates, by R."""
  keep = []
  for i, (name, r, d) in enumerate(points):
    dominated = any(r2 <= r and d2 <= d and (r2 < r or d2 < d)
                    for _, r2, d2 in points)
    duplicate = any((r2, d2) == (r, d) for _, r2, d2 in points[:i])
    if not dominated and not duplicate:
      keep.append((r, name, d))
  return [(name, r, d) for r, name, d in sorted(keep)]


def _read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def _tempdir_method(self):
  return self.enter_context(tempfile.TemporaryDirectory())


class ReportTest(absltest.TestCase):
  """One fake sweep and its report, written once (drawing takes seconds)."""

  _tempdir = _tempdir_method

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._root = tempfile.TemporaryDirectory()
    cls.workdir = os.path.join(cls._root.name, 'sweep')
    make_fake_sweep(cls.workdir)
    cls.out = report.write_report(cls.workdir, betas=(1.0, 0.1),
                                  families=('---',))

  @classmethod
  def tearDownClass(cls):
    cls._root.cleanup()
    super().tearDownClass()

  def test_points_status_and_settings(self):
    points = {p.name: p for p in sweep_results.read_sweep(self.workdir)}
    self.assertLen(points, len(DONE) + 2)
    self.assertNotIn('not_a_point', points)
    self.assertEqual(points['x_pending'].status, 'pending')
    self.assertEqual(points['y_failed'].status, 'failed')
    self.assertIn('FloatingPointError', points['y_failed'].error)
    self.assertEqual(points['y_failed'].error,
                     f'FloatingPointError: {FAILURE_MESSAGE}')
    self.assertEqual(points['b_beta1'].beta, 1.0)
    self.assertEqual(points['g_target'].setting, 'sigma=30')
    self.assertIsNone(points['g_target'].beta)
    self.assertTrue(points['a_beta0.1'].grid.endswith('grid_00000200.png'))
    self.assertIsNone(points['x_pending'].grid)

  def test_disagreeing_evaluations_are_flagged(self):
    points = sweep_results.read_sweep(self.workdir)
    self.assertEqual(sweep_results.disagreements(points), [])
    workdir = self._tempdir()
    make_fake_sweep(workdir)
    directory = os.path.join(workdir, 'a_beta0.1')
    run_files.write_results(directory, dict(run_files.read_results(directory),
                                            params='best'))
    lines = sweep_results.disagreements(sweep_results.read_sweep(workdir))
    self.assertEqual(lines, [
        "results.json 'params' differs between points ('best': a_beta0.1; "
        'None: b_beta1, c_beta10, d_dominated, e_duplicate, f_pixel (+2))'])

  def test_h_hat_is_the_lowest_negative_iwae(self):
    h_hat, source = sweep_results.estimate_entropy(
        sweep_results.read_sweep(self.workdir))
    self.assertEqual(h_hat, 90.5)
    self.assertIn('f_pixel', source)

  def test_h_hat_of_the_toy_is_its_exact_entropy(self):
    workdir = self._tempdir()
    make_fake_sweep(workdir)
    directory = os.path.join(workdir, 'toy_point')
    run_files.prepare_workdir(directory, ml_collections.ConfigDict(
        {'dataset': {'name': 'toy'},
         'model': {'encoder': 'bump', 'decoder': 'tabular'},
         'objective': {'kind': 'rate_constraint', 'rate': 0.5}}))
    run_files.write_results(directory, {'rate': 0.5, 'distortion': 2.414,
                                        'elbo': -2.914, 'entropy': 2.914})
    points = sweep_results.read_sweep(workdir)
    h_hat, _ = sweep_results.estimate_entropy(points)
    self.assertEqual(h_hat, 2.914)
    toy = [p for p in points if p.name == 'toy_point'][0]
    self.assertEqual(toy.family, 'toy bump/tabular')
    self.assertEqual(toy.setting, 'sigma=0.5')

  def test_writes_frontier_csv_against_brute_force(self):
    directory = self.out['directory']
    got = [(r['name'], float(r['rate']), float(r['distortion']))
           for r in _read_csv(os.path.join(directory, 'frontier.csv'))]
    self.assertEqual(got, _brute_frontier([(x[0], x[5], x[6]) for x in DONE]))
    # By hand: d is dominated by a, e duplicates b (b comes first).
    self.assertEqual([n for n, _, _ in got],
                     ['c_beta10', 'f_pixel', 'b_beta1', 'g_target',
                      'h_collinear', 'a_beta0.1'])
    hull = [r['name'] for r in _read_csv(os.path.join(directory, 'hull.csv'))]
    # Slopes c->f -150, f->b -30/24.5, b->a -1; h lies on b->a, g above it.
    self.assertEqual(hull, ['c_beta10', 'f_pixel', 'b_beta1', 'a_beta0.1'])

  def test_points_csv_and_report_md_rows(self):
    directory = self.out['directory']
    rows = {r['name']: r for r in
            _read_csv(os.path.join(directory, 'points.csv'))}
    self.assertLen(rows, len(DONE) + 2)
    self.assertEqual(rows['x_pending']['status'], 'pending')
    self.assertEqual(rows['x_pending']['rate'], '')
    self.assertEqual(rows['y_failed']['status'], 'failed')
    self.assertEqual(rows['y_failed']['error'],
                     f'FloatingPointError: {FAILURE_MESSAGE}')
    self.assertEqual(float(rows['a_beta0.1']['h_hat_minus_d']), 90.5 - 40.0)
    self.assertEqual(float(rows['a_beta0.1']['generative_lower']), 5.0)
    self.assertEqual(rows['a_beta0.1']['model.family'], '---')
    self.assertEqual(rows['b_beta1']['frontier'], 'PH')
    self.assertEqual(rows['e_duplicate']['frontier'], '')
    self.assertEqual(rows['h_collinear']['frontier'], 'P')
    with open(os.path.join(directory, 'report.md')) as f:
      text = f.read()
    self.assertIn('10 points: 8 done, 1 pending, 1 failed.', text)
    self.assertIn('H-hat = 90.5 nats', text)
    self.assertIn('| a_beta0.1 | done | --- | beta_vae | beta=0.1 | 60 | 40 | '
                  '-100 | -97 | 50.5 | 5 | 70 | 30 |  |  |  |  | PH |', text)
    self.assertIn('| b_beta1 | done | --- | elbo | beta=1 | 25 | 75 | -100 | '
                  '-96 | 15.5 |  |  |  |  |  |  |  | PH |', text)
    self.assertIn('| g_target | done | -+v | target_rate | sigma=30 | 30 | 72 '
                  '| -102 | -101 | 18.5 |  |  |  |  |  |  |  | P |', text)
    self.assertIn('| x_pending | pending | --v | beta_vae | beta=3 |  |',
                  text)
    self.assertIn('- y_failed: FloatingPointError', text)
    self.assertIn(f'## Failed points\n\n- y_failed: FloatingPointError: '
                  f'{FAILURE_MESSAGE}\n', text)
    # Hull c, f, b, a: edge betas 150, 30/24.5 and 1.
    self.assertIn('| c_beta10 | 0.2 | 150 | 150 to inf |', text)
    self.assertIn('| f_pixel | 0.5 | 105 | 1.224 to 150 |', text)
    self.assertIn('| b_beta1 | 25 | 75 | 1 to 1.224 |', text)
    self.assertIn('| g_target | 30 | 72 |  |', text)
    self.assertIn('| a_beta0.1 | 60 | 40 | 0 to 1 |', text)
    for name in self.out['files']:
      if name.endswith('.png'):
        self.assertIn(f'![{name}]({name})', text)

  def test_figures_exist_and_are_not_blank(self):
    out = self.out
    names = set(out['files'])
    self.assertContainsSubset(
        {'rd_plane.png', 'rd_panels.png', 'elbo_rate.png',
         'grids_frontier.png', 'grids_beta_1.png', 'grids_beta_0.1.png',
         'grids_family_---.png'},
        names)
    for name in names:
      if not name.endswith('.png'):
        continue
      image = _read_png(os.path.join(out['directory'], name))
      self.assertGreater(image.shape[0], 200, name)
      self.assertGreater(image.std(), 0.05, name)  # not one flat colour
    self.assertEqual(
        [p.name for p in report.choose_grids(sweep_results.read_sweep(
            self.workdir))['grids_beta_1']],
        ['b_beta1', 'f_pixel', 'e_duplicate'])  # by family: ---, -+-, ++v
    chosen = report.choose_grids(sweep_results.read_sweep(self.workdir),
                                 betas=(), max_grids=2, families=('---',))
    self.assertEqual([p.name for p in chosen['grids_family_---']],
                     ['a_beta0.1', 'c_beta10'])  # the ends of R 60, 25, 0.2
    self.assertEqual([p.name for p in chosen['grids_frontier']],
                     ['c_beta10', 'a_beta0.1'])
    self.assertEqual([f for f in os.listdir(out['directory'])
                      if '.tmp' in f or f.endswith('.old')], [])

  def test_tensorboard_hparams_one_run_per_finished_point(self):
    workdir = self._tempdir()
    make_fake_sweep(workdir)
    points = sweep_results.read_sweep(workdir)
    directory = os.path.join(workdir, 'tensorboard')
    report.write_hparams(points, 90.5, directory)
    report.write_hparams(points, 90.5, directory)  # replaces, not appends
    runs = sorted(d for d in os.listdir(directory)
                  if os.path.isdir(os.path.join(directory, d)))
    self.assertEqual(runs, sorted(x[0] for x in DONE))
    scalars = _read_scalars(os.path.join(directory, 'a_beta0.1'))
    self.assertEqual(scalars['hparams/rate'], 60.0)
    self.assertEqual(scalars['hparams/generative_lower'], 5.0)
    self.assertEqual(scalars['hparams/h_hat_minus_d'], 50.5)

  def test_an_empty_or_running_sweep_still_reports(self):
    workdir = self._tempdir()
    _write_point(workdir, 'only_pending', '---', 'elbo', 1.0, 0.0,
                 grid=False)
    out = report.write_report(workdir)
    self.assertEqual(out['h_hat'], None)
    with open(os.path.join(out['directory'], 'frontier.csv')) as f:
      self.assertEqual(f.read(), 'name,rate,distortion\n')

  def test_command_line(self):
    workdir = self._tempdir()
    make_fake_sweep(workdir)
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run(
        [sys.executable, '-m', 'experiments.report',
         f'--workdir={workdir}', '--grid_betas=1,10'], cwd=REPO,
        env=env, capture_output=True, text=True, check=False, timeout=120)
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertIn('10 points (8 done, 1 pending, 1 failed); H-hat = 90.5 nats',
                  done.stdout)
    self.assertTrue(os.path.exists(
        os.path.join(workdir, 'report', 'grids_beta_10.png')))
    bad = subprocess.run(
        [sys.executable, '-m', 'experiments.report',
         f'--workdir={workdir}', '--grid_betas=one'], cwd=REPO, env=env,
        capture_output=True, text=True, check=False, timeout=120)
    self.assertNotEqual(bad.returncode, 0)
    self.assertIn("--grid_betas=['one']", bad.stderr)


class FiguresTest(absltest.TestCase):

  _tempdir = _tempdir_method

  def test_toy_columns(self):
    rng = np.random.default_rng(0)
    def table(shape):
      t = rng.random(shape)
      return t / t.sum(axis=-1, keepdims=True)
    p = table(30)
    column = toy_figures.ToyColumn('t', p, (np.arange(30) + 0.5) / 30,
                               np.stack([0.7 * p, 0.3 * p]), table((30, 10)),
                               table((10, 30)), table(10))
    path = os.path.join(self._tempdir(), 'toy.png')
    toy_figures.plot_toy_columns([column, column], path)
    image = _read_png(path)
    self.assertEqual(image.shape, (1040, 540))
    self.assertGreater(image.std(), 0.05)

  def test_toy_columns_drawn_again_equal_a_new_figure(self):
    """The figure kept from the last call, redrawn with other tables (other
    limits, colour scales and titles), has the pixels of a new figure."""
    def column(seed):
      rng = np.random.default_rng(seed)
      def table(shape, power):
        t = rng.random(shape) ** power
        return t / t.sum(axis=-1, keepdims=True)
      p = table(30, 3 * seed + 1)
      return toy_figures.ToyColumn(
          f'point {seed}', p, (np.arange(30) + 0.5) / 30,
          np.stack([0.3 * p, 0.7 * p]), table((30, 12), 8),
          table((12, 30), seed + 1), table(12, 5 * seed + 1))

    def new_figure(columns, path, title):  # on a thread that kept none
      thread = threading.Thread(target=toy_figures.plot_toy_columns,
                                args=(columns, path, title))
      thread.start()
      thread.join()

    directory = self._tempdir()
    draws = [([column(0)], None), ([column(1)], None), ([column(2)], None),
             ([column(3), column(1)], 'two'), ([column(2), column(0)], 'two')]
    for i, (columns, title) in enumerate(draws):
      kept, new = (os.path.join(directory, f'{name}{i}.png')
                   for name in ('kept', 'new'))
      toy_figures.plot_toy_columns(columns, kept, title)
      new_figure(columns, new, title)
      np.testing.assert_array_equal(_read_png(kept, 'RGBA'),
                                    _read_png(new, 'RGBA'), err_msg=str(i))
    # A column that fails to draw leaves no broken figure to the next.
    broken = column(1)._replace(encoder=np.ones((30, 5)))
    with self.assertRaises(ValueError):
      toy_figures.plot_toy_columns([broken], os.path.join(directory, 'x.png'))
    toy_figures.plot_toy_columns([column(3)], os.path.join(directory,
                                                           'after.png'))
    new_figure([column(3)], os.path.join(directory, 'new_after.png'), None)
    np.testing.assert_array_equal(
        _read_png(os.path.join(directory, 'after.png'), 'RGBA'),
        _read_png(os.path.join(directory, 'new_after.png'), 'RGBA'))
    # The draws differ from each other: each redraw changed the pixels.
    self.assertFalse(np.array_equal(
        _read_png(os.path.join(directory, 'kept1.png')),
        _read_png(os.path.join(directory, 'kept2.png'))))

  def test_toy_report_figures(self):
    # experiments/toy_report.py's Fig. 2 path, on hand-built tables (no
    # training); in a subprocess, since the script defines absl flags.
    workdir = self._tempdir()
    script = (
        'import sys\n'
        'from experiments import toy_report\n'
        'from rdvae.toy import data\n'
        'from rdvae.toy import model\n'
        'spec = data.compute_data_spec()\n'
        'hand = model.true_process_tables(spec, 30)\n'
        'keys = [(r, o) for r in toy_report.READINGS\n'
        '        for o in toy_report.OBJECTIVES]\n'
        'tables = {k: hand for k in keys + [("true_process", "hand_built")]}\n'
        'print(toy_report.write_figures(sys.argv[1], '
        '{"spec": spec, "tables": tables}))\n')
    done = subprocess.run(
        [sys.executable, '-c', script, workdir], cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu'),
        capture_output=True, text=True, check=False, timeout=300)
    self.assertEqual(done.returncode, 0, done.stderr)
    for name in ('fig2_fig2.png', 'fig2_bump_decoder.png'):
      image = _read_png(os.path.join(workdir, name))
      self.assertEqual(image.shape, (1076, 796))  # 5 rows, 3 columns, a title
      self.assertGreater(image.std(), 0.05)

  def test_toy_column_rate_and_distortion(self):
    # x = z, two equally likely states: R = I(x; z) = log 2, D = 0.
    eye = np.eye(2)
    column = toy_figures.ToyColumn('t', np.array([0.5, 0.5]),
                                   np.array([0.0, 1.0]), np.eye(2) / 2, eye,
                                   eye, np.array([0.5, 0.5]))
    rate, distortion = toy_figures.rate_distortion(column)
    self.assertAlmostEqual(rate, np.log(2.0), places=12)
    self.assertAlmostEqual(distortion, 0.0, places=12)

  def test_latent_order_puts_unused_states_last(self):
    encoder = np.array([[0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.2, 0.8]])
    order = toy_figures.latent_order(np.array([0.5, 0.5]), np.array([0.0, 1.0]),
                                 encoder)
    # Posterior means of x: z1 0, z2 2/7, z3 1; z0 unused.
    self.assertEqual(order.tolist(), [1, 2, 3, 0])

  def test_family_style(self):
    style = figures.family_style('+-v')
    self.assertEqual(style['marker'], 'v')
    self.assertEqual(style['markerfacecolor'], 'white')  # IAF: open
    self.assertEqual(style['color'], figures.DECODER_COLOURS['-'])
    self.assertEqual(figures.family_style('---')['markerfacecolor'],
                     figures.DECODER_COLOURS['-'])
    self.assertFalse(figures.is_family('toy bump/tabular'))
    self.assertEqual(figures.family_label('-+v'), '(-,+,v)')
    self.assertEqual(figures.family_label('toy bump/tabular'),
                     'toy bump/tabular')
    self.assertEqual(figures.family_label(None), 'other')
    self.assertNotEqual(figures.family_style(None, 0)['marker'],
                        figures.family_style(None, 1)['marker'])


def _read_scalars(directory):
  """tag -> simple_value of the TFRecord event files in directory."""
  scalars = {}
  for name in os.listdir(directory):
    with open(os.path.join(directory, name), 'rb') as f:
      data = f.read()
    offset = 0
    while offset < len(data):  # length u64, crc u32, record, crc u32
      length = int.from_bytes(data[offset:offset + 8], 'little')
      event = event_pb2.Event.FromString(
          data[offset + 12:offset + 12 + length])
      offset += 16 + length
      for value in event.summary.value:
        if value.WhichOneof('value') == 'simple_value':
          scalars[value.tag] = value.simple_value
  return scalars


def _read_png(path, mode='L'):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as image:
    return np.asarray(image.convert(mode), np.float32) / 255.0


if __name__ == '__main__':
  absltest.main()


def _line(family, count, h_hat_gap=0.0):
  """`count` points with R 1..25 and D falling from 200."""
  return [figures.PlanePoint(f'{family}{i}', 1.0 + 24.0 * i / (count - 1),
                             200.0 - 4.0 * i + h_hat_gap, family)
          for i in range(count)]


class ReadableFiguresTest(absltest.TestCase):
  """The axes fit the points, panels compare something, grids are labelled,
  vacuous bounds are explained."""

  _tempdir = _tempdir_method

  def test_axes_fit_the_points_not_h_hat(self):
    points = _line('---', 8)  # R 1..25, D 172..200; H-hat 430 far away
    path = os.path.join(self._tempdir(), 'p.png')
    for draw, skew in ((figures.plot_rd_plane, False),
                       (figures.plot_elbo_rate, True)):
      ax = draw(points, 430.0, path).axes[0]
      rate = [p.rate for p in points]
      values = [p.rate + p.distortion if skew else p.distortion
                for p in points]
      self.assertEqual(ax.get_xlim()[0], 0.0)
      self.assertLess(ax.get_xlim()[1], 1.1 * max(rate))
      low, high = ax.get_ylim()
      self.assertLessEqual(low, min(values))
      self.assertGreaterEqual(high, max(values))
      self.assertLess(high, 1.1 * max(values))  # not stretched to 430
      self.assertGreater(low, 0.9 * min(values))
      # H-hat is named at the edge instead.
      self.assertTrue(any('lies above this view' in t.get_text()
                          for t in ax.texts))

  def test_h_hat_line_in_view_is_not_annotated(self):
    ax = figures.plot_rd_plane(_line('---', 8), 190.0, os.path.join(
        self._tempdir(), 'p.png')).axes[0]
    self.assertFalse(any('this view' in t.get_text() for t in ax.texts))

  def test_panels_only_where_kinds_differ(self):
    directory = self._tempdir()
    path = os.path.join(directory, 'panels.png')
    self.assertEqual(figures.panel_parts(_line('---', 4)), [])
    self.assertIsNone(figures.plot_rd_panels(_line('---', 4), 430.0, path))
    self.assertFalse(os.path.exists(path))
    mixed = _line('---', 4) + _line('--v', 4) + _line('+-v', 4)
    self.assertEqual(figures.panel_parts(mixed), ['encoder', 'marginal'])
    fig = figures.plot_rd_panels(mixed, 430.0, path)
    self.assertEqual([ax.get_title() for ax in fig.axes],
                     ['encoder: Gaussian vs IAF',
                      'marginal: normal vs VampPrior'])

  def test_grid_columns_are_labelled_at_their_centres(self):
    # 5 tiles of 28 px (metric_files.image_grid): 151 px wide.
    self.assertEqual(figures.grid_column_centres(151),
                     [14.5, 43.5, 72.5, 106.5, 135.5])
    self.assertEqual(figures.grid_column_centres(150), [])

  def test_vacuous_bounds_are_explained(self):
    def point(name, e, d):
      return sweep_results.PointResults(
          name, '', 'done', 'binarized_mnist', '---', 'elbo', 1.0, None, '',
          {}, {'rate': 5.0, 'distortion': d, 'elbo': -5.0 - d,
               'generative_lower': e})
    points = [point('a', -3.0, 400.0), point('b', 1.0, 90.0)]
    notes = report.vacuous_bounds(points, 395.0)
    self.assertLen(notes, 2)
    self.assertStartsWith(notes[0], 'E < 0 at 1 point(s) (a): ')
    self.assertIn('sampled log e(z|x) - log m(z)', notes[0])
    self.assertStartsWith(notes[1], 'H-hat - D < 0 at 1 point(s): ')
    self.assertIn('best -IWAE of the sweep', notes[1])
    self.assertEqual(report.vacuous_bounds(points[1:], 395.0), [])
