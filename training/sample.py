"""`realnvp-sample`: PNG grids of samples from a trained checkpoint.

    realnvp-sample runs/digits-20261123-101500 --temperature 0.7 --seed 3
    realnvp-sample model.keras --num 100 --label 7 --output sevens.png
    realnvp-sample model.keras --per_class --output classes.png
"""

import argparse
import math
import sys

import numpy as np

from training import checkpoints
from training import figures


def sample_png(checkpoint_or_run, output, num=64, temperature=1.0, seed=0,
               label=None, per_class=False, raw_weights=False):
  """Writes a grid of `num` samples to `output`; returns the image array.
  `raw_weights`: a model trained with `ema_decay` samples with its raw
  weights instead of the averages.

  Arguments are checked before the model is loaded: `temperature` must be a
  finite number > 0 (NaN or inf would give an all-NaN grid), `num` >= 1.
  """
  if isinstance(num, bool) or not isinstance(num, int) or num < 1:
    raise ValueError(f"--num must be an integer >= 1, got {num!r}")
  if not (isinstance(temperature, (int, float)) and
          math.isfinite(temperature) and temperature > 0):
    raise ValueError(f"--temperature must be a finite number > 0, got "
                     f"{temperature!r}")
  path, _ = checkpoints.locate(checkpoint_or_run)
  model = checkpoints.load_model(path, raw_weights=raw_weights)
  if (label is not None or per_class) and not model.num_classes:
    raise ValueError("--label / --per_class need a class-conditional model")
  if label is not None and not 0 <= label < model.num_classes:
    raise ValueError(f"--label must be in [0, {model.num_classes}), got "
                     f"{label}")
  if per_class or (model.num_classes and label is None):
    image = figures.sample_grid(model, num, temperature, seed=(seed, 0))
  else:
    labels = None if label is None else np.full([num], label, np.int32)
    image = figures.grid(model.sample(num, temperature=temperature,
                                      seed=(seed, 0), labels=labels).numpy())
  figures.save_png(image, output, upscale=figures.upscale_for(
      model.image_shape))
  return image


def main(argv=None):
  p = argparse.ArgumentParser(prog="realnvp-sample",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("checkpoint", help="run directory or .keras checkpoint")
  p.add_argument("--output", default="samples.png")
  p.add_argument("--num", type=int, default=64)
  p.add_argument("--temperature", type=float, default=1.0)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--label", type=int, default=None,
                 help="class of every sample (conditional models)")
  p.add_argument("--per_class", action="store_true",
                 help="one row per class (conditional models)")
  checkpoints.add_raw_weights_flag(p)
  args = p.parse_args(argv)
  try:
    sample_png(args.checkpoint, args.output, args.num, args.temperature,
               args.seed, args.label, args.per_class,
               raw_weights=args.raw_weights)
  except (ValueError, FileNotFoundError) as e:
    print(f"realnvp-sample: error: {e}", file=sys.stderr)
    return 2
  print(args.output)
  return 0


if __name__ == "__main__":
  sys.exit(main())
