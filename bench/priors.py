"""What the learned priors and Glow steps cost (issue 17): train-step time,
log-density time and sampling time per option, on mnist_fast's architecture
(28×28×1, ~0.42M parameters, batch 64), relative to the Gaussian prior.

    python -m bench.priors [--passes 3] [--variants gaussian,split,made,...]

Sampling from the MADE prior is sequential over the coarsest latent's
dimensions (196 for MNIST's 7×7×4): `decode` runs the MADE 197 times. Every
variant runs in its own process, once per pass, interleaved (pass 1: all
variants, pass 2: all variants, ...); each figure is the median over the
passes, each ratio the median of the same-pass ratios to 'gaussian'. Times
are of traced `tf.function`s (what `fit` and the export run), after one
warm-up call.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench import cpu_model

VARIANTS = {
    "gaussian": {},
    "split": {"prior": "split"},
    "made": {"prior": "made", "made_hidden_units": [48, 48]},
    "made-512": {"prior": "made", "made_hidden_units": [512, 512]},
    "actnorm": {"actnorm": True},
    "conv1x1": {"permutation": "conv1x1"},
    "glow": {"actnorm": True, "permutation": "conv1x1", "prior": "split"},
}
BATCH = 64


def measure(variant, repeats=20):
  """Seconds per train step, per log-density batch, per 64-sample decode."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from training import configs  # pylint: disable=import-outside-toplevel
  from training import train  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(0)
  from bench import quality  # pylint: disable=import-outside-toplevel
  config = dict(configs.load("mnist_fast"))
  config.update(quality.REAL_NVP_STRUCTURE)  # the variants start from it
  config.update(VARIANTS[variant])
  model = train.build_model(config, (28, 28, 1), 10)
  x = np.random.default_rng(0).uniform(0, 256, (BATCH, 28, 28, 1)).astype(
      "float32")
  if model.actnorm:
    model.initialize_actnorm(x)
  import tfp_realnvp  # pylint: disable=import-outside-toplevel
  model.compile(tfp_realnvp.optimizers.Adam(1e-3))
  batches = tf.data.Dataset.from_tensors(x).repeat()
  # score_statistics=False: fit's closing inference pass is not a step.
  model.fit(batches, steps_per_epoch=2, epochs=1, verbose=0,
            score_statistics=False)  # traces
  start = time.perf_counter()
  model.fit(batches, steps_per_epoch=repeats, epochs=1, verbose=0,
            score_statistics=False)
  step = (time.perf_counter() - start) / repeats
  log_prob = tf.function(lambda v: model.log_prob(v))
  log_prob(x)
  start = time.perf_counter()
  for _ in range(repeats):
    log_prob(x).numpy()
  density = (time.perf_counter() - start) / repeats
  decode = tf.function(lambda e: model.decode(e))
  eps = tf.random.stateless_normal([BATCH, model.event_size], seed=(1, 2))
  samples = decode(0.7 * eps)
  finite = int(np.sum(np.all(np.isfinite(samples.numpy()), axis=(1, 2, 3))))
  start = time.perf_counter()
  for _ in range(max(1, repeats // 4)):
    decode(0.7 * eps).numpy()
  sample = (time.perf_counter() - start) / max(1, repeats // 4)
  return {"variant": variant, "overrides": VARIANTS[variant],
          "parameters": int(model.count_params()),
          "train_step_ms": 1000 * step, "log_prob_ms": 1000 * density,
          "sample_64_ms": 1000 * sample, "finite_samples_of_64": finite}


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m bench.priors",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--passes", type=int, default=3)
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--one", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.one:
    print(json.dumps(measure(args.one)), flush=True)
    return 0
  variants = args.variants.split(",")
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown or "gaussian" not in variants:
    p.error(f"--variants: needs 'gaussian' and some of {list(VARIANTS)}; "
            f"unknown: {unknown}")
  passes = []
  for index in range(args.passes):  # interleaved, one process at a time
    rows = {}
    for variant in variants:
      proc = subprocess.run([sys.executable, "-m", "bench.priors", "--one",
                             variant], capture_output=True, text=True,
                            check=False)
      lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
      if proc.returncode or not lines:
        raise RuntimeError(f"{variant}: {proc.stderr.strip()[-2000:]}")
      rows[variant] = json.loads(lines[-1])
      print(json.dumps(dict(rows[variant], **{"pass": index})), flush=True)
    passes.append(rows)
  print(f"\n{time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} "
        f"cores; mnist_fast architecture, batch {BATCH}, float32; median of "
        f"{args.passes} interleaved passes (ratio: median of same-pass "
        "ratios to gaussian)")
  print("\n| variant | params | train step ms (× gaussian) | log_prob ms "
        "(×) | 64 samples ms (×) | finite samples |")
  print("|---|---|---|---|---|---|")
  for variant in variants:
    cells = []
    for key in ("train_step_ms", "log_prob_ms", "sample_64_ms"):
      value = statistics.median(r[variant][key] for r in passes)
      ratio = statistics.median(r[variant][key] / r["gaussian"][key]
                                for r in passes)
      cells.append(f"{value:.1f} ({ratio:.2f}×)")
    finite = min(r[variant]["finite_samples_of_64"] for r in passes)
    print(f"| {variant} | {passes[0][variant]['parameters']:,} | "
          f"{' | '.join(cells)} | {finite}/64 |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
