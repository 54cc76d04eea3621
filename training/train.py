"""`realnvp-train`: train a Real NVP model with tf.data and Keras `fit`.

    realnvp-train                          # the embedded `digits` default
    realnvp-train --config mnist --data_dir ../shared/data/tfds --no_download
    realnvp-train --config cifar10 --batch_size 32 --epochs 5
    python -m training.train --help        # every config key is a flag

A run directory (`runs/<config>-<timestamp>/` or `--output_dir`) receives:

    config.json          the full configuration of the run
    backup/              keras.callbacks.BackupAndRestore state (removed when done)
    checkpoints/best.keras   best validation bits/dim (written atomically)
    (and saved_models/<config>/<version>/, the TF Serving export, by default)
    logs/                TensorBoard scalars and per-epoch sample grids
    training_log.csv     one row per epoch
    samples.png          grids at each temperature (default 1.0 and 0.7)
    interpolation.png    the paper's eq. 19 manifold through four test images
    metrics.json         test bits/dim, epochs, images/s, wall time, config

Rerunning the same command after a crash resumes the unfinished run where it
stopped (the newest `runs/<config>-*` that still has a `backup/`, or the
given `--output_dir`); `--fresh` starts a new run instead.
"""

import argparse
import glob
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import tfp_realnvp
from tfp_realnvp import atomic
from tfp_realnvp import export as export_lib
from training import callbacks as callbacks_lib
from training import configs
from training import data
from training import figures


def write_json(obj, path):
  """Atomic JSON write (temp file + rename)."""
  with atomic.atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")


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
  stamp = time.strftime("%Y%m%d-%H%M%S")
  return os.path.join(root, f"{config_name}-{stamp}"), False


def build_model(config, image_shape, num_classes):
  """The `RealNVP` a config describes (library call only)."""
  return tfp_realnvp.RealNVP(
      image_shape=image_shape, num_scales=config["num_scales"],
      num_res_blocks=config["num_res_blocks"],
      num_filters=config["num_filters"], coupling=config["coupling"],
      use_batch_norm=config["use_batch_norm"],
      num_classes=num_classes if config["conditional"] else None,
      alpha=config["alpha"], bn_momentum=config["bn_momentum"],
      log_scale_init=config["log_scale_init"], l2_reg=config["l2_reg"])


def load_datasets(config, data_dir=None, manual_dir=None, download=True):
  return data.load(
      config["dataset"], batch_size=config["batch_size"], seed=config["seed"],
      conditional=config["conditional"], data_dir=data_dir,
      manual_dir=manual_dir, download=download,
      deterministic=config["deterministic"], image_size=config["image_size"],
      shuffle_buffer=config["shuffle_buffer"])


