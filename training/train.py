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
                         wall time, phase_seconds (setup, fit,
                         score_reference, evaluation, iw_evaluation,
                         figures, export, total: this process),
                         process_seconds (since the process started:
                         imports included), the evaluation subsets used,
                         config

With --max_train_minutes the whole command ends soon after the budget: the
typicality reference uses the first 2,048 images of the shuffled training
pipeline (--score_reference_images) and the importance-weighted figure a
seeded random subset of 500 test images (--test_iw_images); the
single-draw test bits/dim is always the whole test split. --warmup_fraction
and --lr_decay cosine_to_budget key the learning rate to the budget's
elapsed time instead of steps.

Rerunning the same command after a crash resumes the unfinished run where it
stopped (the newest `runs/<config>-*` that still has a `backup/`, or the
given `--output_dir`), losing at most the epoch that was running. The
config must be the one the run was started with, except the keys that only
change how long it trains or what is reported at the end: epochs (extends or
shortens the run), max_train_minutes, test_steps, test_iw_samples,
test_iw_images, score_reference_images, num_samples, temperatures,
interpolation_steps, export, export_dir and jit_compile. Any other change is
refused with the list of differing keys; `--fresh` starts a new run instead.
If evaluation or export fails after training (e.g. an unwritable
--export_dir), the trained state is kept and the rerun only evaluates and
exports. A finished run (metrics.json) is never trained again: rerunning its
command does nothing.
"""

import argparse
import dataclasses
import os
import sys
import time

import keras
import tensorflow as tf

from training import backup as backup_lib
from training import budget as budget_lib
from training import builders
from training import callbacks as callbacks_lib
from training import configs
from training import fitting
from training import flags
from training import relaunch
from training import results
from training import rundir
from training import strategy as strategy_lib

# Moved to training/builders.py, rundir.py and results.py; still importable
# here.
build_model = builders.build_model
build_optimizer = builders.build_optimizer
load_datasets = builders.load_datasets
config_differences = rundir.config_differences
ExportError = results.ExportError
# Moved to training/budget.py and fitting.py; still importable here.
process_seconds = budget_lib.process_seconds
weights_sha256 = fitting.weights_sha256


def run(config, output_dir=None, data_dir=None, manual_dir=None,
        download=True, fresh=False, verbose=2, strategy="default",
        devices=None, tpu=None, callbacks=()):
  """Trains, evaluates on the test split, writes all artifacts; returns
  the metrics dict.

  `config` is checked whole (`configs.validate`) and against the run
  directory it enters (`rundir.check_run_dir`) before anything else happens.
  `strategy` is a `tf.distribute.Strategy` or one of
  `training.strategy.STRATEGIES` (`devices` for 'mirrored', `tpu` for
  'tpu'); see `training/strategy.py` for who writes what. Under
  'multi_worker' every worker runs this with the same arguments and an
  explicit `output_dir`; non-chief workers return after `fit`.
  `callbacks` are extra Keras callbacks for `fit` (after the run's own).
  """
  phases = budget_lib.Phases()
  r = _set_up(config, output_dir, fresh, strategy, devices, tpu,
              data_dir=data_dir, manual_dir=manual_dir, download=download)
  previous = _previous_result(r)
  if previous is not None:
    return previous
  _begin(r)
  datasets, model, backup, restored = _build_and_restore(r)
  phases.end("setup")
  done = _train(r, datasets, model, backup, restored, callbacks, verbose)
  phases.end("fit")
  if not r.chief:
    # Weights are identical on every worker; the chief reports and exports.
    return done
  model, reference = results.final_model(model, r.run_dir, r.config, datasets,
                                         r.multi_worker, verbose=verbose)
  phases.end("score_reference")
  test_bpd, test_images = results.evaluate_test(model, datasets, r.config,
                                                verbose=verbose)
  phases.end("evaluation")
  iw = results.importance_weighted(model, datasets, r.config, test_images,
                                   r.data_dir, r.manual_dir, r.download,
                                   verbose=verbose)
  phases.end("iw_evaluation")
  results.write_figures(model, datasets, r.run_dir, r.config)
  phases.end("figures")
  export_path = results.export(model, r.run_dir, r.config,
                               done["last_epoch"], verbose=verbose)
  phases.end("export")
  return _write_metrics(r, datasets, model, done, test_bpd, test_images, iw,
                        reference, export_path, phases)


@dataclasses.dataclass
class _Run:
  """What the phases of `run` share: the config, the run directory, who this
  process is under the strategy, and where the data comes from."""
  config: dict
  started: float  # time.time() when `run` began (metrics' wall time)
  run_dir: str
  state: str  # `rundir.run_state` when the run was entered
  strategy: tf.distribute.Strategy
  multi_worker: bool
  chief: bool
  own_dir: str  # where this process writes (`strategy.write_dir`)
  resuming: bool  # this process has a backed-up training state
  data_dir: str | None = None
  manual_dir: str | None = None
  download: bool = True
  # The optimizer's time-keyed schedule (`builders.budget_schedule`), whose
  # progress `fitting.fit` feeds; None for a step-keyed or constant rate.
  schedule: object = None

  @property
  def trained(self):
    """Training ended in an earlier process; evaluation or export did not."""
    return self.chief and self.state == "trained"


def _set_up(config, output_dir, fresh, strategy, devices, tpu, **data_source):
  """Set-up: checks the config (whole, and against the run directory it
  enters), finds that directory and creates the strategy. Returns the
  `_Run`; `data_source` is `data_dir`, `manual_dir`, `download`."""
  started = time.time()
  configs.validate(config)
  if not output_dir and (
      strategy == "multi_worker" if isinstance(strategy, str) else
      strategy_lib.is_multi_worker(strategy)):
    # Checked before a strategy is created: creating it waits for the peers.
    raise ValueError("--strategy multi_worker needs --output_dir: every "
                     "worker must name the same run directory")
  run_dir, _ = rundir.resolve_run_dir(config["config_name"], output_dir, fresh)
  state = rundir.check_run_dir(run_dir, config, fresh=fresh,
                               explicit=bool(output_dir))
  # MultiWorkerMirroredStrategy must exist before TF runs any op.
  if isinstance(strategy, str):
    strategy = strategy_lib.make(strategy, devices=devices, tpu=tpu)
  own_dir = strategy_lib.write_dir(run_dir, strategy)
  return _Run(config=config, started=started, run_dir=run_dir, state=state,
              strategy=strategy,
              multi_worker=strategy_lib.is_multi_worker(strategy),
              chief=strategy_lib.is_chief(strategy), own_dir=own_dir,
              resuming=os.path.isdir(rundir.backup_dir(own_dir)),
              **data_source)


def _previous_result(r):
  """What an earlier process left that makes this one do nothing: the
  metrics.json of a finished run (chief) or this worker's result.json;
  None when there is work to do. Under multi_worker every process first
  learns whether training ended in an earlier launch (`relaunch`)."""
  result_path = rundir.result_path(r.own_dir)
  training_ended = r.multi_worker and relaunch.ended_anywhere(
      r.strategy, r.chief, r.state, r.own_dir)
  if r.chief and r.state == "finished":
    print(f"the run in {r.run_dir} is already finished (metrics.json); "
          f"nothing to do", flush=True)
    return rundir.read_metrics(r.run_dir)
  if not r.chief and os.path.exists(result_path):
    return rundir.read_json(result_path)
  if not r.chief and training_ended:
    return relaunch.worker_result(r.strategy, r.run_dir, r.own_dir)
  return None


def _begin(r):
  """Set-up, continued: seeds, op determinism, this process's directory and
  the `starting`/`resuming` message."""
  keras.utils.set_random_seed(r.config["seed"])
  if r.config["deterministic"]:
    tf.config.experimental.enable_op_determinism()
  os.makedirs(r.own_dir, exist_ok=True)
  who = "chief" if r.chief else "worker " + str(strategy_lib.task(r.strategy))
  print(f"{'resuming' if r.resuming else 'starting'} run in {r.run_dir} "
        f"({r.strategy.num_replicas_in_sync} replica(s), {who})"
        + ("; training is finished, evaluating and exporting only"
           if r.trained else ""), flush=True)


def _build_and_restore(r):
  """Build/restore: the data pipelines, the compiled model (under the
  strategy) and its backed-up training state; the chief writes
  config.json. Returns `(datasets, model, backup, restored)`, `restored`
  being the number of epochs the restored state holds."""
  config = r.config
  datasets = builders.load_datasets(config, r.data_dir, r.manual_dir,
                                    r.download, multi_worker=r.multi_worker)
  expected = config.get("num_classes")
  if expected is not None and expected != datasets.num_classes:
    raise ValueError(f"--num_classes {expected} does not match dataset "
                     f"{datasets.name!r} ({datasets.num_classes} classes)")
  # A chief that only evaluates a multi-worker run trained in an earlier
  # launch builds locally: its workers have stopped (`_previous_result`),
  # a variable broadcast would wait for them.
  scope = (tf.distribute.get_strategy() if r.trained and r.multi_worker
           else r.strategy)
  with scope.scope():
    model = builders.build_model(config, datasets.image_shape,
                                 datasets.num_classes)
    # Under the scope: a time-keyed schedule's progress variable is mirrored.
    lr = builders.learning_rate(config)
    r.schedule = builders.budget_schedule(lr)
    model.compile(optimizer=builders.build_optimizer(config, lr),
                  jit_compile=builders.jit_compile_setting(
                      config["jit_compile"]))
    # Every process keeps its own backup (restores itself after a restart).
    backup = backup_lib.ResumableBackup(rundir.backup_dir(r.own_dir))
    restored = backup.restore(model)
  if r.chief:
    rundir.write_config(r.run_dir, config, int(model.count_params()),
                        r.strategy.num_replicas_in_sync)
  return datasets, model, backup, restored


def _train(r, datasets, model, backup, restored, extra_callbacks, verbose):
  """Fit: trains from the `restored` epoch and returns the training summary
  (or reads it, when training ended in an earlier process). A non-chief
  worker then writes its result.json and drops its backup (`run` returns
  that result); the chief writes training_done.json."""
  if r.trained:
    return rundir.read_done(r.run_dir)
  done = fitting.fit(model, r.config, datasets, r.run_dir, r.chief, backup,
                     restored, list(extra_callbacks), verbose, r.schedule)
  done["resumed"] = r.resuming
  if not r.chief:
    # After the chief's training_done.json (the barrier): a worker's
    # result.json never exists without it.
    strategy_lib.barrier(r.strategy)
    result = dict(done, worker=list(strategy_lib.task(r.strategy)))
    rundir.finish_worker(r.own_dir, result)
    return result
  # From here on a failure (evaluation, figures, export) loses nothing:
  # the rerun finds this file and the backup, and does not train again.
  rundir.write_done(r.run_dir, done)
  strategy_lib.barrier(r.strategy)
  return done


def _write_metrics(r, datasets, model, done, test_bpd, test_images, iw,
                   reference, export_path, phases):
  """Metrics: writes metrics.json (the run is finished), removes the
  training state and prints the test figure; returns the metrics dict.
  `phases`: the run's `budget.Phases` (their total ends here)."""
  config = r.config
  name, monitor = model.bits_per_dim_name, rundir.monitor_of(config)
  metrics = {
      "test_" + name: test_bpd,
      "test_images": test_images,
      "epochs": config["epochs"],
      "last_epoch": done["last_epoch"],
      "epochs_run_in_this_process": (0 if r.trained else
                                     done["epochs_run_in_this_process"]),
      "best_" + monitor: done["best_" + monitor],
      "train_images_per_second": done["train_images_per_second"],
      "train_seconds": done.get("train_seconds"),
      "train_steps": done.get("train_steps"),
      "wall_time_seconds": time.time() - r.started,
      "num_parameters": int(model.count_params()),
      "dataset": datasets.name,
      "resumed": r.resuming,
      "num_replicas": r.strategy.num_replicas_in_sync,
      "final_weights_sha256": done["final_weights_sha256"],
      "export": export_path,
      "config": config,
  }
  metrics.update(iw)
  metrics.update(reference)
  if done.get("lr_schedule"):
    metrics["lr_schedule"] = done["lr_schedule"]
  metrics["phase_seconds"] = dict(
      phases.seconds, total=round(time.perf_counter() - phases.started, 3))
  metrics["process_seconds"] = process_seconds()
  rundir.write_metrics(r.run_dir, metrics)
  # The run is done: its training state is no longer needed.
  rundir.finish(r.run_dir, rundir.backup_dir(r.own_dir))
  print(f"test {name.replace('_', ' ')}: {test_bpd:.4f}  ({datasets.name}, "
        f"run {r.run_dir})" + "".join(
            f"; {k}: {v:.4f}" for k, v in iw.items()
            if k.startswith("test_importance")),
        flush=True)
  return metrics


# --- command line ------------------------------------------------------------------


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
  scale = p.add_argument_group("scale out (see docs/guides/scale-out.md)")
  scale.add_argument("--strategy", default="default",
                     choices=strategy_lib.STRATEGIES,
                     help="tf.distribute strategy (multi_worker reads "
                          "TF_CONFIG and needs --output_dir)")
  scale.add_argument("--devices", default=None,
                     help="mirrored: comma list of devices, e.g. "
                          "/gpu:0,/gpu:1 (default: all local GPUs)")
  scale.add_argument("--tpu", default=None,
                     help="tpu: TPU name or grpc:// address ('' = local)")
  flags.add_config_flags(p)
  return p


def main(argv=None):
  args = parser().parse_args(argv)
  try:
    config = flags.config_from_args(args)
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