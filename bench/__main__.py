"""Benchmark suite: ours vs TFP's `tfb.Glow` at matched parameter count.

    python -m bench                                  # mnist + cifar, small preset
    python -m bench --workloads mnist --presets small,medium --repeats 3
    python -m bench --only ours                      # skip the peer

Every figure runs in its own subprocess (so peak RSS is that model's) and is
the median of `--repeats` timed repeats after a warm-up. Prints one JSON line
per measurement, then a markdown table with the ratio ours / peer.

Figures: training images/s (a full optimizer step: forward, log-det,
backward, Adam), `log_prob` images/s in inference, sampling images/s,
parameter count, peak RSS, and the machine's float32 matmul GFLOP/s measured
in the same run (the practical peak).
"""

import argparse
import json
import os
import subprocess
import sys
import time

from bench import cpu_model

WORKLOADS = {"mnist": (28, 28, 1), "cifar": (32, 32, 3)}
PRESETS = {"small": 0.5e6, "medium": 3e6}
BATCH = 64


def _ours(shape, target):
  """A RealNVP near `target` parameters (filters chosen by search)."""
  import tfp_realnvp  # pylint: disable=import-outside-toplevel
  scales = 3 if shape[0] % 4 == 0 and shape[0] // 4 >= 2 else 2
  best = None
  for filters in range(4, 257, 2):
    model = tfp_realnvp.RealNVP(shape, num_scales=scales, num_res_blocks=2,
                                num_filters=filters)
    n = model.count_params()
    if best is None or abs(n - target) < abs(best[1] - target):
      best = (model, n, filters)
    if n > target:
      break
  return best


def _glow(shape, target):
  """A `tfb.Glow` (2 blocks of 8 steps) whose conditioner width matches `target`."""
  import tensorflow_probability as tfp  # pylint: disable=import-outside-toplevel
  tfb = tfp.bijectors
  best = None
  for width in range(8, 513, 4):
    def coupling(input_shape, w=width):
      return tfb.GlowDefaultNetwork(input_shape, num_hidden=w)

    glow = tfb.Glow(output_shape=shape, num_glow_blocks=2,
                    num_steps_per_block=8, coupling_bijector_fn=coupling,
                    exit_bijector_fn=tfb.GlowDefaultExitNetwork)
    n = sum(int(v.shape.num_elements()) for v in glow.trainable_variables)
    if best is None or abs(n - target) < abs(best[1] - target):
      best = (glow, n, width)
    if n > target:
      break
  return best


