"""Corrupt state: damaged, truncated or partial checkpoints, torn
metrics.jsonl lines, atomic whole-file writes."""

import asyncio
import gc
import json
import logging
import os
import shutil

import numpy as np
import pytest

import reference_run
from rdvae.files import checkpointing
from rdvae.files import atomic_files
from rdvae.files import metric_files


def _state(value):
  return {'w': np.full((64,), value, np.float32),
          'b': np.full((3,), value, np.float32)}


def _manager(tmp_path, steps=(1, 2, 3)):
  manager = checkpointing.create_manager(str(tmp_path), max_to_keep=5)
  for step in steps:
    checkpointing.save(manager, step, _state(float(step)))
  return manager


def _files(step_dir):
  return sorted((os.path.getsize(os.path.join(root, name)),
                 os.path.join(root, name))
                for root, _, names in os.walk(step_dir) for name in names)


def _truncate_largest(manager, step):
  size, path = _files(os.path.join(str(manager.directory), str(step)))[-1]
  with open(path, 'r+b') as f:
    f.truncate(size // 2)


def _delete_data(manager, step):
  for _, path in _files(os.path.join(str(manager.directory), str(step))):
    if '/d/' in path or path.endswith('manifest.ocdbt'):
      os.remove(path)


@pytest.mark.parametrize('damage', [_truncate_largest, _delete_data],
                         ids=['truncated', 'files_deleted'])
def test_damaged_latest_falls_back_to_the_previous_one(tmp_path, capsys,
                                                        damage):
  manager = _manager(tmp_path)
  damage(manager, 3)
  state = checkpointing.restore_latest_good(
      checkpointing.create_manager(str(tmp_path)), _state(0.0))
  np.testing.assert_array_equal(state['w'], np.full(64, 2.0, np.float32))
  out = capsys.readouterr().out
  bad = os.path.join(str(manager.directory), '3')
  assert f'WARNING: checkpoint {bad} cannot be restored' in out
  assert 'resuming from the checkpoint of step 2' in out
  assert os.path.isdir(bad + '.corrupt')
  manager = checkpointing.create_manager(str(tmp_path), max_to_keep=5)
  assert manager.all_steps() == [1, 2]
  checkpointing.save(manager, 3, _state(3.0))  # the step is saved afresh
  np.testing.assert_array_equal(checkpointing.restore(manager)['w'],
                                np.full(64, 3.0, np.float32))


def test_non_finite_checkpoint_is_not_restored(tmp_path):
  manager = _manager(tmp_path, steps=(1,))
  checkpointing.save(manager, 2, _state(np.nan))
  state = checkpointing.restore_latest_good(manager, _state(0.0))
  np.testing.assert_array_equal(state['b'], np.ones(3, np.float32))


def test_no_good_checkpoint_left_is_a_clear_error(tmp_path):
  manager = _manager(tmp_path, steps=(1, 2))
  for step in (1, 2):
    _truncate_largest(manager, step)
  with pytest.raises(checkpointing.NoGoodCheckpointError,
                     match=r'no checkpoint could be restored: .*/2 \(.*'
                     r'/1 \(.*remove the workdir'):
    checkpointing.restore_latest_good(manager, _state(0.0))


def test_no_checkpoint_at_all_restores_none(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path))
  assert checkpointing.restore_latest_good(manager, _state(0.0)) is None


def test_partial_save_is_ignored_and_cleaned_up(tmp_path):
  """What a save killed before orbax's rename leaves behind."""
  manager = _manager(tmp_path, steps=(1,))
  partial = os.path.join(str(manager.directory),
                         '2.orbax-checkpoint-tmp-1234567')
  os.makedirs(os.path.join(partial, 'default'))
  with open(os.path.join(partial, 'default', 'junk'), 'wb') as f:
    f.write(b'\0' * 10)
  manager = checkpointing.create_manager(str(tmp_path))
  assert manager.all_steps() == [1]
  state = checkpointing.restore_latest_good(manager, _state(0.0))
  np.testing.assert_array_equal(state['w'], np.ones(64, np.float32))
  # The resumed run saves step 2 again. The manager removes the leftover on
  # a thread of its own when it is created; a save waits for that first
  # (`wait_until_finished` does not).
  checkpointing.save(manager, 2, _state(2.0))
  assert not os.path.exists(partial)
  assert manager.all_steps() == [1, 2]
  state = checkpointing.restore_latest_good(manager, _state(0.0))
  np.testing.assert_array_equal(state['w'], np.full(64, 2.0, np.float32))


# ------------------------------------------------------------ metrics.jsonl


def _write_lines(workdir, text):
  with open(os.path.join(workdir, metric_files.METRICS_FILE), 'w') as f:
    f.write(text)


