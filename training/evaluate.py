"""`realnvp-evaluate`: bits/dim of a trained checkpoint on a dataset split.

    realnvp-evaluate runs/digits-20261123-101500
    realnvp-evaluate model.keras --dataset mnist --data_dir ../shared/data/tfds
    realnvp-evaluate runs/digits-20261123-101500 --seed 7
    realnvp-evaluate runs/mnist_fast-20261202-140000 --iw_samples 16

Pixels are dequantized with fixed per-example noise from `--seed`; by
default the run's own seed, so the figure reproduces the run's
metrics.json (0 for a bare .keras checkpoint). A model with a dequantizer
(`--dequantizer uniform|variational`) draws its own noise; a variational one
reports `variational_bits_per_dim`, the bound of its q(u|x).

`--iw_samples K` also reports the importance-weighted bound
`−log (1/K) Σ_k p(x + u_k)/q(u_k|x)` per image (float64 log-mean-exp; K = 1
is the single-draw figure, draw 0 being its noise). A model trained with
`ema_decay` is scored with its averaged weights unless `--raw_weights`.
"""

import argparse
import json
import math
import sys

import keras
import numpy as np

import tfp_realnvp
from training import checkpoints
from training import console
from training import data

IW_KEY = "importance_weighted_bits_per_dim"


def importance_weighted_bits_per_dim(model, pipeline, num_samples,
                                     steps=None, verbose=0):
  """Mean over a pipeline's images of the importance-weighted bits/dim.

  `pipeline` yields what `model.importance_weighted_log_prob` takes: integer
  levels for a model with a dequantizer, else `[N, K, H, W, C]` draws
  (`data.load(noise_draws=K)`). Summed in float64.
  """
  total, count = 0.0, 0
  known = pipeline.cardinality().numpy() if hasattr(
      pipeline, "cardinality") else -1
  progress = keras.utils.Progbar(
      steps if steps is not None else (int(known) if known >= 0 else None),
      verbose=verbose, unit_name="batch")
  for i, batch in enumerate(pipeline):
    if steps is not None and i >= steps:
      break
    inputs = batch[0] if isinstance(batch, tuple) else batch
    k = None if model.dequantizer is None else num_samples
    log_p = model.importance_weighted_log_prob(inputs, num_samples=k).numpy()
    if not np.all(np.isfinite(log_p)):
      raise ValueError(f"non-finite importance-weighted log-likelihood in "
                       f"batch {i + 1} ({int(np.sum(~np.isfinite(log_p)))} "
                       f"images)")
    total += float(np.sum(log_p, dtype=np.float64))
    count += len(log_p)
    progress.update(i + 1)
  if not count:
    raise ValueError("the split yielded no images")
  return -total / count / (model.event_size * math.log(2.0))


def evaluate_report(checkpoint_or_run, dataset=None, split="test",
                    batch_size=64, data_dir=None, manual_dir=None,
                    download=True, seed=None, steps=None, iw_samples=None,
                    raw_weights=False, verbose=0):
  """`{model.bits_per_dim_name: mean over split}` and, with `iw_samples`,
  the importance-weighted figure (`IW_KEY`, `iw_samples`)."""
  if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                           or seed < 0):
    raise ValueError(f"--seed must be an integer >= 0, got {seed!r}")
  if steps is not None and steps < 1:
    raise ValueError(f"--steps must be >= 1 (or omitted for the whole "
                     f"split), got {steps}")
  if iw_samples is not None and (isinstance(iw_samples, bool) or
                                 not isinstance(iw_samples, int) or
                                 iw_samples < 1):
    raise ValueError(f"--iw_samples must be an integer >= 1, got "
                     f"{iw_samples!r}")
  model, pipeline, source = _load(
      checkpoint_or_run, dataset, split, batch_size, data_dir, manual_dir,
      download, seed, raw_weights)
  result = model.evaluate(pipeline, steps=steps, verbose=verbose,
                          return_dict=True)
  report = {model.bits_per_dim_name: float(result[model.bits_per_dim_name])}
  if iw_samples:
    if model.dequantizer is None:  # K dequantized copies of every image
      pipeline = _load_split(model, split, noise_draws=iw_samples, **source)
    report[IW_KEY] = importance_weighted_bits_per_dim(
        model, pipeline, iw_samples, steps, verbose=verbose)
    report["iw_samples"] = iw_samples
  return report


