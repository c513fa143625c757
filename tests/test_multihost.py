"""Two processes on one machine train like one process with the same batch.

`python train.py` twice, joined by jax.distributed (a local coordinator, gloo
CPU collectives, 2 CPU devices each: 4 global devices). Each process reads its
own half of the training split. The reference runs here in one process on 2
devices, with each global batch made of the two hosts' batches in process
order (the mesh's device order), through the library's train step; with
synchronised BatchNorm and the global-mean loss the parameters must agree.
"""

import glob
import json
import os

import numpy as np
import pytest

import faults_helpers as helpers

NUM_STEPS = 3


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory):
  shared = helpers.shared_dir(tmp_path_factory)
  data_dir = os.path.join(shared, 'tfds')
  helpers.prepare_data(data_dir)
  env = helpers.subprocess_env(os.path.join(shared, 'jax_cache'))
  base = tmp_path_factory.mktemp('multihost')
  workdir = str(base / 'run')
  port = helpers.free_port()
  procs, logs = [], []
  for i in range(2):
    logs.append(str(base / f'process{i}.log'))
    procs.append(helpers.start(helpers.train_command(
        workdir, data_dir, f'--config.num_train_steps={NUM_STEPS}',
        f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
        f'--process_id={i}'), logs[i], env))
  results = [helpers.finish(p, log, timeout=400) for p, log in zip(procs, logs)]
  return {'workdir': workdir, 'results': results, 'data_dir': data_dir}


def test_two_processes_equal_one_process_with_the_same_global_batch(
    two_process_run):
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  for i, (rc, log) in enumerate(two_process_run['results']):
    assert rc == 0, f'process {i}:\n{log[-4000:]}'
    assert f'Process {i} of 2' in log and '2 local, 4 global devices' in log
    assert 'on 4 devices (2 hosts), global batch 4' in log
  config = helpers.load_config(two_process_run['data_dir'])

  def global_batches():
    hosts = [pipeline.create_train_iterator(
        config.data, config.batch_size, seed=config.seed, process_index=i,
        process_count=2) for i in range(2)]
    while True:
      parts = [next(h) for h in hosts]
      yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  reference = helpers.reference_states(config, global_batches(), NUM_STEPS)
  step, state = helpers.restore(config, two_process_run['workdir'])
  assert step == NUM_STEPS
  helpers.assert_states_close(state, reference[-1])
  helpers.assert_params_differ(state, reference[0])


def test_only_process_zero_writes(two_process_run):
  workdir = two_process_run['workdir']
  assert len(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))) == 1
  with open(os.path.join(workdir, 'metrics.json')) as f:
    assert json.load(f)['step'] == NUM_STEPS
  # Both processes wrote their shards of each checkpoint.
  last = os.path.join(workdir, 'checkpoints', str(NUM_STEPS), 'default')
  assert {'ocdbt.process_0', 'ocdbt.process_1'} <= set(os.listdir(last))
  leftovers = [f for f in os.listdir(workdir) if f.endswith('.tmp')]
  assert not leftovers
