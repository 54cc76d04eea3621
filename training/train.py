"""`realnvp-train`: train a Real NVP model with tf.data and Keras `fit`.

    realnvp-train                          # the embedded `digits` default
    realnvp-train --config mnist --data_dir ../shared/data/tfds --no_download
    realnvp-train --config cifar10 --batch_size 32 --epochs 5
    python -m training.train --help        # every config key is a flag

A run directory (`runs/<config>-<timestamp>/` or `--output_dir`) receives:

    config.json          the full configuration of the run
    backup/              training state after the last finished epoch
                         (removed when the run is done)
    training_done.json   written when training ends, removed when the run
                         is done (evaluation and export still to do)
    checkpoints/best.keras   best validation bits/dim (written atomically)
    checkpoints/best.score_reference.json   its typicality reference (the
                         bits/dim statistics of the training split that
                         `score` and the export use; applied on loading)
    checkpoints/best.json    that best value (carried across restarts)
    (and saved_models/<config>/<version>/, the TF Serving export, by default)
    logs/                TensorBoard scalars and per-epoch sample grids
    training_log.csv     one row per epoch
    samples.png          grids at each temperature (default 1.0 and 0.7),
                         each captioned with its temperature
    interpolation.png    the paper's eq. 19 manifold through four test images
    metrics.json         test bits/dim, epochs, images/s, train_seconds (the
                         wall time of fit in the process that trained last),
                         wall time, config

Rerunning the same command after a crash resumes the unfinished run where it
stopped (the newest `runs/<config>-*` that still has a `backup/`, or the
given `--output_dir`), losing at most the epoch that was running. The
config must be the one the run was started with, except the keys that only
change how long it trains or what is reported at the end: epochs (extends or
shortens the run), max_train_minutes, test_steps, num_samples, temperatures,
interpolation_steps, export, export_dir and jit_compile. Any other change is
refused with the list of differing keys; `--fresh` starts a new run instead.
If evaluation or export fails after training (e.g. an unwritable
--export_dir), the trained state is kept and the rerun only evaluates and
exports. A finished run (metrics.json) is never trained again: rerunning its
command does nothing.
"""

import argparse
import csv
import glob
import hashlib
import json
import math
import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import tfp_realnvp
from tfp_realnvp import atomic
from training import callbacks as callbacks_lib
from training import checkpoints
from training import configs
from training import console
from training import data
from training import evaluate as evaluate_cli
from training import export as export_cli
from training import figures
from training import strategy as strategy_lib

DONE_FILE = "training_done.json"
LOG_FILE = "training_log.csv"
BEST_MODEL = os.path.join("checkpoints", "best.keras")
BEST_STATE = os.path.join("checkpoints", "best.json")
MONITOR = "val_bits_per_dim"  # a variational dequantizer's: val_variational_...


def monitor_of(config):
  """The validation figure that picks the best checkpoint: `val_` + the
  model's `bits_per_dim_name` (a variational dequantizer reports its bound
  as variational_bits_per_dim)."""
  from tfp_realnvp import dequantization  # pylint: disable=import-outside-toplevel
  name = config.get("dequantizer", "none")
  if name in dequantization.DEQUANTIZERS:
    return "val_" + dequantization.DEQUANTIZERS[name].metric_name
  return MONITOR


class ExportError(RuntimeError):
  """Training finished but the TF Serving export failed (nothing is lost)."""


write_json = callbacks_lib.write_json


