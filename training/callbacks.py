"""Keras callbacks of the training application."""

import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfp_realnvp import atomic
from training import backup
from training import figures
from training import rundir
from training import strategy as strategy_lib


# Moved to training/backup.py; still importable here.
ResumableBackup = backup.ResumableBackup
DamagedBackupError = backup.DamagedBackupError


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss."""


class NonFiniteLossGuard(keras.callbacks.Callback):
  """Stops training at the first non-finite loss, before anything is saved.

  Raising from `on_train_batch_end` ends `fit` before `on_epoch_end`, so
  neither `BackupAndRestore` nor `ModelCheckpoint` ever writes the broken
  weights: the last good checkpoint stays intact.
  """

  def __init__(self):
    super().__init__()
    self._epoch = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      raise NonFiniteLossError(
          f"training loss became {float(loss)} at epoch {self._epoch + 1}, "
          f"batch {batch + 1}; stopped before saving anything. The last good "
          f"checkpoint is unchanged. Lower --learning_rate or --clipnorm, or "
          f"check the data for values outside [0, 256).")


class EmptyEpochGuard(keras.callbacks.Callback):
  """Stops `fit` when an epoch ends without a single training step (a
  training split that yields no batch), before anything is saved: the run
  would otherwise "finish" and report an untrained model."""

  def __init__(self):
    super().__init__()
    self._steps = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._steps = 0

  def on_train_batch_end(self, batch, logs=None):
    self._steps += 1

  def on_epoch_end(self, epoch, logs=None):
    if self._steps == 0:
      raise ValueError(
          f"epoch {epoch + 1} ran no training step: the training split "
          f"yields no batch (is it empty, or smaller than --batch_size?)")


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
  """`keras.callbacks.ModelCheckpoint` that never leaves a half-written file
  and remembers its best value across processes.

  The model is written to a temporary file in the same directory and renamed
  over the target (`os.replace` is atomic on POSIX), so a crash during a save
  keeps the previous best checkpoint. With `state_path`, every save also
  writes `{"monitor", "best", "epoch"}` there (atomically, after the model);
  a resumed run passes that value as `initial_value_threshold`, so its first
  epoch never replaces the best model with a worse one.
  """

  def __init__(self, filepath, state_path=None, **kwargs):
    super().__init__(filepath, **kwargs)
    self.state_path = state_path

  def _save_model(self, epoch, batch, logs):
    filepath = self._get_file_path(epoch, batch, logs)
    if not self._should_save_model(epoch, batch, logs, filepath):
      return
    suffix = ".weights.h5" if self.save_weights_only else ".keras"
    with atomic.atomic_path(filepath, suffix=suffix) as tmp:
      if self.save_weights_only:
        self.model.save_weights(tmp, overwrite=True)
      else:
        self.model.save(tmp, overwrite=True)
    if self.state_path and self.best is not None:
      rundir.write_json({"monitor": self.monitor, "best": float(self.best),
                  "epoch": epoch + 1}, self.state_path)
    if self.verbose > 0:
      print(f"\nEpoch {epoch + 1}: saved model to {filepath}")


class SampleImages(keras.callbacks.Callback):
  """Writes sample grids to TensorBoard at the end of every epoch."""

  def __init__(self, log_dir, num_samples=64, temperatures=(1.0, 0.7),
               seed=0):
    super().__init__()
    self.log_dir = log_dir
    self.num_samples = num_samples
    self.temperatures = tuple(temperatures)
    self.seed = seed
    self._writer = None

  def on_epoch_end(self, epoch, logs=None):
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(
          os.path.join(self.log_dir, "samples"))
    with self._writer.as_default(step=epoch + 1):
      for t in self.temperatures:
        image = figures.captioned(
            figures.sample_grid(self.model, self.num_samples, t,
                                seed=(self.seed, epoch)),
            figures.temperature_caption(t))
        tf.summary.image(f"samples/temperature_{t:g}", image[None],
                         max_outputs=1)
    self._writer.flush()

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.close()
      self._writer = None


class Throughput(keras.callbacks.Callback):
  """Training images per second, excluding each fit's first (tracing) step."""

  def __init__(self, batch_size):
    super().__init__()
    self.batch_size = batch_size
    self.rates = []
    self.steps = 0  # training steps run by this fit
    self._last = None

  def on_epoch_begin(self, epoch, logs=None):
    self._last = None

  def on_train_batch_end(self, batch, logs=None):
    now = time.perf_counter()
    self.steps += 1
    if self._last is not None:
      self.rates.append(self.batch_size / (now - self._last))
    self._last = now

  @property
  def images_per_second(self):
    return float(np.median(self.rates)) if self.rates else float("nan")


