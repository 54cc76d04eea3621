"""Fit (a phase of `training.train.run`): `model.fit` from the restored
epoch with the run's callbacks, and the training summary it returns.
Moved from `training/train.py`."""

import os
import time

import keras

from tfp_realnvp import digests
from training import budget as budget_lib
from training import callbacks as callbacks_lib
from training import rundir


def weights_sha256(model):
  """`digests.weights_sha256` of all the model's weights (the replicas of a
  run must agree bit-wise)."""
  return digests.weights_sha256(model.weights)


def fit(model, config, datasets, run_dir, chief, backup, restored,
        extra_callbacks, verbose, schedule=None):
  """`model.fit` from the `restored` epoch; returns the training summary.
  `schedule`: a time-keyed learning rate (`BudgetSchedule`) to feed."""
  batch = config["batch_size"]
  if datasets.train_size:
    batch = min(batch, datasets.train_size)  # one partial batch per epoch
  throughput = callbacks_lib.Throughput(batch)
  cbs, checkpoint, progress = _callbacks(config, run_dir, chief, backup,
                                         restored, throughput, schedule)
  cbs += extra_callbacks
  if restored >= config["epochs"]:
    print(f"the run has already trained {restored} epochs (--epochs "
          f"{config['epochs']}); no more training", flush=True)
  # With a fixed number of steps per epoch the stream must not run dry.
  train = (datasets.train.repeat() if config["steps_per_epoch"]
           else datasets.train)
  fit_started = time.perf_counter()
  history = model.fit(
      train, score_statistics=False,  # done for the best model at the end
      epochs=config["epochs"], initial_epoch=restored,
      steps_per_epoch=config["steps_per_epoch"] or None,
      validation_data=datasets.validation,
      validation_steps=config["validation_steps"] or None,
      callbacks=cbs, verbose=verbose if chief else 0)
  train_seconds = time.perf_counter() - fit_started
  best = None if checkpoint is None or checkpoint.best is None else float(
      checkpoint.best)
  summary = {
      "last_epoch": (history.epoch[-1] + 1) if history.epoch else restored,
      "epochs_run_in_this_process": len(history.epoch),
      "best_" + rundir.monitor_of(config): best,
      "train_images_per_second": throughput.images_per_second,
      "train_seconds": train_seconds,
      "train_steps": throughput.steps,
      "final_weights_sha256": weights_sha256(model),
  }
  if progress is not None:
    summary["lr_schedule"] = budget_lib.schedule_summary(progress)
  return summary


def _callbacks(config, run_dir, chief, backup, restored, throughput,
               schedule):
  """The run's own callbacks of `fit`, in order; returns `(callbacks,
  checkpoint, progress)`: the best checkpoint (the chief's; else None) and
  the time-keyed schedule's `BudgetProgress` (or None)."""
  log_dir = os.path.join(run_dir, "logs")
  cbs = [callbacks_lib.NonFiniteLossGuard(), callbacks_lib.EmptyEpochGuard(),
         throughput]
  checkpoint = None
  if chief:  # only the chief writes the shared artifacts
    rundir.trim_training_log(run_dir, restored)
    checkpoint = callbacks_lib.AtomicModelCheckpoint(
        os.path.join(run_dir, rundir.BEST_MODEL),
        state_path=os.path.join(run_dir, rundir.BEST_STATE),
        monitor=rundir.monitor_of(config), mode="min", save_best_only=True,
        initial_value_threshold=rundir.best_so_far(
            run_dir, rundir.monitor_of(config)))
    cbs += [
        checkpoint,
        keras.callbacks.CSVLogger(os.path.join(run_dir, rundir.LOG_FILE),
                                  append=True),
        keras.callbacks.TensorBoard(log_dir=log_dir),
        callbacks_lib.SampleImages(log_dir, config["num_samples"],
                                   config["temperatures"], config["seed"]),
    ]
  # The backup comes after the best checkpoint and the log: a crash between
  # them makes the rerun train that epoch again (its log row is replaced)
  # instead of losing a best model or a log row.
  cbs.append(backup)
  budget_cbs, progress = budget_lib.budget_callbacks(config, schedule)
  return cbs + budget_cbs, checkpoint, progress