def read_json(path, what="file"):
  """Parsed JSON of `path`; a ValueError naming the file if it is not."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{what} {path} is not valid JSON ({e.msg}: line "
                     f"{e.lineno} column {e.colno}); it is damaged "
                     f"(truncated?)") from None


def resolve_run_dir(config_name, output_dir=None, fresh=False, root="runs"):
  """The run directory: given, an unfinished one to resume, or a new one."""
  if output_dir:
    return output_dir, os.path.isdir(os.path.join(output_dir, "backup"))
  if not fresh:
    unfinished = sorted(
        d for d in glob.glob(os.path.join(root, f"{config_name}-*"))
        if os.path.isdir(os.path.join(d, "backup")) and
        not os.path.exists(os.path.join(d, "metrics.json")))
    if unfinished:
      return unfinished[-1], True
  base = os.path.join(root, f"{config_name}-{time.strftime('%Y%m%d-%H%M%S')}")
  path, n = base, 1
  while os.path.exists(path):  # two runs started in the same second
    n += 1
    path = f"{base}-{n}"
  return path, False


# --- what a run directory holds ---------------------------------------------


def run_state(run_dir):
  """'finished' (metrics.json), 'trained' (training ended; evaluation or
  export did not), 'resumable' (a backup/), or 'new'."""
  if os.path.exists(os.path.join(run_dir, "metrics.json")):
    return "finished"
  if os.path.exists(os.path.join(run_dir, DONE_FILE)):
    return "trained"
  if os.path.isdir(os.path.join(run_dir, "backup")):
    return "resumable"
  return "new"


def _normalized(value):
  return [_normalized(v) for v in value] if isinstance(
      value, (list, tuple)) else value


def config_differences(saved, config, ignore=()):
  """`["key old -> new", ...]` for the keys of `config` that differ from
  the `saved` config.json (keys it lacks take their defaults)."""
  keys = sorted((set(configs.FIELDS) | {"config_name", "num_classes"}) -
                set(ignore))
  out = []
  for key in keys:
    default = configs.FIELDS[key][0] if key in configs.FIELDS else None
    old = _normalized(saved.get(key, default))
    new = _normalized(config.get(key, default))
    if old != new:
      out.append(f"{key} {json.dumps(old)} -> {json.dumps(new)}")
  return out


def check_run_dir(run_dir, config, fresh=False, explicit=False):
  """Returns `run_state(run_dir)` if `config` may (re)enter it; raises a
  ValueError naming the differing keys (or the leftover files) otherwise."""
  state = run_state(run_dir)
  if state == "new":
    # (A run killed in its first epoch leaves an empty log: not a leftover.)
    leftovers = ([BEST_MODEL] if os.path.exists(os.path.join(
        run_dir, BEST_MODEL)) else []) + ([LOG_FILE] if _read_log(run_dir)[1]
                                          else [])
    if leftovers:
      raise ValueError(
          f"{run_dir} holds {' and '.join(leftovers)} of an earlier run but "
          f"no backup/ to resume it from and no metrics.json; refusing to "
          f"overwrite them. Choose another --output_dir (realnvp-evaluate "
          f"and realnvp-export work on this one as it is)")
    return state
  if fresh:
    raise ValueError(f"--fresh: {run_dir} already holds a run ({state}); "
                     f"choose another --output_dir (nothing is deleted)")
  config_path = os.path.join(run_dir, "config.json")
  if not os.path.exists(config_path):
    console.warn(f"{config_path} is missing: cannot check that the run in "
                 f"{run_dir} was started with this config")
    return state
  saved = read_json(config_path, "the run's config")
  if state == "finished":
    diffs = config_differences(saved, config)
    if diffs:
      raise ValueError(
          f"{run_dir} holds a finished run (metrics.json) started with a "
          f"different config: {', '.join(diffs)}. A finished run is not "
          f"trained again: choose another --output_dir (realnvp-evaluate "
          f"and realnvp-export work on the finished run)")
    return state
  diffs = config_differences(saved, config, configs.MAY_CHANGE_ON_RESUME)
  if diffs:
    how = ("choose another --output_dir" if explicit else
           "pass --fresh to start a new run")
    raise ValueError(
        f"the unfinished run in {run_dir} was started with a different "
        f"config: {', '.join(diffs)}. Rerun with the original values to "
        f"resume it, or {how} (only "
        f"{', '.join(configs.MAY_CHANGE_ON_RESUME)} may change on resume)")
  return state


def best_so_far(run_dir, monitor=MONITOR):
  """The validation bits/dim of `checkpoints/best.keras`, or None.

  From `checkpoints/best.json`, else (runs from before it existed) the best
  `monitor` column (`val_bits_per_dim`) of training_log.csv.
  """
  if not os.path.exists(os.path.join(run_dir, BEST_MODEL)):
    return None
  state_path = os.path.join(run_dir, BEST_STATE)
  if os.path.exists(state_path):
    try:
      value = float(read_json(state_path)["best"])
      if math.isfinite(value):
        return value
      raise ValueError(f"best is {value}")
    except (ValueError, KeyError, TypeError) as e:
      console.warn(f"{state_path} is unreadable ({e}); taking the best "
                   f"validation figure from {LOG_FILE} instead")
  values = []
  for row in _read_log(run_dir)[1]:
    try:
      values.append(float(row[monitor]))
    except (KeyError, TypeError, ValueError):
      pass
  values = [v for v in values if math.isfinite(v)]
  if values:
    return min(values)
  console.warn(f"the validation bits/dim of {os.path.join(run_dir, BEST_MODEL)}"
               f" is unknown (no {BEST_STATE}, no {LOG_FILE} rows); the next "
               f"epoch's model replaces it")
  return None


def _read_log(run_dir):
  path = os.path.join(run_dir, LOG_FILE)
  if not os.path.exists(path):
    return None, []
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


def trim_training_log(run_dir, epochs_done):
  """Keeps the training_log.csv rows of the `epochs_done` epochs the
  restored state contains. Rows of later epochs (trained by a process whose
  state was not saved or was damaged; they are trained again) and broken
  rows move to training_log.discarded.csv, with a warning."""
  header, rows = _read_log(run_dir)
  if not header or "epoch" not in header:
    return
  keep, drop = [], []
  for row in rows:
    try:
      ok = None not in row.values() and int(row["epoch"]) < epochs_done
    except (TypeError, ValueError):
      ok = False
    (keep if ok else drop).append(row)
  if not drop:
    return
  discarded = os.path.join(run_dir, "training_log.discarded.csv")
  new_file = not os.path.exists(discarded)
  with open(discarded, "a", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, header, extrasaction="ignore")
    if new_file:
      writer.writeheader()
    writer.writerows({k: v for k, v in r.items() if k is not None}
                     for r in drop)
  path = os.path.join(run_dir, LOG_FILE)
  with atomic.atomic_path(path) as tmp:
    with open(tmp, "w", newline="", encoding="utf-8") as f:
      writer = csv.DictWriter(f, header)
      writer.writeheader()
      writer.writerows(keep)
  numbers = []
  for row in drop:
    try:
      numbers.append(str(int(row["epoch"]) + 1))
    except (TypeError, ValueError):
      numbers.append("(broken row)")
  console.warn(f"{path}: the rows of epoch(s) {', '.join(numbers)} describe "
               f"training that the restored state (after epoch "
               f"{epochs_done}) does not contain; moved them to {discarded} "
               f"(those epochs are trained again)")


def weights_sha256(model):
  """SHA-256 of all weights' float32 bytes (replicas must agree bit-wise)."""
  digest = hashlib.sha256()
  for w in model.get_weights():
    digest.update(np.ascontiguousarray(w, np.float32).tobytes())
  return digest.hexdigest()


