"""Keras callbacks of the training application."""

import hashlib
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tfp_realnvp import atomic
from training import console
from training import figures
from training import strategy as strategy_lib


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
      write_json({"monitor": self.monitor, "best": float(self.best),
                  "epoch": epoch + 1}, self.state_path)
    if self.verbose > 0:
      print(f"\nEpoch {epoch + 1}: saved model to {filepath}")


def write_json(obj, path):
  """Atomic JSON write (temp file + rename)."""
  with atomic.atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")


def sha256_file(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _epochs_text(restored, lost):
  """What a fallback from the newest state to `restored` epochs loses."""
  if lost is None or lost <= restored:
    return "the epochs after that state are lost and"
  if lost == restored + 1:
    return f"epoch {lost} is lost and"
  return f"epochs {restored + 1} to {lost} are lost and"


class DamagedBackupError(Exception):
  """One backed-up training state cannot be used (the message names the
  file and why)."""


class ResumableBackup(keras.callbacks.BackupAndRestore):
  """`BackupAndRestore` whose state survives a crash at any instant, and
  whose damaged state is reported instead of crashing every rerun.

  - Files keep Keras' names (`latest.weights.h5`, `training_metadata.json`
    and their `.bkp` copies of the previous epoch) but every write is atomic
    (temp file + rename), and the metadata records the SHA-256 of the
    weights file it belongs to, so a pair that a crash left half-replaced is
    recognised.
  - `restore()` (called before `fit`, or by `on_train_begin`) loads the
    newest usable state: the latest, else the previous one; a damaged file
    (truncated, invalid JSON, not matching its partner) is named in a
    warning that says what is lost, renamed `<file>.damaged` so it is never
    copied over a good state, and when no state is usable training starts
    again from epoch 1 (with a warning) instead of failing.
  - The state is kept when training ends (`delete_checkpoint=False`): the
    run removes it once everything after training (evaluation, export) is
    done.
  """

  def __init__(self, backup_dir):
    super().__init__(backup_dir, double_checkpoint=True,
                     delete_checkpoint=False)
    self.restored_epoch = None  # set by restore()

  # --- saving ----------------------------------------------------------------

  def _save_model(self):
    os.makedirs(self.backup_dir, exist_ok=True)
    for src, dst in ((self._weights_path, self._prev_weights_path),
                     (self._training_metadata_path,
                      self._prev_training_metadata_path)):
      if os.path.exists(src):
        with atomic.atomic_path(dst) as tmp:
          shutil.copyfile(src, tmp)
    with atomic.atomic_path(self._weights_path, suffix=".weights.h5") as tmp:
      self.model.save_weights(tmp, overwrite=True)
      digest = sha256_file(tmp)
    write_json({"epoch": self._current_epoch, "batch": self._last_batch_seen,
                "weights_sha256": digest}, self._training_metadata_path)

  # --- restoring -------------------------------------------------------------

  def _read_state(self, weights_path, metadata_path):
    """The epoch of one (weights, metadata) pair; raises DamagedBackupError."""
    if not os.path.exists(metadata_path):
      raise DamagedBackupError(f"{metadata_path} is missing (the epoch of "
                               f"{weights_path} is unknown)")
    if not os.path.exists(weights_path):
      raise DamagedBackupError(f"{weights_path} is missing")
    try:
      with open(metadata_path, encoding="utf-8") as f:
        metadata = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
      raise DamagedBackupError(f"{metadata_path} cannot be read ({e})") from e
    except json.JSONDecodeError as e:
      raise DamagedBackupError(
          f"{metadata_path} is not valid JSON ({e.msg}: line {e.lineno} "
          f"column {e.colno}; truncated?)") from e
    epoch = metadata.get("epoch") if isinstance(metadata, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
      raise DamagedBackupError(f"{metadata_path} holds no epoch number "
                               f"(got {metadata!r})")
    expected = metadata.get("weights_sha256")
    if expected is not None and sha256_file(weights_path) != expected:
      raise DamagedBackupError(
          f"{weights_path} is not the file {metadata_path} was written for "
          f"(its SHA-256 differs: damaged, or the process died between "
          f"writing the two)")
    return epoch

  def _load_weights(self, weights_path):
    if (self.model.optimizer is not None and
        not self.model.optimizer.built):
      self.model.optimizer.build(self.model.trainable_variables)
    try:
      self.model.load_weights(weights_path)
    except (OSError, KeyError, ValueError) as e:
      reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
      raise DamagedBackupError(
          f"{weights_path} is not a readable Keras weights file "
          f"({type(e).__name__}: {reason})") from e

  def _set_aside(self, *paths):
    for path in paths:
      if os.path.exists(path):
        os.replace(path, path + ".damaged")

  def restore(self, model=None):
    """Loads the newest usable backed-up state into the model; returns the
    number of epochs it had finished (0 when there is none)."""
    if model is not None:
      self.set_model(model)
    if self.restored_epoch is not None:
      return self.restored_epoch
    candidates = [("latest", self._weights_path,
                   self._training_metadata_path),
                  ("previous", self._prev_weights_path,
                   self._prev_training_metadata_path)]
    problems, lost = [], None
    variables = list(self.model.variables)
    if self.model.optimizer is not None:
      if not self.model.optimizer.built:
        self.model.optimizer.build(self.model.trainable_variables)
      variables += list(self.model.optimizer.variables)
    snapshot = None
    for label, weights_path, metadata_path in candidates:
      if not (os.path.exists(weights_path) or os.path.exists(metadata_path)):
        continue
      try:
        epoch = self._read_state(weights_path, metadata_path)
        if label == "previous":
          # Keras loads only files named *.weights.h5: the previous state
          # becomes the latest one (whose damaged files are set aside).
          for src, dst in ((weights_path, self._weights_path),
                           (metadata_path, self._training_metadata_path)):
            with atomic.atomic_path(dst) as tmp:
              shutil.copyfile(src, tmp)
        if snapshot is None:
          snapshot = [v.numpy() for v in variables]
        self._load_weights(self._weights_path)
      except DamagedBackupError as e:
        problems.append(str(e))
        if label == "latest":
          lost = self._epoch_or_none(metadata_path)
        else:  # drop the copies made above (the originals are set aside)
          for copy in (self._weights_path, self._training_metadata_path):
            if os.path.exists(copy):
              os.remove(copy)
        self._set_aside(weights_path, metadata_path)
        continue
      if problems:
        console.warn(f"{'; '.join(problems)}. Resuming from the previous "
                     f"backup instead ({weights_path}, after epoch {epoch}): "
                     f"{_epochs_text(epoch, lost)} trained again.")
      self.restored_epoch = epoch
      self.model._initial_epoch = epoch  # pylint: disable=protected-access
      return epoch
    if snapshot is not None:  # a failed load may have assigned some values
      for v, value in zip(variables, snapshot):
        v.assign(value)
    if problems:
      console.warn(f"{'; '.join(problems)}. No usable backup is left in "
                   f"{self.backup_dir}: training starts again from epoch 1 "
                   f"({_epochs_text(0, lost)} trained again; "
                   f"checkpoints/best.keras and its best value are kept).")
    self.restored_epoch = 0
    return 0

  @staticmethod
  def _epoch_or_none(metadata_path):
    try:
      with open(metadata_path, encoding="utf-8") as f:
        epoch = json.load(f).get("epoch")
      return epoch if isinstance(epoch, int) else None
    except (OSError, ValueError, AttributeError):
      return None

  def on_train_begin(self, logs=None):
    self.restore()


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
