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
import hashlib
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
from training import strategy as strategy_lib


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
                       else config["mixed_precision"]))


def jit_compile_setting(text):
  """The `compile(jit_compile=...)` value of the `jit_compile` config."""
  values = {"auto": "auto", "true": True, "false": False}
  if str(text).lower() not in values:
    raise ValueError(f"jit_compile must be auto, true or false, got {text!r}")
  return values[str(text).lower()]


def load_datasets(config, data_dir=None, manual_dir=None, download=True,
                  multi_worker=False):
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
        download=True, fresh=False, verbose=2, strategy="default",
        devices=None, tpu=None):
  """Trains, evaluates on the test split, writes all artifacts; returns
  the metrics dict.

  `strategy` is a `tf.distribute.Strategy` or one of
  `training.strategy.STRATEGIES` (`devices` for 'mirrored', `tpu` for
  'tpu'); see `training/strategy.py` for who writes what. Under
  'multi_worker' every worker runs this with the same arguments and an
  explicit `output_dir`; non-chief workers return after `fit`.
  """
  started = time.time()
  if not output_dir and (
      strategy == "multi_worker" if isinstance(strategy, str) else
      strategy_lib.is_multi_worker(strategy)):
    # Checked before a strategy is created: creating it waits for the peers.
    raise ValueError("--strategy multi_worker needs --output_dir: every "
                     "worker must name the same run directory")
  # First: MultiWorkerMirroredStrategy must exist before TF runs any op.
  if isinstance(strategy, str):
    strategy = strategy_lib.make(strategy, devices=devices, tpu=tpu)
  multi_worker = strategy_lib.is_multi_worker(strategy)
  chief = strategy_lib.is_chief(strategy)
  keras.utils.set_random_seed(config["seed"])
  if config["deterministic"]:
    tf.config.experimental.enable_op_determinism()
  run_dir, _ = resolve_run_dir(config["config_name"], output_dir, fresh)
  own_dir = strategy_lib.write_dir(run_dir, strategy)
  resuming = os.path.isdir(os.path.join(own_dir, "backup"))
  os.makedirs(own_dir, exist_ok=True)
  print(f"{'resuming' if resuming else 'starting'} run in {run_dir} "
        f"({strategy.num_replicas_in_sync} replica(s), "
        f"{'chief' if chief else 'worker ' + str(strategy_lib.task(strategy))})",
        flush=True)

  datasets = load_datasets(config, data_dir, manual_dir, download,
                           multi_worker=multi_worker)
  expected = config.get("num_classes")
  if expected is not None and expected != datasets.num_classes:
    raise ValueError(f"--num_classes {expected} does not match dataset "
                     f"{datasets.name!r} ({datasets.num_classes} classes)")
  with strategy.scope():
    model = build_model(config, datasets.image_shape, datasets.num_classes)
    clip = config["clipnorm"] or None
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"],
                                                  global_clipnorm=clip),
                  jit_compile=jit_compile_setting(config["jit_compile"]))
  if chief:
    write_json(dict(config, num_parameters=int(model.count_params()),
                    num_replicas=strategy.num_replicas_in_sync),
               os.path.join(run_dir, "config.json"))

  throughput = callbacks_lib.Throughput(config["batch_size"])
  log_dir = os.path.join(run_dir, "logs")
  best_path = os.path.join(run_dir, "checkpoints", "best.keras")
  # Every process keeps its own backup (restores itself after a restart);
  # only the chief writes the shared artifacts.
  cbs = [
      callbacks_lib.NonFiniteLossGuard(),
      keras.callbacks.BackupAndRestore(os.path.join(own_dir, "backup"),
                                       double_checkpoint=True),
      throughput,
  ]
  if chief:
    cbs += [
        callbacks_lib.AtomicModelCheckpoint(
            best_path, monitor="val_bits_per_dim", mode="min",
            save_best_only=True),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "training_log.csv"),
                                  append=True),
        keras.callbacks.TensorBoard(log_dir=log_dir),
        callbacks_lib.SampleImages(log_dir, config["num_samples"],
                                   config["temperatures"], config["seed"]),
    ]
  if config["max_train_minutes"]:
    # All workers stop at the same epoch (the decision is all-reduced).
    cbs.append(callbacks_lib.TimeBudget(config["max_train_minutes"]))
  # With a fixed number of steps per epoch the stream must not run dry.
  train = (datasets.train.repeat() if config["steps_per_epoch"]
           else datasets.train)
  history = model.fit(
      train, epochs=config["epochs"],
      steps_per_epoch=config["steps_per_epoch"] or None,
      validation_data=datasets.validation,
      validation_steps=config["validation_steps"] or None,
      callbacks=cbs, verbose=verbose if chief else 0)
  final_weights = weights_sha256(model)
  if not chief:
    # Weights are identical on every worker; the chief reports and exports.
    result = {"worker": list(strategy_lib.task(strategy)),
              "epochs_run_in_this_process": len(history.epoch),
              "last_epoch": (history.epoch[-1] + 1) if history.epoch
                            else None,
              "resumed": resuming, "final_weights_sha256": final_weights}
    write_json(result, os.path.join(own_dir, "result.json"))
    return result

  # Report the checkpoint with the best validation bits/dim on the test set.
  if os.path.exists(best_path):
    model = keras.models.load_model(best_path, compile=False)
    model.compile()
  elif multi_worker:
    # Evaluating the distributed model would be a collective; the chief
    # scores a local copy of the (synchronized) weights alone.
    local = build_model(config, datasets.image_shape, datasets.num_classes)
    local.set_weights(model.get_weights())
    model = local
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
      "num_replicas": strategy.num_replicas_in_sync,
      "final_weights_sha256": final_weights,
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
  if kind == "filters":
    widths = [int(v) for v in text.split(",")]
    return widths[0] if len(widths) == 1 else widths
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
    metavar = {"shape": "H,W,C", "floats": "T1,T2",
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
  except (ValueError, FileNotFoundError) as e:
    print(f"realnvp-train: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
