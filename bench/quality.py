"""Quality per wall-clock time: MNIST test bits/dim after a fixed budget.

    python -m bench.quality --minutes 10     # ours masked, ours squeezed
    python -m bench.quality --minutes 10 --impls ours,nf_glow,tfp_glow
    python -m bench.quality --minutes 10 --checkerboard squeezed \
        --mixed_precision none,mixed_bfloat16

Contestants (`--impls`): `ours` once per `--checkerboard` and
`--mixed_precision`, normflows Glow / Real NVP (`nf_glow`, `nf_realnvp`,
`bench.torch_peers`, fed the same batches as numpy) and TFP's `tfp_glow`.
Every contestant gets the same data (`training.data.load("mnist")` from the
tfds copy in `../shared/data/tfds`: dequantized pixels in [0, 256), batch
64, shuffled), the same optimizer (Adam 1e-3) and ~0.5M parameters (the
bench's `small` preset), and train for `--minutes` of wall-clock time from
process start to the last step (tracing included: it is the user's time).
Then the full 10,000-image test split is scored with the same stateless
dequantization noise: bits/dim = −log p(x) / (D ln 2) in pixel units (Glow
models x/256 − 0.5, so its log-density is shifted by −D log 256). Each
contestant runs in its own subprocess. Prints JSON lines and a table.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

from bench import SHARED_TFDS, cpu_model, models
from bench.__main__ import IMPLS

SHAPE = (28, 28, 1)
TARGET = 0.5e6
BATCH = 64


def run_one(impl, minutes, data_dir, checkerboard="masked",
            mixed_precision=None):
  start = time.perf_counter()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from training import data  # pylint: disable=import-outside-toplevel
  pipelines = data.load("mnist", batch_size=BATCH, seed=0,
                        data_dir=data_dir, download=False)
  budget = 60.0 * minutes
  dims = float(np.prod(SHAPE))
  if impl == "ours":
    import keras  # pylint: disable=import-outside-toplevel
    config = {"checkerboard": checkerboard}
    if mixed_precision:
      config["mixed_precision"] = mixed_precision
    model, params, _ = models.ours(SHAPE, TARGET, **config)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))

    class Budget(keras.callbacks.Callback):
      steps = 0

      def on_train_batch_end(self, batch, logs=None):
        Budget.steps += 1
        if time.perf_counter() - start >= budget:
          self.model.stop_training = True

    model.fit(pipelines.train.repeat(), epochs=10 ** 6, steps_per_epoch=100,
              callbacks=[Budget()], verbose=0)
    steps = Budget.steps
    nll = tf.function(lambda x: -model.log_prob(x))
  elif impl in ("nf_glow", "nf_realnvp"):
    from bench import torch_peers  # pylint: disable=import-outside-toplevel
    torch = torch_peers.configure_torch()
    flow, params, _ = torch_peers.build_flow(impl, SHAPE, TARGET)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)

    def model_space(x):
      return torch_peers.to_model_space(torch, x.numpy())

    steps = 0
    for x in pipelines.train.repeat():
      optimizer.zero_grad(set_to_none=True)
      torch.mean(torch_peers.pixel_nll(flow, model_space(x), SHAPE)).backward()
      optimizer.step()
      steps += 1
      if time.perf_counter() - start >= budget:
        break

    def nll(x):
      with torch.no_grad():
        return tf.constant(torch_peers.pixel_nll(flow, model_space(x),
                                                 SHAPE).numpy())
  else:
    dist, _, params, _ = models.glow(SHAPE, TARGET)
    step = models.glow_train_step(dist, SHAPE)

    steps = 0
    for x in pipelines.train.repeat():
      step(x)
      steps += 1
      if time.perf_counter() - start >= budget:
        break
    nll = tf.function(
        lambda x: -models.glow_log_prob_pixels(dist, x, SHAPE))
  train_seconds = time.perf_counter() - start
  total, count, finite = 0.0, 0, True
  for x in pipelines.test:
    values = nll(x).numpy()
    finite = finite and bool(np.all(np.isfinite(values)))
    total += float(np.sum(values))
    count += len(values)
  return {"impl": impl, "checkerboard": checkerboard if impl == "ours" else
          None, "mixed_precision": mixed_precision if impl == "ours" else
          None, "parameters": int(params), "minutes": minutes,
          "train_seconds": train_seconds, "steps": steps,
          "images_seen": steps * BATCH, "test_images": count,
          "all_test_log_probs_finite": finite,
          "test_bits_per_dim": total / count / (dims * math.log(2.0))}


def _label(row):
  parts = [row["impl"], row.get("checkerboard"), row.get("mixed_precision")]
  return " ".join(p for p in parts if p)


def main(argv=None):
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
  p.add_argument("--one", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.one:
    impl, checkerboard, precision = json.loads(args.one)
    print(json.dumps(run_one(impl, args.minutes, args.data_dir, checkerboard,
                             precision)), flush=True)
    return 0
  if not os.path.isdir(os.path.join(args.data_dir, "mnist")):
    p.error(f"no tfds mnist under {args.data_dir}; pass --data_dir")
  runs = []
  for impl in args.impls.split(","):
    if impl not in IMPLS:
      p.error(f"--impls: unknown {impl!r}; expected some of {list(IMPLS)}")
    if impl != "ours":
      runs.append((impl, None, None))
      continue
    for checkerboard in args.checkerboard.split(","):
      for precision in args.mixed_precision.split(","):
        runs.append((impl, checkerboard,
                     None if precision == "none" else precision))
  rows = []
  for run in runs:  # one after the other: never two at once
    proc = subprocess.run(
        [sys.executable, "-m", "bench.quality", "--one", json.dumps(run),
         "--minutes", str(args.minutes), "--data_dir", args.data_dir],
        capture_output=True, text=True, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    row = (json.loads(lines[-1]) if lines and not proc.returncode else
           {"impl": run[0], "checkerboard": run[1], "mixed_precision": run[2],
            "error": proc.stderr.strip().splitlines()[-1:]})
    print(json.dumps(row), flush=True)
    rows.append(row)
  print(f"\n{time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} "
        "cores; batch 64, Adam 1e-3, MNIST test (10,000 images)")
  print("\n| contestant | params | budget min | train s | steps | images "
        "seen | test bits/dim |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {_label(r)} | error: {r['error']} ||||||")
      continue
    print(f"| {_label(r)} | {r['parameters']:,} | {r['minutes']:g} | "
          f"{r['train_seconds']:.0f} | {r['steps']} | {r['images_seen']:,} | "
          f"{r['test_bits_per_dim']:.3f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
