"""Keras callbacks of the training application."""

import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfp_realnvp import atomic
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


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
  """`keras.callbacks.ModelCheckpoint` that never leaves a half-written file.

  The model is written to a temporary file in the same directory and renamed
  over the target (`os.replace` is atomic on POSIX), so a crash during a save
  keeps the previous best checkpoint.
  """

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
        image = figures.sample_grid(self.model, self.num_samples, t,
                                    seed=(self.seed, epoch))
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
    self._last = None

  def on_epoch_begin(self, epoch, logs=None):
    self._last = None

  def on_train_batch_end(self, batch, logs=None):
    now = time.perf_counter()
    if self._last is not None:
      self.rates.append(self.batch_size / (now - self._last))
    self._last = now

  @property
  def images_per_second(self):
    return float(np.median(self.rates)) if self.rates else float("nan")


class TimeBudget(keras.callbacks.Callback):
  """Stops training at the end of the first epoch past `minutes` of fit."""

  def __init__(self, minutes):
    super().__init__()
    self.seconds = 60.0 * minutes
    self._start = None
    self.stopped_epoch = None

  def on_train_begin(self, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    over = time.perf_counter() - self._start >= self.seconds
    # Under MultiWorkerMirroredStrategy clocks differ: stop everywhere if
    # any worker is over budget (all-reduced), or the others would hang.
    if strategy_lib.any_worker(self.model.distribute_strategy, over):
      self.stopped_epoch = epoch
      self.model.stop_training = True
