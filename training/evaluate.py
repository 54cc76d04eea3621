"""`realnvp-evaluate`: bits/dim of a trained checkpoint on a dataset split.

    realnvp-evaluate runs/digits-20261123-101500
    realnvp-evaluate model.keras --dataset mnist --data_dir ../shared/data/tfds
    realnvp-evaluate runs/digits-20261123-101500 --seed 7

Pixels are dequantized with fixed per-example noise from `--seed`; by
default the run's own seed, so the figure reproduces the run's
metrics.json (0 for a bare .keras checkpoint).
"""

import argparse
import json
import sys

from training import checkpoints
from training import data


def evaluate(checkpoint_or_run, dataset=None, split="test", batch_size=64,
             data_dir=None, manual_dir=None, download=True, seed=None,
             steps=None):
  """Returns the mean bits/dim of `split`.

  `seed` fixes the dequantization noise (`None`: the run's seed, else 0).
  """
  if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                           or seed < 0):
    raise ValueError(f"--seed must be an integer >= 0, got {seed!r}")
  if steps is not None and steps < 1:
    raise ValueError(f"--steps must be >= 1 (or omitted for the whole "
                     f"split), got {steps}")
  path, config = checkpoints.locate(checkpoint_or_run)
  if seed is None:
    seed = int((config or {}).get("seed", 0))
  model = checkpoints.load_model(path)
  if dataset is None:
    if config is None:
      raise ValueError("--dataset is required for a bare .keras checkpoint")
    dataset = config["dataset"]
  datasets = data.load(dataset, batch_size=batch_size, seed=seed,
                       conditional=bool(model.num_classes), data_dir=data_dir,
                       manual_dir=manual_dir, download=download,
                       image_size=(config or {}).get("image_size"),
                       dequantize=model.dequantizer is None)
  if tuple(datasets.image_shape) != tuple(model.image_shape):
    raise ValueError(f"dataset {dataset!r} has images of shape "
                     f"{datasets.image_shape}, the model expects "
                     f"{model.image_shape}")
  pipeline = {"test": datasets.test, "validation": datasets.validation,
              "train": datasets.train}[split]
  result = model.evaluate(pipeline, steps=steps, verbose=0, return_dict=True)
  return float(result["bits_per_dim"])


def main(argv=None):
  p = argparse.ArgumentParser(prog="realnvp-evaluate",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("checkpoint", help="run directory or .keras checkpoint")
  p.add_argument("--dataset", help="dataset (default: the run's)")
  p.add_argument("--split", default="test",
                 choices=("test", "validation", "train"))
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--steps", type=int, default=None,
                 help="number of batches (default: the whole split)")
  p.add_argument("--seed", type=int, default=None,
                 help="dequantization noise seed (default: the run's seed, "
                      "0 for a bare .keras checkpoint)")
  p.add_argument("--data_dir")
  p.add_argument("--manual_dir")
  p.add_argument("--no_download", action="store_true")
  args = p.parse_args(argv)
  try:
    bpd = evaluate(args.checkpoint, args.dataset, args.split, args.batch_size,
                   args.data_dir, args.manual_dir, not args.no_download,
                   seed=args.seed, steps=args.steps)
  except (ValueError, FileNotFoundError) as e:
    print(f"realnvp-evaluate: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps({"checkpoint": args.checkpoint, "split": args.split,
                    "bits_per_dim": bpd}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