def test_torn_last_line_is_dropped_on_read_and_on_resume(tmp_path):
  workdir = str(tmp_path)
  good = [{'step': 2, 'train/loss': 1.5}, {'step': 4, 'train/loss': 1.25}]
  torn = json.dumps({'step': 6, 'validation/elbo': -90.0})[:13]
  _write_lines(workdir, ''.join(json.dumps(r) + '\n' for r in good) + torn)
  assert metric_files.read_metrics(workdir) == good
  writer = metric_files.MetricWriter(workdir, start_step=2, tensorboard=False)
  writer.write_scalars(4, {'train/loss': 9.0})
  writer.close()
  with open(os.path.join(workdir, metric_files.METRICS_FILE)) as f:
    assert f.read() == (json.dumps(good[0], sort_keys=True) + '\n' +
                        json.dumps({'step': 4, 'train/loss': 9.0}) + '\n')


def test_bad_line_in_the_middle_is_an_error_naming_it(tmp_path):
  _write_lines(str(tmp_path), '{"step": 2}\n{"step": \n{"step": 4}\n')
  with pytest.raises(atomic_files.DamagedFileError,
                     match=r'metrics.jsonl: line 2: not a JSON record'):
    metric_files.read_metrics(str(tmp_path))


def test_write_json_atomic_syncs_the_file_and_the_directory(tmp_path,
                                                           monkeypatch):
  synced = []
  real_fsync = os.fsync
  monkeypatch.setattr(os, 'fsync',
                      lambda fd: synced.append(os.path.realpath(
                          f'/proc/self/fd/{fd}')) or real_fsync(fd))
  path = str(tmp_path / 'results.json')
  atomic_files.write_json_atomic(path, {'elbo': -90.5, 'bad': float('nan')})
  assert atomic_files.read_json(path) == {'elbo': -90.5, 'bad': 'nan'}
  assert os.listdir(tmp_path) == ['results.json']
  # The file, written under a unique temporary name beside results.json, then
  # the directory that holds the rename.
  assert len(synced) == 2 and synced[1] == str(tmp_path)
  assert os.path.dirname(synced[0]) == str(tmp_path)
  assert os.path.basename(synced[0]).startswith('.results.json.')
  assert synced[0].endswith('.tmp')


@pytest.mark.xdist_group(reference_run.GROUP)
@pytest.mark.slow
def test_truncated_checkpoint_of_a_run_warns_once_without_tracebacks(
    tmp_path, whole_smoke_run):
  """A run whose latest checkpoint was truncated on disk: one warning line
  (orbax's late 'Event loop is closed' callbacks stay off stderr), the run
  resumes from the one before and ends as the undisturbed run; a rerun of
  the finished run says so in its short summary."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(whole_smoke_run, workdir)
  os.remove(os.path.join(workdir, 'results.json'))
  latest = os.path.join(workdir, checkpointing.LATEST_DIR, '10')
  size, path = _files(latest)[-1]
  with open(path, 'r+b') as f:
    f.truncate(size // 2)
  out = reference_run.run(workdir)
  assert out.returncode == 0, out.stderr[-3000:]
  text = out.stdout + out.stderr
  assert 'Traceback' not in text and 'Event loop is closed' not in text
  warnings = [line for line in text.splitlines() if 'warning' in line.lower()]
  assert len(warnings) == 1, warnings
  assert warnings[0].startswith(f'WARNING: checkpoint {latest} cannot be '
                                'restored (')
  assert os.path.isdir(latest + '.corrupt')
  assert 'resuming from the checkpoint of step 8' in out.stdout
  assert 'finished at step 10: R ' in out.stdout
  again = reference_run.run(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  lines = again.stdout.splitlines()
  assert lines[0].startswith('already finished at step 10: R ')
  assert lines[-1].startswith(
      f'results: {os.path.join(workdir, "results.json")} ')
  assert len(lines) <= 5


def _unretrieved_read_error(path):
  """An asyncio task that failed reading under `path`, collected with its
  exception never retrieved (as a damaged checkpoint's other reads end)."""

  async def read():
    raise ValueError(f'OUT_OF_RANGE: Error reading "x" in OCDBT database at '
                     f'local file "{path}/default/"')

  loop = asyncio.new_event_loop()
  task = loop.create_task(read())
  loop.run_until_complete(asyncio.sleep(0))
  loop.close()
  del task
  gc.collect()


def test_unretrieved_read_errors_of_a_set_aside_checkpoint_stay_off_stderr(
    tmp_path, caplog):
  """asyncio logs 'Task exception was never retrieved' with a traceback
  when a failed read's task is collected: dropped for a checkpoint that
  restore_latest_good set aside, kept for anything else."""
  checkpointing._drop_closed_loop_callbacks()  # pylint: disable=protected-access
  set_aside, other = str(tmp_path / 'checkpoints' / '10'), str(tmp_path / 'x')
  checkpointing._SET_ASIDE.add(set_aside)  # pylint: disable=protected-access
  with caplog.at_level(logging.ERROR, logger='asyncio'):
    _unretrieved_read_error(set_aside)
    assert not caplog.records
    _unretrieved_read_error(other)
  record, = caplog.records
  assert record.getMessage().startswith('Task exception was never retrieved')
  assert other in record.getMessage()