def _timed(fn, repeats, steps):
  fn()  # warm-up (tracing)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      fn()
    times.append((time.perf_counter() - start) / steps)
  times.sort()
  return times[len(times) // 2]


def _peak_rss_mb():
  import resource  # pylint: disable=import-outside-toplevel
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(spec):
  """One measurement in this process; returns a dict."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  shape = tuple(WORKLOADS[spec["workload"]])
  target = PRESETS[spec["preset"]]
  repeats, steps = spec["repeats"], spec["steps"]
  rng = np.random.default_rng(0)
  x = tf.constant(rng.uniform(0, 256, (BATCH,) + shape), tf.float32)
  out = dict(spec)
  if spec["impl"] == "ours":
    import keras  # pylint: disable=import-outside-toplevel
    model, params, width = _ours(shape, target)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  jit_compile=spec["jit"])
    data = tf.data.Dataset.from_tensors(x).repeat()
    iterator = iter(data)
    model.make_train_function()
    train_fn = model.train_function

    def train():
      train_fn(iterator)
    log_prob = tf.function(lambda t: model.log_prob(t))
    sample = tf.function(lambda: model.sample(BATCH, seed=(1, 2)))
  else:
    import tf_keras  # pylint: disable=import-outside-toplevel
    import tensorflow_probability as tfp  # pylint: disable=import-outside-toplevel
    tfd = tfp.distributions
    glow, params, width = _glow(shape, target)
    dist = tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), [int(np.prod(shape))]), glow)
    variables = glow.trainable_variables
    optimizer = tf_keras.optimizers.Adam(1e-3)
    # Glow models [0, 1] pixels shifted to [-0.5, 0.5]; same data scale.
    scaled = x / 256.0 - 0.5

    @tf.function(jit_compile=spec["jit"])
    def step(t):
      with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(dist.log_prob(t))
      grads = tape.gradient(loss, variables)
      optimizer.apply_gradients(zip(grads, variables))
      return loss

    def train():
      step(scaled)
    log_prob = tf.function(lambda t: dist.log_prob(t / 256.0 - 0.5))
    sample = tf.function(lambda: dist.sample(BATCH, seed=(1, 2)))
  out["parameters"] = int(params)
  out["width"] = int(width)
  sec = _timed(train, repeats, steps)
  out["train_images_per_second"] = BATCH / sec
  out["log_prob_images_per_second"] = BATCH / _timed(lambda: log_prob(x),
                                                     repeats, steps)
  samples = sample()
  out["sample_images_per_second"] = BATCH / _timed(sample, repeats, steps)
  out["samples_finite_fraction"] = float(np.mean(np.all(
      np.isfinite(np.reshape(samples.numpy(), (BATCH, -1))), axis=1)))
  out["peak_rss_mb"] = _peak_rss_mb()
  return out


def matmul_gflops(n=2048, repeats=5):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  mm = tf.function(lambda: tf.matmul(a, b))
  mm().numpy()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    mm().numpy()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best / 1e9


def _machine():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return {"cpu": cpu_model(), "cores": os.cpu_count(), "tensorflow": tf.__version__,
          "intra_op_threads":
              tf.config.threading.get_intra_op_parallelism_threads(),
          "inter_op_threads":
              tf.config.threading.get_inter_op_parallelism_threads(),
          "matmul_gflops": matmul_gflops()}


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m bench",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--workloads", default="mnist,cifar")
  p.add_argument("--presets", default="small")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--steps", type=int, default=5,
                 help="steps per timed repeat")
  p.add_argument("--only", choices=("ours", "peer"), default=None)
  p.add_argument("--jit", default="false,true",
                 help="jit_compile settings to measure")
  p.add_argument("--one", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.one:
    print(json.dumps(run_one(json.loads(args.one))), flush=True)
    return 0
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  print(json.dumps({"machine": _machine()}), flush=True)
  impls = [args.only] if args.only else ["ours", "peer"]
  rows = []
  for workload in args.workloads.split(","):
    for preset in args.presets.split(","):
      for impl in impls:
        for jit in (j == "true" for j in args.jit.split(",")):
          spec = {"workload": workload, "preset": preset, "impl": impl,
                  "jit": jit, "repeats": args.repeats, "steps": args.steps}
          proc = subprocess.run(
              [sys.executable, "-m", "bench", "--one", json.dumps(spec)],
              capture_output=True, text=True, check=False)
          lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
          if proc.returncode or not lines:
            row = dict(spec, error=proc.stderr.strip().splitlines()[-1:])
          else:
            row = json.loads(lines[-1])
          print(json.dumps(row), flush=True)
          rows.append(row)
  _table(rows)
  return 0


def _table(rows):
  keys = ("train_images_per_second", "log_prob_images_per_second",
          "sample_images_per_second")
  print("\n| workload | preset | impl | jit | params | train img/s | "
        "log_prob img/s | sample img/s | finite samples | peak RSS MB |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {r['workload']} | {r['preset']} | {r['impl']} | {r['jit']} "
            f"| error: {r['error']} |||||")
      continue
    print(f"| {r['workload']} | {r['preset']} | {r['impl']} | {r['jit']} | "
          f"{r['parameters']:,} | " +
          " | ".join(f"{r[k]:.0f}" for k in keys) +
          f" | {r['samples_finite_fraction']:.2f} | {r['peak_rss_mb']:.0f} |")
  ok = [r for r in rows if "error" not in r]
  for workload in {r["workload"] for r in ok}:
    for preset in {r["preset"] for r in ok}:
      def best(impl, key):
        vals = [r[key] for r in ok if r["impl"] == impl and
                r["workload"] == workload and r["preset"] == preset]
        return max(vals) if vals else None
      ratios = []
      for key in keys:
        a, b = best("ours", key), best("peer", key)
        if a and b:
          ratios.append(f"{key.split('_images')[0]} {a / b:.2f}x")
      if ratios:
        print(f"\nours/peer ({workload}, {preset}, best of jit settings): "
              + ", ".join(ratios))


if __name__ == "__main__":
  sys.exit(main())