def evaluate(checkpoint_or_run, dataset=None, split="test", batch_size=64,
             data_dir=None, manual_dir=None, download=True, seed=None,
             steps=None, raw_weights=False):
  """Returns the mean bits/dim of `split` (the model's single-draw figure:
  `variational_bits_per_dim` for a variational dequantizer).

  `seed` fixes the dequantization noise (`None`: the run's seed, else 0).
  """
  report = evaluate_report(checkpoint_or_run, dataset, split, batch_size,
                           data_dir, manual_dir, download, seed, steps,
                           raw_weights=raw_weights)
  return next(iter(report.values()))


def _load_split(model, split, noise_draws=None, **source):
  datasets = data.load(conditional=bool(model.num_classes),
                       dequantize=model.dequantizer is None,
                       noise_draws=noise_draws, **source)
  if tuple(datasets.image_shape) != tuple(model.image_shape):
    raise ValueError(f"dataset {datasets.name!r} has images of shape "
                     f"{datasets.image_shape}, the model expects "
                     f"{model.image_shape}")
  return {"test": datasets.test, "validation": datasets.validation,
          "train": datasets.train}[split]


def _load(checkpoint_or_run, dataset, split, batch_size, data_dir, manual_dir,
          download, seed, raw_weights):
  """(model, pipeline of `split`, the `data.load` arguments used)."""
  path, config = checkpoints.locate(checkpoint_or_run)
  if seed is None:
    seed = int((config or {}).get("seed", 0))
  model = checkpoints.load_model(path, raw_weights=raw_weights)
  if dataset is None:
    if config is None:
      raise ValueError("--dataset is required for a bare .keras checkpoint")
    dataset = config["dataset"]
  source = dict(name=dataset, batch_size=batch_size, seed=seed,
                data_dir=data_dir, manual_dir=manual_dir, download=download,
                image_size=(config or {}).get("image_size"))
  return model, _load_split(model, split, **source), source


def main(argv=None):
  p = argparse.ArgumentParser(prog="realnvp-evaluate",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("checkpoint", nargs="?",
                 help="run directory or .keras checkpoint")
  checkpoints.add_pretrained_flag(
      p, "evaluate a shipped model instead (on the dataset it was trained "
         "on unless --dataset is given)")
  p.add_argument("--dataset", help="dataset (default: the run's)")
  p.add_argument("--split", default="test",
                 choices=("test", "validation", "train"))
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--steps", type=int, default=None,
                 help="number of batches (default: the whole split)")
  p.add_argument("--seed", type=int, default=None,
                 help="dequantization noise seed (default: the run's seed, "
                      "0 for a bare .keras checkpoint)")
  p.add_argument("--iw_samples", type=int, default=None,
                 help="also report the importance-weighted bits/dim with K "
                      "dequantization draws per image")
  checkpoints.add_raw_weights_flag(p)
  p.add_argument("--quiet", action="store_true",
                 help="no progress bar (the JSON result only)")
  p.add_argument("--data_dir")
  p.add_argument("--manual_dir")
  p.add_argument("--no_download", action="store_true")
  args = p.parse_args(argv)
  checkpoints.check_one_source(p, args.checkpoint, args.pretrained,
                               "a checkpoint")
  try:
    checkpoint, dataset = args.checkpoint, args.dataset
    if args.pretrained:
      checkpoint = checkpoints.pretrained_file(args.pretrained,
                                               args.raw_weights)
      dataset = dataset or tfp_realnvp.pretrained_info(
          args.pretrained)["dataset"]
    with console.progress_on_stderr():
      report = evaluate_report(
          checkpoint, dataset, args.split, args.batch_size,
          args.data_dir, args.manual_dir, not args.no_download,
          seed=args.seed, steps=args.steps, iw_samples=args.iw_samples,
          raw_weights=args.raw_weights, verbose=0 if args.quiet else 1)
  except (ValueError, FileNotFoundError) as e:
    print(f"realnvp-evaluate: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(dict({"checkpoint": args.checkpoint or
                         f"pretrained:{args.pretrained}",
                         "split": args.split}, **report)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
