"""Quality per wall-clock time: MNIST test bits/dim after a fixed budget.

    python -m bench.quality --minutes 10            # ours, then tfb.Glow
    python -m bench.quality --minutes 2 --impls ours

Both contestants get the same data (`training.data.load("mnist")` from the
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

from bench import SHARED_TFDS, models

SHAPE = (28, 28, 1)
TARGET = 0.5e6
BATCH = 64


def run_one(impl, minutes, data_dir):
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
    model, params, _ = models.ours(SHAPE, TARGET)
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
  return {"impl": impl, "parameters": int(params), "minutes": minutes,
          "train_seconds": train_seconds, "steps": steps,
          "images_seen": steps * BATCH, "test_images": count,
          "all_test_log_probs_finite": finite,
          "test_bits_per_dim": total / count / (dims * math.log(2.0))}


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m bench.quality",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--minutes", type=float, default=10.0)
  p.add_argument("--impls", default="ours,peer")
  p.add_argument("--data_dir", default=SHARED_TFDS,
                 help="tfds data_dir holding a prepared mnist")
  p.add_argument("--one", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.one:
    print(json.dumps(run_one(args.one, args.minutes, args.data_dir)),
          flush=True)
    return 0
  if not os.path.isdir(os.path.join(args.data_dir, "mnist")):
    p.error(f"no tfds mnist under {args.data_dir}; pass --data_dir")
  rows = []
  for impl in args.impls.split(","):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.quality", "--one", impl, "--minutes",
         str(args.minutes), "--data_dir", args.data_dir],
        capture_output=True, text=True, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    row = (json.loads(lines[-1]) if lines and not proc.returncode else
           {"impl": impl, "error": proc.stderr.strip().splitlines()[-1:]})
    print(json.dumps(row), flush=True)
    rows.append(row)
  print("\n| impl | params | budget min | steps | images seen | "
        "test bits/dim |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {r['impl']} | error: {r['error']} |||||")
      continue
    print(f"| {r['impl']} | {r['parameters']:,} | {r['minutes']:g} | "
          f"{r['steps']} | {r['images_seen']:,} | "
          f"{r['test_bits_per_dim']:.3f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