def build_model(config, image_shape, num_classes):
  """The `RealNVP` a config describes (library call only)."""
  return tfp_realnvp.RealNVP(
      image_shape=image_shape, num_scales=config["num_scales"],
      num_res_blocks=config["num_res_blocks"],
      num_filters=config["num_filters"], coupling=config["coupling"],
      use_batch_norm=config["use_batch_norm"],
      num_classes=num_classes if config["conditional"] else None,
      alpha=config["alpha"], bn_momentum=config["bn_momentum"],
      log_scale_init=config["log_scale_init"], l2_reg=config["l2_reg"],
      synchronized_batch_norm=config["synchronized_batch_norm"],
      mixed_precision=(None if config["mixed_precision"] == "none"
                       else config["mixed_precision"]),
      checkerboard=config["checkerboard"],
      dequantizer=(None if config["dequantizer"] == "none"
                   else config["dequantizer"]),
      ema_decay=config["ema_decay"] or None, bn_lag=config["bn_lag"],
      prior=config["prior"], made_hidden_units=config["made_hidden_units"],
      actnorm=config["actnorm"], permutation=config["permutation"])


def learning_rate(config):
  """The config's learning rate: a number, or a Keras schedule (decay, then
  `tfp_realnvp.schedules.Warmup` in front when `warmup_steps` > 0)."""
  lr = config["learning_rate"]
  decay = config["lr_decay"]
  if decay == "cosine":
    lr = keras.optimizers.schedules.CosineDecay(
        lr, config["decay_steps"], alpha=config["lr_decay_rate"])
  elif decay == "exponential":
    lr = keras.optimizers.schedules.ExponentialDecay(
        lr, config["decay_steps"], config["lr_decay_rate"])
  elif decay != "none":
    raise ValueError(f"lr_decay must be one of {configs.LR_DECAYS}, got "
                     f"{decay!r}")
  if config["warmup_steps"]:
    lr = tfp_realnvp.schedules.Warmup(lr, config["warmup_steps"])
  return lr


