"""Quality per wall-clock time: test bits/dim after a fixed budget, on MNIST
or on colour photo patches.

    python -m bench.quality --minutes 10     # ours masked, ours squeezed
    python -m bench.quality --minutes 10 --impls ours,nf_glow,tfp_glow
    python -m bench.quality --minutes 10 --checkerboard squeezed \
        --mixed_precision none,mixed_bfloat16
    python -m bench.quality --minutes 10 --configs mnist_fast \
        --impls nf_glow,nf_realnvp        # realnvp-train vs the peers
    python -m bench.quality --minutes 10 --ablation --impls none
    python -m bench.quality --minutes 10 --configs mnist_fast --time_keyed \
        --impls nf_glow --curve_minutes 1 --curve_csv mnist_curve.csv
    python -m bench.quality --data photos --minutes 10 \
        --configs cifar10_fast --impls nf_glow --curve_minutes 1

`--configs NAME[,NAME...]` adds contestants trained by the training app
itself, `realnvp-train --config NAME --max_train_minutes M` (its own
optimizer, schedule, EMA, dequantizer, validation and best checkpoint), in
a fresh run directory, no export; the row reports the run's metrics.json:
`train_seconds` (the wall time of fit), steps, test bits/dim and, when the
config sets `test_iw_samples` (or `--iw_samples`), the importance-weighted
figure. The peers are then sized to the first config's parameter count
(unless `--params`). `--ablation` adds the levers of `mnist_fast` one at a
time to its plain-paper baseline (`ABLATION`), and all of them together.
`--structure` runs mnist_fast with each learned prior and Glow step of issue
17 (`STRUCTURE`), at equal parameters (within 10%). `--time_keyed` adds, for
each step-keyed config, the same config with its schedule keyed to the
budget (`TIME_KEYED`: warmup over the budget's first 5%, cosine to its end).

`--data photos` (issue 29) trains and scores every contestant on the colour
photo patches of `bench.photos` (32×32×3, no download; a stand-in for
CIFAR-10): the config runs read them as the PNG folder
`realnvp-train --dataset folder:PATH --image_size 32,32,3` (written once,
cached by content hash under `--photos_dir`), the peers as arrays through
the same pipeline stages, so every test image has the same noise.
`--curve_minutes M` keeps a copy of every contestant's weights each M
minutes of training and scores them after training (outside the budget) on
the first `--curve_images` test images: bits/dim against wall-clock
minutes, in each row's `curve`, `--curve_csv` and `--curve_png` (a plot).
The points are the weights being trained (the last one: when training
stopped); a config run's test figure is its best checkpoint's (validation).

Contestants (`--impls`): `ours` once per `--checkerboard` and
`--mixed_precision`, normflows Glow / Real NVP (`nf_glow`, `nf_realnvp`,
`bench.torch_peers`, fed the same batches as numpy) and TFP's `tfp_glow`.
Every contestant gets the same data (`training.data.load("mnist")` from the
tfds copy in `../shared/data/tfds`, or the photo patches: dequantized pixels
in [0, 256), batch 64, shuffled), the same optimizer (Adam 1e-3) and ~0.5M
parameters (the bench's `small` preset), and train for `--minutes` of
wall-clock time from the first training step to the last (tracing
included: it is the user's time; imports and the data pipeline's
construction are not).
Then the full test split (10,000 MNIST images, or 5,000 photo patches) is
scored with the same stateless dequantization noise: bits/dim = −log p(x) / (D ln 2) in pixel units (Glow
models x/256 − 0.5, so its log-density is shifted by −D log 256). Each
contestant runs in its own subprocess (`bench.quality_contestants`).
Prints JSON lines and a table.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from bench import SHARED_TFDS, cpu_model
from bench import isa
from bench import machine
from bench.common import IMPLS
from bench.quality_contestants import DATA, TARGET, Curve, data_shape
from bench.quality_contestants import run_config, run_one
from bench import quality_curve

# Moved to bench/quality_curve.py (the curves' list, CSV and plot, and the
# row labels); still importable here.
_label = quality_curve.row_label
curve_points = quality_curve.curve_points
write_curve_csv = quality_curve.write_curve_csv
COLOURS = quality_curve.COLOURS
plot_curves = quality_curve.plot_curves


# The levers of `mnist_fast` (docs/benchmarks/quality.md), each added
# alone to BASELINE (the paper's plain recipe on mnist_fast's architecture).
# Real NVP's own structure: mnist_fast ships Glow's step since 2026-12-06;
# the ablation and the structure runs start from the paper's model.
REAL_NVP_STRUCTURE = {"prior": "gaussian", "actnorm": False,
                      "permutation": "none"}
BASELINE = dict(REAL_NVP_STRUCTURE, **{
    "ema_decay": 0.0, "optimizer": "adam", "learning_rate": 1e-3,
    "warmup_steps": 0, "lr_decay": "none", "decay_steps": 0,
    "lr_decay_rate": 0.0, "bn_lag": 0.0, "dequantizer": "none"})
ABLATION = {
    "ema": {"ema_decay": 0.999},
    "warmup+cosine lr 2e-3": {"learning_rate": 2e-3, "warmup_steps": 200,
                              "lr_decay": "cosine", "decay_steps": 3500,
                              "lr_decay_rate": 0.05},
    "adamax": {"optimizer": "adamax", "learning_rate": 2e-3},
    "bn_lag 0.95": {"bn_lag": 0.95},
    "variational dequantization": {"dequantizer": "variational"},
}


# Issue 17's options, each alone on mnist_fast's recipe with Real NVP's
# structure, then Glow's whole step (mnist_fast as shipped since
# 2026-12-06): the learned priors and Glow's steps at (nearly) equal
# parameters
# (the MADE's widths keep it within 10% of the 0.42M model:
# `structure_runs` checks that).
STRUCTURE = {
    "split prior": {"prior": "split"},
    "MADE prior (hidden 48, 48)": {"prior": "made",
                                   "made_hidden_units": [48, 48]},
    "actnorm": {"actnorm": True},
    "reverse permutation": {"permutation": "reverse"},
    "1x1 convolution": {"permutation": "conv1x1"},
    "Glow step (actnorm + 1x1 conv + split prior)": {
        "actnorm": True, "permutation": "conv1x1", "prior": "split"},
}


# The schedule keyed to the time budget (issue 29), for configs whose
# schedule counts steps: warmup over the first 5% of the budget (mnist_fast's
# 200 warmup steps were 5% of its 3,800 steps on the fast machine), cosine to
# lr_decay_rate x the peak at the budget's end.
TIME_KEYED = {"warmup_steps": 0, "warmup_fraction": 0.05,
              "lr_decay": "cosine_to_budget", "decay_steps": 0}


def time_keyed_runs(names):
  """(label, config name, overrides): each step-keyed config of `names`
  with `TIME_KEYED` (configs already keyed to the budget are skipped)."""
  from training import configs  # pylint: disable=import-outside-toplevel
  return [(f"realnvp-train --config {name}, schedule keyed to the budget "
           f"(warmup 5%, cosine to its end)", name, dict(TIME_KEYED))
          for name in names
          if not configs.time_keyed_schedule(configs.load(name))]


def structure_runs(config="mnist_fast", tolerance=0.10):
  """(label, config name, overrides): the config as shipped, then each
  `STRUCTURE` option; a `ValueError` if one is not within `tolerance` of
  the shipped parameter count."""
  reference = config_parameters(config, REAL_NVP_STRUCTURE)
  runs = [(f"{config} recipe, Real NVP structure (gaussian prior, no Glow "
           f"steps)", config, dict(REAL_NVP_STRUCTURE))]
  for label, overrides in STRUCTURE.items():
    overrides = dict(REAL_NVP_STRUCTURE, **overrides)
    count = config_parameters(config, overrides)
    if abs(count - reference) > tolerance * reference:
      raise ValueError(f"{label}: {count:,} parameters, not within "
                       f"{tolerance:.0%} of {config}'s {reference:,}")
    runs.append((f"+ {label}", config, dict(overrides)))
  return runs


def ablation_runs(config="mnist_fast"):
  """(label, config name, overrides) of the ablation: baseline, each lever
  alone, all levers (later levers win where two set the same key: adamax's
  learning rate equals the schedule's peak)."""
  runs = [("baseline (paper recipe)", config, dict(BASELINE))]
  everything = dict(BASELINE)
  for label, lever in ABLATION.items():
    runs.append((f"+ {label}", config, dict(BASELINE, **lever)))
    everything.update(lever)
  runs.append(("all levers", config, everything))
  return runs


def config_parameters(name, overrides=None, shape=None):
  """Parameter count of the model a config describes, on MNIST (or images
  of `shape`)."""
  from training import configs  # pylint: disable=import-outside-toplevel
  from training import train  # pylint: disable=import-outside-toplevel
  config = dict(configs.load(name), **(overrides or {}))
  return train.build_model(config, shape or data_shape("mnist"),
                           10).count_params()


def _parser():
  """The command line of `python -m bench.quality` (and the hidden `--one`
  / `--index` of a contestant's child process)."""
  p = argparse.ArgumentParser(prog="python -m bench.quality",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--minutes", type=float, default=10.0)
  p.add_argument("--impls", default="ours",
                 help=f"comma list of {', '.join(IMPLS)}")
  p.add_argument("--checkerboard", default="masked,squeezed",
                 help="comma list: our checkerboard couplings to train")
  p.add_argument("--mixed_precision", default="none",
                 help="comma list: none (float32), mixed_bfloat16, "
                      "mixed_float16 (ours only)")
  p.add_argument("--data_dir", default=SHARED_TFDS,
                 help="tfds data_dir holding a prepared mnist")
  p.add_argument("--params", type=float, default=None,
                 help="parameter count the --impls contestants are sized to "
                      f"(default: the first config's, else {TARGET:g})")
  p.add_argument("--configs", default="",
                 help="comma list of training configs (realnvp-train "
                      "--config NAME) to run as contestants")
  p.add_argument("--ablation", action="store_true",
                 help="also run mnist_fast's levers one at a time on its "
                      "baseline, and all together")
  p.add_argument("--structure", action="store_true",
                 help="also run mnist_fast with each learned prior and Glow "
                      "step option (issue 17), at equal parameters")
  p.add_argument("--baseline", action="store_true",
                 help="also run mnist_fast's architecture with the paper's "
                      "plain recipe (the ablation's first row)")
  p.add_argument("--peer_lr", type=float, default=1e-3,
                 help="Adam learning rate of the --impls contestants (lower "
                      "it for a peer that diverges, and say so)")
  p.add_argument("--iw_samples", type=int, default=None,
                 help="importance-weighted test draws of the config runs "
                      "(default: each config's test_iw_samples)")
  p.add_argument("--keep_runs", default=None,
                 help="keep the config contestants' run directories here "
                      "(one per contestant: checkpoints, metrics.json)")
  p.add_argument("--isa", default=isa.NATIVE,
                 help="one instruction-set cap for every contestant's "
                      "process (bench.isa: native, avx2, avx512_core, ...), "
                      "checked with a matmul and printed in the header")
  p.add_argument("--data", default="mnist", choices=DATA,
                 help="mnist (tfds, --data_dir) or photos (bench.photos: "
                      "colour patches of scikit-image's photos, no download)")
  p.add_argument("--photos_dir", default=None,
                 help="where bench.photos caches its PNG folders (default: "
                      "~/.cache/tfp-realnvp)")
  p.add_argument("--time_keyed", action="store_true",
                 help="also run each step-keyed --configs config with its "
                      "schedule keyed to the time budget (TIME_KEYED)")
  p.add_argument("--curve_minutes", type=float, default=0.0,
                 help="keep a weight copy every this many minutes of "
                      "training and score it afterwards (0 = off)")
  p.add_argument("--curve_images", type=int, default=1000,
                 help="test images each curve point is scored on")
  p.add_argument("--curve_csv", default=None,
                 help="write every curve point here (label, minutes, steps, "
                      "bits/dim)")
  p.add_argument("--curve_png", default=None,
                 help="plot bits/dim against minutes here")
  p.add_argument("--one", help=argparse.SUPPRESS)
  p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
  return p


def _child(args):
  """`--one`: train the one contestant of the JSON spec in this process and
  print its row."""
  spec = json.loads(args.one)
  if spec[0] == "train":
    _, label, name, overrides = spec
    keep = (os.path.join(args.keep_runs, f"{args.index:02d}-{name}")
            if args.keep_runs else None)
    row = run_config(name, overrides, args.minutes, args.data_dir,
                     args.iw_samples, keep, data=args.data,
                     photos_root=args.photos_dir, curve=_curve(args))
    row["label"] = label
  else:
    impl, checkerboard, precision = spec
    row = run_one(impl, args.minutes, args.data_dir, checkerboard,
                  precision, args.params or TARGET, args.peer_lr,
                  data=args.data, photos_root=args.photos_dir,
                  curve=_curve(args))
  print(json.dumps(row), flush=True)


def _runs(p, args):
  """The contestants' specs in run order: the config runs (`--configs`,
  `--ablation`/`--baseline`, `--structure`) then `--impls`; sets
  `args.params` from the first config run when it is not given."""
  names = [name for name in args.configs.split(",") if name]
  trained = [("train", f"realnvp-train --config {name}", name, {})
             for name in names]
  if args.time_keyed:
    trained += [("train", label, name, overrides) for label, name, overrides
                in time_keyed_runs(names)]
  if args.ablation or args.baseline:
    trained += [("train", label, name, overrides) for label, name, overrides
                in ablation_runs()[:None if args.ablation else 1]]
  if args.structure:
    trained += [("train", label, name, overrides) for label, name, overrides
                in structure_runs()]
  if args.params is None:
    args.params = (config_parameters(*trained[0][2:],
                                     shape=data_shape(args.data))
                   if trained else TARGET)
  runs = []
  for impl in args.impls.split(",") if args.impls != "none" else []:
    if impl not in IMPLS:
      p.error(f"--impls: unknown {impl!r}; expected some of {list(IMPLS)}")
    if impl != "ours":
      runs.append((impl, None, None))
      continue
    for checkerboard in args.checkerboard.split(","):
      for precision in args.mixed_precision.split(","):
        runs.append((impl, checkerboard,
                     None if precision == "none" else precision))
  return trained + runs


def _run(index, run, args):
  """The row of contestant `run`, trained in a child process."""
  proc = subprocess.run(
      [sys.executable, "-m", "bench.quality", "--one", json.dumps(run),
       "--minutes", str(args.minutes), "--data_dir", args.data_dir,
       "--params", str(args.params), "--index", str(index),
       "--peer_lr", str(args.peer_lr), "--data", args.data,
       "--curve_minutes", str(args.curve_minutes),
       "--curve_images", str(args.curve_images)] + (
           ["--photos_dir", args.photos_dir] if args.photos_dir else []) + (
           ["--keep_runs", args.keep_runs] if args.keep_runs else []) + (
           [] if args.iw_samples is None else
           ["--iw_samples", str(args.iw_samples)]),
      capture_output=True, text=True, check=False,
      env=isa.environment(args.isa))
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if lines and not proc.returncode:
    return dict(json.loads(lines[-1]), isa=args.isa)
  if run[0] == "train":
    return {"impl": "realnvp-train", "label": run[1], "config": run[2],
            "error": proc.stderr.strip().splitlines()[-1:]}
  return {"impl": run[0], "checkerboard": run[1],
          "mixed_precision": run[2],
          "error": proc.stderr.strip().splitlines()[-1:]}


def _curve(args):
  """The `Curve` of a contestant's child process."""
  return Curve(args.curve_minutes, args.curve_images)


def _table(rows, peer_lr, data="mnist", isa_setting=isa.NATIVE):
  test = ("MNIST test (10,000 images)" if data == "mnist" else
          "photo patches of bench.photos (32x32x3, 5,000 test patches)")
  print(f"\n{time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} "
        f"cores, ISA {isa_setting} ({isa.describe_settings(isa_setting)}); "
        f"batch 64, {test}; peers: Adam {peer_lr:g}")
  print("\n| contestant | params | budget min | train s | steps | images "
        "seen | test bits/dim | IW bits/dim (K, images) | command s |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {_label(r)} | error: {r['error']} ||||||||")
      continue
    bound = " (variational bound)" if r.get("bound", "").startswith(
        "variational") else ""
    iw = (f"{r['test_iw_bits_per_dim']:.3f} ({r['iw_samples']}, "
          f"{r.get('iw_images') or r.get('test_images')})"
          if r.get("test_iw_bits_per_dim") is not None else "–")
    # realnvp-train's whole command (set-up to metrics.json): the budget
    # must hold end to end.
    total = (f"{r['phase_seconds']['total']:.0f}"
             if r.get("phase_seconds") else "–")
    print(f"| {_label(r)} | {r['parameters']:,} | {r['minutes']:g} | "
          f"{r['train_seconds']:.0f} | {r['steps']} | {r['images_seen']:,} | "
          f"{r['test_bits_per_dim']:.3f}{bound} | {iw} | {total} |")


def main(argv=None):
  p = _parser()
  args = p.parse_args(argv)
  if args.one:
    _child(args)
    return 0
  try:
    args.isa = isa.single(args.isa)
  except ValueError as e:
    p.error(f"--isa: {e}")
  if args.data == "mnist" and not os.path.isdir(
      os.path.join(args.data_dir, "mnist")):
    p.error(f"no tfds mnist under {args.data_dir}; pass --data_dir")
  if args.data == "photos":
    # Written once before any contestant (cached by content hash).
    from bench import photos  # pylint: disable=import-outside-toplevel
    _, folder = photos.prepare(args.photos_dir)
    print(f"photo patches: {folder}", file=sys.stderr, flush=True)
  runs = _runs(p, args)
  described = machine.describe(peaks=False)
  print("\n".join(isa.header_lines(described, isa.check([args.isa]))) + "\n",
        flush=True)
  rows = []
  for index, run in enumerate(runs):
    # One after the other: never two at once.
    row = _run(index, run, args)
    print(json.dumps(row), flush=True)
    rows.append(row)
  _table(rows, args.peer_lr, args.data, args.isa)
  if args.curve_csv:
    write_curve_csv(rows, args.curve_csv)
  if args.curve_png:
    plot_curves(rows, args.curve_png)
  return 0


if __name__ == "__main__":
  sys.exit(main())
