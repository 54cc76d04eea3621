"""A multi-worker job started again after training ended in an earlier
launch: what each process does, so that none waits in a collective its
peers skip.

Training ends on every worker at the same step; then the chief writes
`training_done.json` (and later `metrics.json`) and, after a barrier, each
other worker writes its own `result.json`. A job killed in between and
started again with the same command used to hang or fail: a worker without
its result trained again, its collectives (the variable broadcast, the
gradient all-reduce) waiting for a chief that only evaluated or had exited.
Now every process first learns, in one all-reduce, whether training ended
anywhere (`ended_anywhere`); a worker without its result then writes it and
stops (`worker_result`), and the chief evaluates alone.
"""

import os

from training import backup as backup_lib
from training import rundir
from training import strategy as strategy_lib


def ended_anywhere(strategy, chief, state, own_dir):
  """True on every process when training of the run ended in an earlier
  launch on any of them: the chief's run `state` is 'trained' or
  'finished', or a worker has its result.json. A collective: every process
  calls it once, at start, before any other collective."""
  here = (state in ("trained", "finished") if chief
          else os.path.exists(rundir.result_path(own_dir)))
  ended = strategy_lib.any_worker(strategy, here)
  if chief and ended and not here:
    raise RuntimeError(
        f"a worker of this job reports that training ended (its "
        f"result.json), but the chief's {rundir.DONE_FILE} is missing from "
        f"its run directory: the directory was changed by hand. Start the "
        f"job again with a new --output_dir (or remove the workers' "
        f"workertemp_* directories to train again)")
  return ended


def worker_result(strategy, run_dir, own_dir):
  """A worker relaunched after training ended, without its result.json
  (killed before it wrote it): writes that result, with its backup's
  epoch, drops the backup and returns the result. It joins no collective."""
  last_epoch = backup_lib.saved_epoch(rundir.backup_dir(own_dir))
  task = strategy_lib.task(strategy)
  result = dict(last_epoch=last_epoch, training_ended_before_this_launch=True,
                worker=list(task))
  print(f"training of the run in {run_dir} ended in an earlier launch (the "
        f"chief holds its summary); worker {task} writes its result and "
        f"stops", flush=True)
  os.makedirs(own_dir, exist_ok=True)
  rundir.finish_worker(own_dir, result)
  return result