def write_figures(model, datasets, run_dir, config):
  """samples.png (one grid per temperature) and interpolation.png."""
  grids = [figures.sample_grid(model, config["num_samples"], t,
                               seed=(config["seed"], 12345))
           for t in config["temperatures"]]
  gap = np.full((grids[0].shape[0], 8, grids[0].shape[2]), 255, np.uint8)
  row = np.concatenate(sum(([g, gap] for g in grids), [])[:-1], axis=1)
  up = figures.upscale_for(model.image_shape)
  figures.save_png(row, os.path.join(run_dir, "samples.png"), upscale=up)

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
        download=True, fresh=False, verbose=2):
  """Trains, evaluates on the test split, writes all artifacts; returns
  the metrics dict."""
  started = time.time()
  keras.utils.set_random_seed(config["seed"])
  if config["deterministic"]:
    tf.config.experimental.enable_op_determinism()
  run_dir, resuming = resolve_run_dir(config["config_name"], output_dir, fresh)
  os.makedirs(run_dir, exist_ok=True)
  print(f"{'resuming' if resuming else 'starting'} run in {run_dir}",
        flush=True)

  datasets = load_datasets(config, data_dir, manual_dir, download)
  expected = config.get("num_classes")
  if expected is not None and expected != datasets.num_classes:
    raise ValueError(f"--num_classes {expected} does not match dataset "
                     f"{datasets.name!r} ({datasets.num_classes} classes)")
  model = build_model(config, datasets.image_shape, datasets.num_classes)
  clip = config["clipnorm"] or None
  model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"],
                                                global_clipnorm=clip))
  write_json(dict(config, num_parameters=int(model.count_params())),
             os.path.join(run_dir, "config.json"))

  throughput = callbacks_lib.Throughput(config["batch_size"])
  log_dir = os.path.join(run_dir, "logs")
  best_path = os.path.join(run_dir, "checkpoints", "best.keras")
  cbs = [
      callbacks_lib.NonFiniteLossGuard(),
      keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup"),
                                       double_checkpoint=True),
      callbacks_lib.AtomicModelCheckpoint(
          best_path, monitor="val_bits_per_dim", mode="min",
          save_best_only=True),
      keras.callbacks.CSVLogger(os.path.join(run_dir, "training_log.csv"),
                                append=True),
      keras.callbacks.TensorBoard(log_dir=log_dir),
      callbacks_lib.SampleImages(log_dir, config["num_samples"],
                                 config["temperatures"], config["seed"]),
      throughput,
  ]
  if config["max_train_minutes"]:
    cbs.append(callbacks_lib.TimeBudget(config["max_train_minutes"]))
  # With a fixed number of steps per epoch the stream must not run dry.
  train = (datasets.train.repeat() if config["steps_per_epoch"]
           else datasets.train)
  history = model.fit(
      train, epochs=config["epochs"],
      steps_per_epoch=config["steps_per_epoch"] or None,
      validation_data=datasets.validation,
      validation_steps=config["validation_steps"] or None,
      callbacks=cbs, verbose=verbose)

  # Report the checkpoint with the best validation bits/dim on the test set.
  if os.path.exists(best_path):
    model = keras.models.load_model(best_path, compile=False)
    model.compile()
  result = model.evaluate(datasets.test, steps=config["test_steps"] or None,
                          verbose=0, return_dict=True)
  test_bpd = float(result["bits_per_dim"])
  write_figures(model, datasets, run_dir, config)
  export_path = None
  if config["export"]:
    export_path = export_lib.export_for_serving(
        model, config["export_dir"], name=config["config_name"])
    print(f"exported for TF Serving: {export_path}", flush=True)
  metrics = {
      "test_bits_per_dim": test_bpd,
      "epochs": config["epochs"],
      "last_epoch": (history.epoch[-1] + 1) if history.epoch else None,
      "epochs_run_in_this_process": len(history.epoch),
      "best_val_bits_per_dim": (min(history.history["val_bits_per_dim"])
                                if history.history.get("val_bits_per_dim")
                                else None),
      "train_images_per_second": throughput.images_per_second,
      "wall_time_seconds": time.time() - started,
      "num_parameters": int(model.count_params()),
      "dataset": datasets.name,
      "resumed": resuming,
      "export": export_path,
      "config": config,
  }
  write_json(metrics, os.path.join(run_dir, "metrics.json"))
  print(f"test bits/dim: {test_bpd:.4f}  ({datasets.name}, run {run_dir})",
        flush=True)
  return metrics


# --- command line ------------------------------------------------------------------


def _parse_value(kind, text):
  if kind is bool:
    if text.lower() in ("1", "true", "yes", "on"):
      return True
    if text.lower() in ("0", "false", "no", "off"):
      return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
  if kind == "shape":
    return [int(v) for v in text.split(",")]
  if kind == "floats":
    return [float(v) for v in text.split(",")]
  return kind(text)


def parser():
  p = argparse.ArgumentParser(
      prog="realnvp-train", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="configs: " + ", ".join(configs.available()))
  p.add_argument("--config", default="digits",
                 help="config name in training/configs/ or a .json path "
                      "(default: digits)")
  p.add_argument("--output_dir", help="run directory (default: "
                 "runs/<config>-<timestamp>, or the unfinished one to resume)")
  p.add_argument("--fresh", action="store_true",
                 help="start a new run even if an unfinished one exists")
  p.add_argument("--data_dir", help="tensorflow-datasets data directory")
  p.add_argument("--manual_dir", help="raw dataset files to prepare the tfds "
                 "dataset from offline (DownloadConfig(manual_dir=...))")
  p.add_argument("--no_download", action="store_true",
                 help="never download; use what --data_dir holds")
  p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2),
                 help="Keras fit verbosity")
  group = p.add_argument_group("config overrides (defaults come from --config)")
  for key, (default, kind, help_text) in configs.FIELDS.items():
    metavar = {"shape": "H,W,C", "floats": "T1,T2"}.get(
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
                  fresh=args.fresh, verbose=args.verbose)
  except callbacks_lib.NonFiniteLossError as e:
    print(f"realnvp-train: {e}", file=sys.stderr)
    return 3
  except (ValueError, FileNotFoundError) as e:
    print(f"realnvp-train: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