def build_optimizer(config):
  """The config's optimizer (Adam or Adamax, its schedule, Keras' global
  gradient-norm clipping)."""
  classes = {"adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}
  if config["optimizer"] not in classes:
    raise ValueError(f"optimizer must be one of {sorted(classes)}, got "
                     f"{config['optimizer']!r}")
  return classes[config["optimizer"]](
      learning_rate(config), global_clipnorm=config["clipnorm"] or None)


def jit_compile_setting(text):
  """The `compile(jit_compile=...)` value of the `jit_compile` config."""
  values = {"auto": "auto", "true": True, "false": False}
  if str(text).lower() not in values:
    raise ValueError(f"jit_compile must be auto, true or false, got {text!r}")
  return values[str(text).lower()]


def load_datasets(config, data_dir=None, manual_dir=None, download=True,
                  multi_worker=False, noise_draws=None):
  """The config's pipelines. Under several workers Keras auto-shards them
  (tf.data AUTO policy: by file when the source has at least one file per
  worker, else by element); element sharding needs the same element order
  on every worker, so the order is then made deterministic (the shuffle is
  seeded identically everywhere)."""
  return data.load(
      config["dataset"], batch_size=config["batch_size"], seed=config["seed"],
      conditional=config["conditional"], data_dir=data_dir,
      manual_dir=manual_dir, download=download,
      deterministic=config["deterministic"] or multi_worker,
      image_size=config["image_size"],
      shuffle_buffer=config["shuffle_buffer"],
      dequantize=config["dequantizer"] == "none", noise_draws=noise_draws)


def write_figures(model, datasets, run_dir, config):
  """samples.png (one grid per temperature) and interpolation.png."""
  up = figures.upscale_for(model.image_shape)
  grids = [figures.captioned(figures.upscaled(figures.sample_grid(
      model, config["num_samples"], t, seed=(config["seed"], 12345)), up),
                             figures.temperature_caption(t))
           for t in config["temperatures"]]
  gap = np.full((grids[0].shape[0], 8 * up, grids[0].shape[2]), 255,
                np.uint8)
  row = np.concatenate(sum(([g, gap] for g in grids), [])[:-1], axis=1)
  figures.save_png(row, os.path.join(run_dir, "samples.png"))

  batch = next(iter(datasets.test.unbatch().batch(4).take(1)))
  if model.num_classes:  # elements are ((images, labels),)
    four, labels = batch[0]
    label = int(labels[0])
  else:
    four, label = batch, None
  if four.shape[0] == 4:
    manifold = model.interpolate(four, steps=config["interpolation_steps"],
                                 labels=label)
    figures.save_png(figures.grid(manifold.numpy()),
                     os.path.join(run_dir, "interpolation.png"), upscale=up)


def run(config, output_dir=None, data_dir=None, manual_dir=None,
        download=True, fresh=False, verbose=2, strategy="default",
        devices=None, tpu=None, callbacks=()):
  """Trains, evaluates on the test split, writes all artifacts; returns
  the metrics dict.

  `config` is checked whole (`configs.validate`) and against the run
  directory it enters (`check_run_dir`) before anything else happens.
  `strategy` is a `tf.distribute.Strategy` or one of
  `training.strategy.STRATEGIES` (`devices` for 'mirrored', `tpu` for
  'tpu'); see `training/strategy.py` for who writes what. Under
  'multi_worker' every worker runs this with the same arguments and an
  explicit `output_dir`; non-chief workers return after `fit`.
  `callbacks` are extra Keras callbacks for `fit` (after the run's own).
  """
  started = time.time()
  configs.validate(config)
  if not output_dir and (
      strategy == "multi_worker" if isinstance(strategy, str) else
      strategy_lib.is_multi_worker(strategy)):
    # Checked before a strategy is created: creating it waits for the peers.
    raise ValueError("--strategy multi_worker needs --output_dir: every "
                     "worker must name the same run directory")
  run_dir, _ = resolve_run_dir(config["config_name"], output_dir, fresh)
  state = check_run_dir(run_dir, config, fresh=fresh,
                        explicit=bool(output_dir))
  # MultiWorkerMirroredStrategy must exist before TF runs any op.
  if isinstance(strategy, str):
    strategy = strategy_lib.make(strategy, devices=devices, tpu=tpu)
  multi_worker = strategy_lib.is_multi_worker(strategy)
  chief = strategy_lib.is_chief(strategy)
  own_dir = strategy_lib.write_dir(run_dir, strategy)
  result_path = os.path.join(own_dir, "result.json")
  if chief and state == "finished":
    print(f"the run in {run_dir} is already finished (metrics.json); "
          f"nothing to do", flush=True)
    return read_json(os.path.join(run_dir, "metrics.json"))
  if not chief and os.path.exists(result_path):
    return read_json(result_path)
  keras.utils.set_random_seed(config["seed"])
  if config["deterministic"]:
    tf.config.experimental.enable_op_determinism()
  backup_dir = os.path.join(own_dir, "backup")
  trained = chief and state == "trained"
  resuming = os.path.isdir(backup_dir)
  os.makedirs(own_dir, exist_ok=True)
  print(f"{'resuming' if resuming else 'starting'} run in {run_dir} "
        f"({strategy.num_replicas_in_sync} replica(s), "
        f"{'chief' if chief else 'worker ' + str(strategy_lib.task(strategy))})"
        + ("; training is finished, evaluating and exporting only"
           if trained else ""), flush=True)

  datasets = load_datasets(config, data_dir, manual_dir, download,
                           multi_worker=multi_worker)
  expected = config.get("num_classes")
  if expected is not None and expected != datasets.num_classes:
    raise ValueError(f"--num_classes {expected} does not match dataset "
                     f"{datasets.name!r} ({datasets.num_classes} classes)")
  with strategy.scope():
    model = build_model(config, datasets.image_shape, datasets.num_classes)
    model.compile(optimizer=build_optimizer(config),
                  jit_compile=jit_compile_setting(config["jit_compile"]))
    # Every process keeps its own backup (restores itself after a restart).
    backup = callbacks_lib.ResumableBackup(backup_dir)
    restored = backup.restore(model)
  if chief:
    write_json(dict(config, num_parameters=int(model.count_params()),
                    num_replicas=strategy.num_replicas_in_sync),
               os.path.join(run_dir, "config.json"))

  best_path = os.path.join(run_dir, BEST_MODEL)
  done_path = os.path.join(run_dir, DONE_FILE)
  if trained:
    done = read_json(done_path, "the training summary")
  else:
    done = _fit(model, config, datasets, run_dir, chief, backup, restored,
                list(callbacks), verbose)
    done["resumed"] = resuming
    if not chief:
      # Weights are identical on every worker; the chief reports and exports.
      result = dict(done, worker=list(strategy_lib.task(strategy)))
      write_json(result, result_path)
      shutil.rmtree(backup_dir, ignore_errors=True)
      return result
    # From here on a failure (evaluation, figures, export) loses nothing:
    # the rerun finds this file and the backup, and does not train again.
    write_json(done, done_path)

  # Report the checkpoint with the best validation bits/dim on the test set.
  if os.path.exists(best_path):
    model = checkpoints.load_model(best_path)
  elif multi_worker:
    # Evaluating the distributed model would be a collective; the chief
    # scores a local copy of the (synchronized) weights alone.
    local = build_model(config, datasets.image_shape, datasets.num_classes)
    local.set_weights(model.get_weights())
    model = local
    model.compile()
  reference = score_reference(model, datasets.train,
                              config["steps_per_epoch"] or None,
                              best_path if os.path.exists(best_path) else None)
  name = model.bits_per_dim_name
  result = model.evaluate(datasets.test, steps=config["test_steps"] or None,
                          verbose=0, return_dict=True)
  test_bpd = float(result[name])
  iw = {}
  if config["test_iw_samples"]:
    k = config["test_iw_samples"]
    test = datasets.test
    if model.dequantizer is None:  # K dequantized copies of every image
      test = load_datasets(dict(config, shuffle_buffer=1), data_dir,
                           manual_dir, download, noise_draws=k).test
    iw = {"test_" + evaluate_cli.IW_KEY:
          evaluate_cli.importance_weighted_bits_per_dim(
              model, test, k, steps=config["test_steps"] or None),
          "test_iw_samples": k}
  write_figures(model, datasets, run_dir, config)
  export_path = None
  if config["export"]:
    try:
      export_path = export_cli.export_model(model, config["export_dir"],
                                            name=config["config_name"])
    except (OSError, ValueError) as e:
      raise ExportError(
          f"training finished ({done['last_epoch']} epochs, {run_dir}) but "
          f"the TF Serving export to {config['export_dir']!r} failed: "
          f"{type(e).__name__}: {e}. Nothing is lost: fix it (e.g. "
          f"--export_dir) and rerun the same command to evaluate and export "
          f"without training again") from e
    print(f"exported for TF Serving: {export_path}", flush=True)
  metrics = {
      "test_" + name: test_bpd,
      "epochs": config["epochs"],
      "last_epoch": done["last_epoch"],
      "epochs_run_in_this_process": (0 if trained else
                                     done["epochs_run_in_this_process"]),
      "best_" + monitor_of(config): done["best_" + monitor_of(config)],
      "train_images_per_second": done["train_images_per_second"],
      "train_seconds": done.get("train_seconds"),
      "train_steps": done.get("train_steps"),
      "wall_time_seconds": time.time() - started,
      "num_parameters": int(model.count_params()),
      "dataset": datasets.name,
      "resumed": resuming,
      "num_replicas": strategy.num_replicas_in_sync,
      "final_weights_sha256": done["final_weights_sha256"],
      "export": export_path,
      "config": config,
  }
  metrics.update(iw)
  metrics.update(reference)
  write_json(metrics, os.path.join(run_dir, "metrics.json"))
  # The run is done: its training state is no longer needed.
  shutil.rmtree(backup_dir, ignore_errors=True)
  if os.path.exists(done_path):
    os.remove(done_path)
  print(f"test {name.replace('_', ' ')}: {test_bpd:.4f}  ({datasets.name}, "
        f"run {run_dir})" + "".join(
            f"; {k}: {v:.4f}" for k, v in iw.items()
            if k.startswith("test_importance")),
        flush=True)
  return metrics


def score_reference(model, train, steps, checkpoint=None):
  """Computes the model's typicality reference on the training split (one
  inference pass; `steps` batches if given) and, when `checkpoint` is
  given, writes it beside it (`checkpoints.reference_path`, atomically):
  best.keras itself is never rewritten, and `checkpoints.load_model` applies
  the reference when its weight digest matches. Returns `{"train_bpd_mean",
  "train_bpd_std", "train_images", "score_statistics_seconds"}` for
  metrics.json."""
  started = time.perf_counter()
  try:
    reference = model.compute_score_statistics(train, steps=steps)
  except ValueError as e:  # e.g. non-finite densities: report, go on
    console.warn(f"no typicality reference for realnvp-score: {e}")
    return {}
  if checkpoint is not None:
    checkpoints.write_reference(model, checkpoint)
  return dict(reference,
              score_statistics_seconds=time.perf_counter() - started)


def _fit(model, config, datasets, run_dir, chief, backup, restored,
         extra_callbacks, verbose):
  """`model.fit` from the `restored` epoch; returns the training summary."""
  batch = config["batch_size"]
  if datasets.train_size:
    batch = min(batch, datasets.train_size)  # one partial batch per epoch
  throughput = callbacks_lib.Throughput(batch)
  log_dir = os.path.join(run_dir, "logs")
  cbs = [callbacks_lib.NonFiniteLossGuard(), callbacks_lib.EmptyEpochGuard(),
         throughput]
  checkpoint = None
  if chief:  # only the chief writes the shared artifacts
    trim_training_log(run_dir, restored)
    checkpoint = callbacks_lib.AtomicModelCheckpoint(
        os.path.join(run_dir, BEST_MODEL),
        state_path=os.path.join(run_dir, BEST_STATE),
        monitor=monitor_of(config), mode="min", save_best_only=True,
        initial_value_threshold=best_so_far(run_dir, monitor_of(config)))
    cbs += [
        checkpoint,
        keras.callbacks.CSVLogger(os.path.join(run_dir, LOG_FILE),
                                  append=True),
        keras.callbacks.TensorBoard(log_dir=log_dir),
        callbacks_lib.SampleImages(log_dir, config["num_samples"],
                                   config["temperatures"], config["seed"]),
    ]
  # The backup comes after the best checkpoint and the log: a crash between
  # them makes the rerun train that epoch again (its log row is replaced)
  # instead of losing a best model or a log row.
  cbs.append(backup)
  if config["max_train_minutes"]:
    # All workers stop at the same epoch (the decision is all-reduced).
    cbs.append(callbacks_lib.TimeBudget(config["max_train_minutes"]))
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
  return {
      "last_epoch": (history.epoch[-1] + 1) if history.epoch else restored,
      "epochs_run_in_this_process": len(history.epoch),
      "best_" + monitor_of(config): best,
      "train_images_per_second": throughput.images_per_second,
      "train_seconds": train_seconds,
      "train_steps": throughput.steps,
      "final_weights_sha256": weights_sha256(model),
  }


# --- command line ------------------------------------------------------------------


def _parse_value(kind, text):
  """A flag's value; argparse reports an ArgumentTypeError as
  `argument --key: <message>`."""
  def fail(expected):
    raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
  if kind is bool:
    if text.lower() in ("1", "true", "yes", "on"):
      return True
    if text.lower() in ("0", "false", "no", "off"):
      return False
    fail("true or false")
  try:
    if kind == "shape":
      return [int(v) for v in text.split(",")]
    if kind == "floats":
      return [float(v) for v in text.split(",")]
    if kind == "ints":
      return [int(v) for v in text.split(",")]
    if kind == "filters":
      widths = [int(v) for v in text.split(",")]
      return widths[0] if len(widths) == 1 else widths
    return kind(text)
  except ValueError:
    fail({"shape": "three comma-separated integers H,W,C",
          "floats": "comma-separated numbers like 1.0,0.7",
          "ints": "comma-separated integers like 512,512",
          "filters": "an integer or comma-separated integers",
          int: "an integer", float: "a number"}.get(kind, "a value"))


def parser():
  p = argparse.ArgumentParser(
      prog="realnvp-train", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="configs: " + ", ".join(configs.available()) + "\n\n" +
      __doc__[__doc__.index("Rerunning"):].strip())
  p.add_argument("--config", default="digits",
                 help="config name in training/configs/ or a .json path "
                      "(default: digits)")
  p.add_argument("--output_dir", help="run directory (default: "
                 "runs/<config>-<timestamp>, or the unfinished one to resume)")
  p.add_argument("--fresh", action="store_true",
                 help="start a new run even if an unfinished one exists "
                      "(resuming needs the run's own config; only "
                      f"{', '.join(configs.MAY_CHANGE_ON_RESUME)} may "
                      "change, e.g. --epochs to extend or shorten it)")
  p.add_argument("--data_dir", help="tensorflow-datasets data directory")
  p.add_argument("--manual_dir", help="raw dataset files to prepare the tfds "
                 "dataset from offline (DownloadConfig(manual_dir=...))")
  p.add_argument("--no_download", action="store_true",
                 help="never download; use what --data_dir holds")
  p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2),
                 help="Keras fit verbosity")
  scale = p.add_argument_group("scale out (see README 'Scale out')")
  scale.add_argument("--strategy", default="default",
                     choices=strategy_lib.STRATEGIES,
                     help="tf.distribute strategy (multi_worker reads "
                          "TF_CONFIG and needs --output_dir)")
  scale.add_argument("--devices", default=None,
                     help="mirrored: comma list of devices, e.g. "
                          "/gpu:0,/gpu:1 (default: all local GPUs)")
  scale.add_argument("--tpu", default=None,
                     help="tpu: TPU name or grpc:// address ('' = local)")
  group = p.add_argument_group("config overrides (defaults come from --config)")
  for key, (default, kind, help_text) in configs.FIELDS.items():
    metavar = {"shape": "H,W,C", "floats": "T1,T2", "ints": "N1,N2",
                "filters": "N|N1,N2,.."}.get(
        kind, getattr(kind, "__name__", str(kind)).upper())
    group.add_argument(f"--{key}", default=None, metavar=metavar,
                       type=lambda t, k=kind: _parse_value(k, t),
                       help=f"{help_text} (base default: {default})")
  p.add_argument("--num_classes", type=int, default=None,
                 help="train class-conditional (same as --conditional true); "
                      "checked against the dataset's class count")
  return p


def config_from_args(args):
  config = configs.load(args.config)
  for key in configs.FIELDS:
    value = getattr(args, key)
    if value is not None:
      config[key] = value
  if args.num_classes is not None:
    config["conditional"] = True
    config["num_classes"] = args.num_classes
  return config


def main(argv=None):
  args = parser().parse_args(argv)
  try:
    config = config_from_args(args)
    run(config, output_dir=args.output_dir, data_dir=args.data_dir,
        manual_dir=args.manual_dir, download=not args.no_download,
        fresh=args.fresh, verbose=args.verbose, strategy=args.strategy,
        devices=args.devices.split(",") if args.devices else None,
        tpu=args.tpu)
  except callbacks_lib.NonFiniteLossError as e:
    print(f"realnvp-train: {e}", file=sys.stderr)
    return 3
  except (ValueError, FileNotFoundError, ExportError) as e:
    print(f"realnvp-train: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
