"""realnvp-train's time budget (issue 29): the callbacks that hold `fit` to
`max_train_minutes` and feed a learning rate keyed to it, that schedule's
summary in metrics.json (`lr_schedule`), and the wall time of each phase of
a run and of the process (`phase_seconds`, `process_seconds`). Moved from
`training/train.py`."""

import os
import time

from training import callbacks as callbacks_lib


def process_seconds():
  """Seconds since this process started (the user's wait, interpreter and
  imports included, when realnvp-train is its own process); None where
  /proc is not there."""
  try:
    with open("/proc/self/stat", encoding="ascii") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    with open("/proc/uptime", encoding="ascii") as f:
      uptime = float(f.read().split()[0])
    return round(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 3)
  except (OSError, ValueError, IndexError):
    return None


class Phases:
  """Wall time of each phase of `training.train.run` (`phase_seconds` in
  metrics.json): setup, fit, score_reference, evaluation, iw_evaluation,
  figures, export and total (from `run`'s start to the metrics)."""

  def __init__(self):
    self.started = self._last = time.perf_counter()
    self.seconds = {}

  def end(self, name):
    now = time.perf_counter()
    self.seconds[name] = round(now - self._last, 3)
    self._last = now


def budget_callbacks(config, schedule=None):
  """The callbacks of `fit` that the time budget adds: `TimeBudget` with
  `max_train_minutes`, then a time-keyed `schedule`'s `BudgetProgress`.
  Returns `(callbacks, progress)`, `progress` None without a schedule."""
  cbs = []
  if config["max_train_minutes"]:
    # All workers stop at the same epoch (the decision is all-reduced).
    cbs.append(callbacks_lib.TimeBudget(config["max_train_minutes"]))
  progress = None
  if schedule is not None:
    # Before every step: the fraction of the budget elapsed (validated:
    # a time-keyed schedule needs max_train_minutes).
    progress = callbacks_lib.BudgetProgress(schedule,
                                            config["max_train_minutes"])
    cbs.append(progress)
  return cbs, progress


def schedule_summary(progress):
  """The training summary's `lr_schedule` (metrics.json) from the
  `BudgetProgress` that fed the schedule."""
  # The budget's elapsed fraction when fit ended (1 when the budget
  # stopped it), and what the last step used.
  return {
      "keyed_to": "time budget",
      "final_progress": progress.final_progress,
      "last_step_progress": progress.progress,
      "last_step_learning_rate": progress.learning_rate}