class TimeBudget(keras.callbacks.Callback):
  """Stops `fit` after the training step that reaches `minutes` of wall time.

  The clock starts when `fit` starts (`on_train_begin`, so tracing counts:
  it is the user's time). In one process the budget is checked after every
  step: training stops within one step of it (the step that was running
  finishes; the epoch's validation, checkpoint and backup still run, and an
  epoch cut short counts as done when the run is resumed).

  Under `MultiWorkerMirroredStrategy` clocks differ and all workers must
  stop at the same step, so the decision is all-reduced (any worker over
  budget stops all), a collective every `sync_every` steps and at every
  epoch end: training stops within `sync_every` steps of the budget.

  Args:
    minutes: the budget (> 0).
    sync_every: steps between the all-reduced decisions of several workers
      (a scalar all-reduce costs a network round trip; unused with one).
  """

  def __init__(self, minutes, sync_every=10):
    super().__init__()
    if not minutes > 0:
      raise ValueError(f"minutes must be > 0, got {minutes!r}")
    if sync_every < 1:
      raise ValueError(f"sync_every must be >= 1, got {sync_every!r}")
    self.seconds = 60.0 * minutes
    self.sync_every = int(sync_every)
    self._start = None
    self._steps = 0
    self._epoch = 0
    self.stopped_epoch = None
    self.stopped_step = None

  def on_train_begin(self, logs=None):
    self._start = time.perf_counter()
    self._steps = 0

  def _over(self):
    return time.perf_counter() - self._start >= self.seconds

  def _stop(self, epoch):
    self.stopped_epoch = epoch
    self.stopped_step = self._steps
    self.model.stop_training = True

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    self._steps += 1
    strategy = self.model.distribute_strategy
    if strategy_lib.num_workers(strategy) == 1:
      if self._over():
        self._stop(self._epoch)
    elif self._steps % self.sync_every == 0:
      if strategy_lib.any_worker(strategy, self._over()):
        self._stop(self._epoch)

  def on_epoch_end(self, epoch, logs=None):
    if self.model.stop_training:
      return
    # Every worker reaches the epoch end at the same step: a collective here
    # is safe, and it catches an epoch shorter than `sync_every` steps.
    if strategy_lib.any_worker(self.model.distribute_strategy, self._over()):
      self._stop(epoch)


class BudgetProgress(keras.callbacks.Callback):
  """Feeds a time-keyed learning rate: before every training step, sets
  `schedule.progress` (a `tfp_realnvp.schedules.BudgetSchedule`) to the
  fraction of the budget elapsed, `min(1, seconds since fit began /
  (60 · minutes))`, on the clock `TimeBudget` stops by (tracing counts: it
  is the user's time), so the rate reaches its end value when the budget
  runs out, whatever the machine's step rate.

  The assignment happens in cross-replica context (callbacks run there),
  which writes every local replica's copy of the mirrored variable. Under
  several workers the clocks differ and every worker must use the same
  rate, so the progress is the maximum over the workers (all-reduced every
  `sync_every` steps and held in between: a staircase of `sync_every`
  steps). Each `fit` (so a resumed run) starts its own budget, as
  `TimeBudget` does.

  After training, `progress` and `learning_rate` are the values the last
  step used (`None` before any step) and `final_progress` the fraction of
  the budget elapsed when `fit` ended (1 when the budget stopped it).
  """

  def __init__(self, schedule, minutes, sync_every=10):
    super().__init__()
    if not minutes > 0:
      raise ValueError(f"minutes must be > 0, got {minutes!r}")
    if sync_every < 1:
      raise ValueError(f"sync_every must be >= 1, got {sync_every!r}")
    self.schedule = schedule
    self.seconds = 60.0 * minutes
    self.sync_every = int(sync_every)
    self.progress = None
    self.final_progress = None
    self._start = None
    self._steps = 0

  def on_train_begin(self, logs=None):
    self._start = time.perf_counter()
    self._steps = 0
    self.progress = self.final_progress = None

  def on_train_end(self, logs=None):
    self.final_progress = self._elapsed_fraction()

  def _elapsed_fraction(self):
    return min(1.0, (time.perf_counter() - self._start) / self.seconds)

  def on_train_batch_begin(self, batch, logs=None):
    strategy = self.model.distribute_strategy
    if strategy_lib.num_workers(strategy) == 1:
      progress = self._elapsed_fraction()
    elif self._steps % self.sync_every == 0:
      progress = strategy_lib.max_over_workers(strategy,
                                               self._elapsed_fraction())
    else:
      progress = self.progress
    self._steps += 1
    if progress != self.progress:
      self.schedule.progress.assign(progress)
      self.progress = progress

  @property
  def learning_rate(self):
    """The rate of the last step (`None` before any)."""
    if self.progress is None:
      return None
    return float(self.schedule.value_at(self.progress))
