"""Benchmark suite: ours vs TFP's `tfb.Glow` at matched parameter count.

    python -m bench                                  # mnist + cifar, small
    python -m bench --presets small,medium,paper     # + ~3M and the paper's
                                                     #   CIFAR-10 model (ours)
    python -m bench --scaling                        # step time vs side, batch
    python -m bench --only ours --jit false          # quick look at ours
    python -m bench --mixed_precision none,mixed_bfloat16   # + ours in bf16
    python -m bench.quality --minutes 10             # bits/dim per wall time
    python -m bench --finiteness --presets small,medium   # sample counts only

Every measurement runs in its own subprocess (so peak RSS is that model's
and nothing is shared between contestants) and is the median of `--repeats`
timed repeats of `--steps` steps after a warm-up. Prints one JSON line per
measurement, then markdown tables with the ratio ours / peer.

Figures per workload (`mnist` 28×28×1, `cifar` 32×32×3; batch 64):
training images/s (a full optimizer step: forward, log-det, backward, Adam;
ours through Keras `fit`'s own train function), `log_prob` images/s in
inference, sampling images/s, the sample counts below, parameters,
peak RSS, FLOPs per image of the forward pass, of sampling and of the
training step (counted from the traced graph) and the achieved GFLOP/s as a fraction of
the float32 matmul peak measured in the same run, exported-SavedModel
`log_prob` latency through TF's C API (the TF Serving loader) for N = 1 and
64, and (ours) the tf.data input pipeline's images/s. `--scaling` times the
training step for image sides 16/32/64 and batches 16..256.

Sample counts (`_sample_counts`) are taken in pixel space before any
clipping, the same way for both: ours from `RealNVP.sample(..., clip=False)`,
the peer's `tfb.Glow` samples y mapped back to pixels as (y + 0.5)·256
(its inverse of the x/256 − 0.5 it models); temperature 1 (a standard normal
latent) on both sides, stateless seeds (1, 2), (1, 3), ... per batch of 64.
Reported: `samples_finite_fraction`, images whose every pixel is finite;
`pixels_nonfinite_fraction`, NaN/±inf pixels among all pixels;
`pixels_out_of_range_fraction`, pixels outside [0, 256) among the finite
ones; `samples_in_range_fraction`, images entirely finite and inside
[0, 256), i.e. that clipping would leave unchanged. In the full bench the
models are untrained (fresh initialisation plus the timed steps on one
uniform-noise batch, 1 + repeats × steps of them) when they are sampled.
`--finiteness` measures only these counts (no timing) for `--batches`
batches, after `--train_steps` Adam steps on that same noise batch (0: the
freshly initialised model; the peer's data-dependent ActNorm then
initialises from its first sampling call); `--flops` adds the graph FLOP
counts, which need no timing either.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import SHARED_TFDS, cpu_model
from bench import models

WORKLOADS = {"mnist": (28, 28, 1), "cifar": (32, 32, 3)}
PRESETS = {"small": 0.5e6, "medium": 3e6, "paper": None}
BATCH = 64
SCALING_SIDES = (16, 32, 64)
SCALING_BATCHES = (16, 32, 64, 128, 256)


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


def _build(spec, shape):
  """(impl handle dict) for the spec; `filters`/`width` pin the size."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if spec["impl"] == "ours":
    import keras  # pylint: disable=import-outside-toplevel
    precision = {"mixed_precision": spec["mixed_precision"]} if spec.get(
        "mixed_precision") else {}
    if spec["preset"] == "paper":
      model, params, size = models.ours(shape, None, **models.PAPER_CIFAR,
                                        **precision)
    elif "size" in spec:
      model, params, size = models.ours(shape, None, num_scales=spec["scales"],
                                        num_res_blocks=models.OURS_BLOCKS,
                                        num_filters=spec["size"], **precision)
    else:
      model, params, size = models.ours(shape, PRESETS[spec["preset"]],
                                        **precision)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  jit_compile=spec["jit"])
    model.make_train_function()
    train_fn = model.train_function

    def train(iterator):
      train_fn(iterator)

    def loss(x):
      return -tf.reduce_mean(model.log_prob(x, training=True))
    return dict(
        params=params, size=size, train=train, loss=loss,
        variables=model.trainable_variables,
        log_prob=lambda x: model.log_prob(x),
        sample=lambda n: model.sample(n, seed=(1, 2)), model=model,
        # Unclipped, pixel space: what the flow itself produces.
        raw_sample=lambda n, seed: model.sample(n, seed=seed, clip=False),
        scales=model.num_scales)
  # A pinned "target" (the scaling sweep) keeps one width for every shape.
  dist, _, params, size = models.glow(shape, spec.get("target") or
                                      PRESETS[spec["preset"]])
  variables = dist.bijector.trainable_variables
  step = models.glow_train_step(dist, shape, jit_compile=spec["jit"])

  def loss(x):
    return -tf.reduce_mean(models.glow_log_prob_pixels(dist, x, shape))

  def train(iterator):
    step(next(iterator))
  return dict(params=params, size=size, train=train, loss=loss,
              variables=variables,
              log_prob=lambda x: models.glow_log_prob_pixels(dist, x, shape),
              sample=lambda n: dist.sample(n, seed=(1, 2)), dist=dist,
              # Glow models y = x/256 − 0.5: back to pixels, unclipped.
              raw_sample=lambda n, seed: (dist.sample(n, seed=seed) + 0.5) *
              256.0)


def _sample_counts(built, batch, batches=1):
  """Finiteness and range of unclipped pixel-space samples (module
  docstring), over `batches` batches of `batch` with seeds (1, 2 + i)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  draw = tf.function(lambda seed: built["raw_sample"](batch, seed))
  images = finite_images = in_range_images = 0
  pixels = nonfinite = finite_pixels = out_of_range = 0
  low, high = float("inf"), -float("inf")
  for i in range(batches):
    s = np.reshape(draw(tf.constant([1, 2 + i], tf.int32)).numpy(),
                   (batch, -1)).astype(np.float64)
    finite = np.isfinite(s)
    inside = finite & (s >= 0.0) & (s < 256.0)
    images += batch
    finite_images += int(np.sum(np.all(finite, axis=1)))
    in_range_images += int(np.sum(np.all(inside, axis=1)))
    pixels += s.size
    nonfinite += int(np.sum(~finite))
    finite_pixels += int(np.sum(finite))
    out_of_range += int(np.sum(finite & ~inside))
    if finite.any():
      low, high = min(low, float(s[finite].min())), max(high,
                                                       float(s[finite].max()))
  return {"samples_counted": images,
          "samples_finite_fraction": finite_images / images,
          "samples_in_range_fraction": in_range_images / images,
          "pixels_nonfinite_fraction": nonfinite / pixels,
          "pixels_out_of_range_fraction": (out_of_range / finite_pixels
                                           if finite_pixels else None),
          "finite_pixel_min": low if finite_pixels else None,
          "finite_pixel_max": high if finite_pixels else None}


def _flops(built, x):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from bench.flops import count_flops  # pylint: disable=import-outside-toplevel
  n = int(x.shape[0])
  forward = tf.function(built["log_prob"]).get_concrete_function(x)

  @tf.function
  def gradient(t):
    with tf.GradientTape() as tape:
      value = built["loss"](t)
    return tape.gradient(value, built["variables"])
  sample = tf.function(lambda: built["sample"](n)).get_concrete_function()
  return (count_flops(forward) / n,
          count_flops(gradient.get_concrete_function(x)) / n,
          count_flops(sample) / n)


def _serving_latency(spec, built, shape, repeats=30):
  """p50 ms of the exported log_prob signature via the C API, N=1 and 64."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from tfp_realnvp import export  # pylint: disable=import-outside-toplevel
  from tfp_realnvp.testing import capi  # pylint: disable=import-outside-toplevel
  out = {}
  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as base:
    if spec["impl"] == "ours":
      path = export.export_for_serving(built["model"], base, name="bench",
                                       warmup_requests=0)
    else:
      path = models.export_glow(built["dist"], shape,
                                os.path.join(base, "glow"))
    with capi.CApiSession(path) as session:
      for n in (1, 64):
        inputs = {"images": rng.uniform(0, 256, (n,) + shape).astype(
            np.float32)}
        signature = ("serving_default" if spec["impl"] == "ours" else
                     f"log_prob_n{n}")
        session.run(signature, inputs, repeat=5)
        _, seconds = session.run(signature, inputs, repeat=repeats,
                                 return_seconds=True)
        out[f"serving_log_prob_p50_ms_n{n}"] = float(
            np.percentile(np.asarray(seconds) * 1e3, 50))
  return out


def _data_throughput(workload, shape, batches=100):
  """Images/s of the training input pipeline (`training.data.load`): the
  real tfds MNIST from ../shared when present, otherwise (and for cifar) a
  folder of PNGs of the workload's shape, decoded by the `folder:` loader."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from training import data  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    if workload == "mnist" and os.path.isdir(os.path.join(SHARED_TFDS,
                                                          "mnist")):
      source = "tfds mnist (../shared)"
      pipelines = data.load("mnist", batch_size=BATCH, data_dir=SHARED_TFDS,
                            download=False)
    else:
      from PIL import Image  # pylint: disable=import-outside-toplevel
      rng = np.random.default_rng(0)
      for i in range(2000):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels.squeeze(-1) if shape[-1] == 1 else pixels
                        ).save(os.path.join(tmp, f"{i}.png"))
      source = f"folder of 2000 PNGs {shape}"
      pipelines = data.load(f"folder:{tmp}", batch_size=BATCH,
                            image_size=shape)
    iterator = iter(pipelines.train.repeat())
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
      next(iterator)
    return {"data_images_per_second":
                batches * BATCH / (time.perf_counter() - start),
            "data_source": source}


def run_one(spec):
  """One measurement in this process; returns a dict."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  shape = tuple(spec.get("shape") or WORKLOADS[spec["workload"]])
  batch = spec.get("batch", BATCH)
  repeats, steps = spec["repeats"], spec["steps"]
  rng = np.random.default_rng(0)
  x = tf.constant(rng.uniform(0, 256, (batch,) + shape), tf.float32)
  iterator = iter(tf.data.Dataset.from_tensors(x).repeat())
  out = dict(spec)
  built = _build(spec, shape)
  out["parameters"] = int(built["params"])
  out["size"] = built["size"]  # ours: per-scale widths; peer: its width
  if "scales" in built:
    out["scales"] = built["scales"]
  if spec.get("finiteness"):
    for _ in range(spec.get("train_steps", 0)):
      built["train"](iterator)
    out.update(_sample_counts(built, batch, spec.get("batches", 1)))
    if spec.get("flops"):
      forward, train, sampling = _flops(built, x)
      out.update(forward_mflops_per_image=forward / 1e6,
                 train_mflops_per_image=train / 1e6,
                 sample_mflops_per_image=sampling / 1e6)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out
  sec = _timed(lambda: built["train"](iterator), repeats, steps)
  out["train_step_ms"] = sec * 1e3
  out["train_images_per_second"] = batch / sec
  if spec.get("train_only"):
    out["peak_rss_mb"] = _peak_rss_mb()
    return out
  log_prob = tf.function(built["log_prob"])
  out["log_prob_images_per_second"] = batch / _timed(lambda: log_prob(x),
                                                     repeats, steps)
  sample = tf.function(lambda: built["sample"](batch))
  out["sample_images_per_second"] = batch / _timed(sample, repeats, steps)
  out.update(_sample_counts(built, batch))  # before any clipping
  out["peak_rss_mb"] = _peak_rss_mb()
  if spec.get("extras"):
    forward, train, sampling = _flops(built, x)
    out["forward_mflops_per_image"] = forward / 1e6
    out["train_mflops_per_image"] = train / 1e6
    out["sample_mflops_per_image"] = sampling / 1e6
    out["train_gflops_per_second"] = train * out[
        "train_images_per_second"] / 1e9
    out.update(_serving_latency(spec, built, shape))
    if spec["impl"] == "ours" and spec.get("workload"):
      out.update(_data_throughput(spec["workload"], shape))
  return out


def matmul_gflops(n=4096, repeats=5, dtype="float32"):
  """GEMM GFLOP/s: the practical compute peak of this machine (float32; the
  bfloat16 one is the peak for mixed-precision rows)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  a = tf.cast(tf.random.normal([n, n]), dtype)
  b = tf.cast(tf.random.normal([n, n]), dtype)
  mm = tf.function(lambda: tf.matmul(a, b))
  mm().numpy()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    mm().numpy()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best / 1e9


def _machine(peaks=True):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tensorflow_probability as tfp  # pylint: disable=import-outside-toplevel
  machine = {"cpu": cpu_model(), "cores": os.cpu_count(),
             "tensorflow": tf.__version__,
             "tensorflow_probability": tfp.__version__,
             "date": time.strftime("%Y-%m-%d"),
             "intra_op_threads":
                 tf.config.threading.get_intra_op_parallelism_threads(),
             "inter_op_threads":
                 tf.config.threading.get_inter_op_parallelism_threads()}
  if peaks:
    machine.update(matmul_gflops=matmul_gflops(),
                   matmul_gflops_bfloat16=matmul_gflops(dtype="bfloat16"))
  return machine


def _run(spec):
  proc = subprocess.run(
      [sys.executable, "-m", "bench", "--one", json.dumps(spec)],
      capture_output=True, text=True, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if proc.returncode or not lines:
    row = dict(spec, error=proc.stderr.strip().splitlines()[-1:])
  else:
    row = json.loads(lines[-1])
  print(json.dumps(row), flush=True)
  return row


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m bench",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--workloads", default="mnist,cifar")
  p.add_argument("--presets", default="small",
                 help="comma list of small (~0.5M), medium (~3M), paper "
                      "(the paper's CIFAR-10 model, ours only)")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--steps", type=int, default=5,
                 help="steps per timed repeat")
  p.add_argument("--only", choices=("ours", "peer"), default=None)
  p.add_argument("--jit", default="false,true",
                 help="jit_compile settings to measure")
  p.add_argument("--mixed_precision", default="none",
                 help="comma list of our s/t-network precisions: none "
                      "(float32), mixed_bfloat16, mixed_float16 (the peer, "
                      "tfb.Glow, fails under a mixed Keras policy and stays "
                      "float32)")
  p.add_argument("--scaling", action="store_true",
                 help="time the training step vs image side and batch")
  p.add_argument("--finiteness", action="store_true",
                 help="only count unclipped samples: finite images and "
                      "pixels outside [0, 256), ours and peer (no timing)")
  p.add_argument("--batches", type=int, default=4,
                 help="--finiteness: batches of 64 samples per model")
  p.add_argument("--train_steps", default="0",
                 help="--finiteness: comma list of Adam steps on the noise "
                      "batch before sampling (0: freshly initialised)")
  p.add_argument("--flops", action="store_true",
                 help="--finiteness: also count graph FLOPs per image of "
                      "log_prob, sample and the training step")
  p.add_argument("--one", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.one:
    print(json.dumps(run_one(json.loads(args.one))), flush=True)
    return 0
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # Counts need no compute peak.
  machine = _machine(peaks=not args.finiteness)
  print(json.dumps({"machine": machine}), flush=True)
  impls = [args.only] if args.only else ["ours", "peer"]
  if args.scaling:
    _scaling(args, impls)
    return 0
  if args.finiteness:
    _finiteness(args, impls)
    return 0
  rows = []
  jits = [j == "true" for j in args.jit.split(",")]
  precisions = args.mixed_precision.split(",")
  for workload in args.workloads.split(","):
    for preset in args.presets.split(","):
      if preset == "paper" and workload != "cifar":
        continue
      ours_params = None
      for impl in impls:
        if preset == "paper" and impl != "ours":
          continue
        # The peer has no mixed-precision path: float32 once.
        for precision, jit in [(mp, jit) for mp in (
            precisions if impl == "ours" else ["none"]) for jit in jits]:
          spec = {"workload": workload, "preset": preset, "impl": impl,
                  "jit": jit, "repeats": args.repeats, "steps": args.steps,
                  # FLOPs, serving latency, data: once per model (float32,
                  # jit off).
                  "extras": (jit == jits[0] and precision == "none" and
                             preset != "paper")}
          if precision != "none":
            spec["mixed_precision"] = precision
          if preset == "paper":
            spec.update(repeats=3, steps=1, train_only=True)
          if impl == "peer" and ours_params:
            spec["target"] = ours_params  # match our size, not the preset's
          row = _run(spec)
          if impl == "ours" and "parameters" in row:
            ours_params = row["parameters"]
          rows.append(row)
  _table(rows, machine)
  return 0


def _finiteness(args, impls):
  rows = []
  for workload in args.workloads.split(","):
    for preset in args.presets.split(","):
      if preset == "paper":
        continue
      for train_steps in [int(t) for t in args.train_steps.split(",")]:
        ours_params = None
        for impl in impls:
          spec = {"workload": workload, "preset": preset, "impl": impl,
                  "jit": False, "repeats": 0, "steps": 0, "finiteness": True,
                  "train_steps": train_steps, "batches": args.batches,
                  "flops": args.flops}
          if impl == "peer" and ours_params:
            spec["target"] = ours_params
          row = _run(spec)
          if impl == "ours" and "parameters" in row:
            ours_params = row["parameters"]
          rows.append(row)
  print("\nUnclipped samples, temperature 1, batch 64 (module docstring):")
  print("\n| workload | preset | impl | params | Adam steps before | "
        "samples | all-finite samples | non-finite pixels | finite pixels "
        "outside [0, 256) | samples inside [0, 256) | finite pixel range |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {r['workload']} | {r['preset']} | {r['impl']} | error: "
            f"{r['error']} ||||||||")
      continue
    span = ("–" if r["finite_pixel_min"] is None else
            f"{r['finite_pixel_min']:.3g} … {r['finite_pixel_max']:.3g}")
    print(f"| {r['workload']} | {r['preset']} | {r['impl']} | "
          f"{r['parameters']:,} | {r['train_steps']} | "
          f"{r['samples_counted']} | "
          f"{100 * r['samples_finite_fraction']:.1f}% | "
          f"{100 * r['pixels_nonfinite_fraction']:.2f}% | "
          f"{_pct(r['pixels_out_of_range_fraction'])} | "
          f"{100 * r['samples_in_range_fraction']:.1f}% | {span} |")
  flops = [r for r in rows if "sample_mflops_per_image" in r]
  if flops:
    print("\n| workload | preset | impl | log_prob MFLOP/img | sample "
          "MFLOP/img | train MFLOP/img |")
    print("|---|---|---|---|---|---|")
    for r in flops:
      print(f"| {r['workload']} | {r['preset']} | {r['impl']} | "
            f"{r['forward_mflops_per_image']:.0f} | "
            f"{r['sample_mflops_per_image']:.0f} | "
            f"{r['train_mflops_per_image']:.0f} |")


def _pct(fraction):
  return "–" if fraction is None else f"{100 * fraction:.2f}%"


def _scaling(args, impls):
  rows = []
  for workload in args.workloads.split(","):
    side, _, channels = WORKLOADS[workload]
    for impl in impls:
      # Size the model once at the workload's own shape, then keep it.
      base = _run({"workload": workload, "preset": "small", "impl": impl,
                   "jit": False, "repeats": 1, "steps": 1,
                   "train_only": True})
      if "error" in base:
        continue
      fixed = {"impl": impl, "preset": "small", "jit": False,
               "repeats": args.repeats, "steps": 2, "train_only": True,
               "size": base["size"], "scales": base.get("scales", 3),
               "target": base["parameters"], "workload": workload}
      for s in SCALING_SIDES:
        rows.append(_run(dict(fixed, shape=[s, s, channels], batch=BATCH,
                              sweep="side")))
      for b in SCALING_BATCHES:
        rows.append(_run(dict(fixed, shape=[side, side, channels], batch=b,
                              sweep="batch")))
  print("\n| workload | impl | sweep | shape | batch | params | step ms | "
        "img/s |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {r['workload']} | {r['impl']} | {r['sweep']} | "
            f"{r['shape']} | {r['batch']} | error: {r['error']} |||")
      continue
    print(f"| {r['workload']} | {r['impl']} | {r['sweep']} | "
          f"{'×'.join(map(str, r['shape']))} | {r['batch']} | "
          f"{r['parameters']:,} | {r['train_step_ms']:.0f} | "
          f"{r['train_images_per_second']:.0f} |")


FIGURES = ("train_images_per_second", "log_prob_images_per_second",
           "sample_images_per_second")


def _fmt(value, spec=".0f"):
  return "–" if value is None else format(value, spec)


def _label(row):
  """`ours`, `peer`, or `ours mixed_bfloat16` (a mixed-precision row)."""
  if row.get("mixed_precision"):
    return f"{row['impl']} {row['mixed_precision']}"
  return row["impl"]


def _table(rows, machine):
  peak = machine["matmul_gflops"]
  print(f"\nmachine: {machine['cpu']}, {machine['cores']} cores, TF "
        f"{machine['tensorflow']}, float32 matmul peak {peak:.0f} GFLOP/s "
        f"(bfloat16: {machine['matmul_gflops_bfloat16']:.0f})")
  print("\n| workload | preset | impl | jit | params | train img/s | "
        "log_prob img/s | sample img/s | all-finite samples (unclipped) | "
        "finite pixels outside [0, 256) | peak RSS MB |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {r['workload']} | {r['preset']} | {r['impl']} | {r['jit']} "
            f"| error: {r['error']} ||||||")
      continue
    print(f"| {r['workload']} | {r['preset']} | {_label(r)} | {r['jit']} | "
          f"{r['parameters']:,} | " +
          " | ".join(_fmt(r.get(k)) for k in FIGURES) +
          f" | {_fmt(r.get('samples_finite_fraction'), '.2f')} | "
          f"{_pct(r.get('pixels_out_of_range_fraction'))} | "
          f"{r['peak_rss_mb']:.0f} |")
  extras = [r for r in rows if "train_mflops_per_image" in r]
  if extras:
    print("\n| workload | preset | impl | fwd MFLOP/img | sample MFLOP/img | "
          "train MFLOP/img | train GFLOP/s | % of matmul peak | serve N=1 ms "
          "| serve N=64 ms | tf.data img/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in extras:
      print(f"| {r['workload']} | {r['preset']} | {r['impl']} | "
            f"{r['forward_mflops_per_image']:.0f} | "
            f"{r['sample_mflops_per_image']:.0f} | "
            f"{r['train_mflops_per_image']:.0f} | "
            f"{r['train_gflops_per_second']:.1f} | "
            f"{100 * r['train_gflops_per_second'] / peak:.1f}% | "
            f"{r['serving_log_prob_p50_ms_n1']:.1f} | "
            f"{r['serving_log_prob_p50_ms_n64']:.1f} | "
            f"{_fmt(r.get('data_images_per_second'))} |")
  ok = [r for r in rows if "error" not in r]
  for workload in sorted({r["workload"] for r in ok}):
    for preset in sorted({r["preset"] for r in ok}):
      def pick(impl, key, best=max, source=ok, w=workload, p=preset):
        vals = [r[key] for r in source if _label(r) == impl and
                r["workload"] == w and r["preset"] == p and key in r]
        return best(vals) if vals else None
      # Mixed-precision rows of ours against the (float32) peer too; serving
      # figures exist for float32 rows only, so they drop out elsewhere.
      for label in ["ours"] + sorted({_label(r) for r in ok} -
                                     {"ours", "peer"}):
        ratios = []
        for key in FIGURES:
          a, b = pick(label, key), pick("peer", key)
          if a and b:
            ratios.append(f"{key.split('_images')[0]} {a / b:.2f}x")
        for n in (1, 64):
          key = f"serving_log_prob_p50_ms_n{n}"
          a, b = pick(label, key, min), pick("peer", key, min)
          if a and b:
            ratios.append(f"serving speed N={n} {b / a:.2f}x")
        if ratios:
          print(f"\n{label}/peer ({workload}, {preset}, best of jit "
                f"settings): " + ", ".join(ratios))
      data_rate = pick("ours", "data_images_per_second")
      train_rate = pick("ours", "train_images_per_second")
      if data_rate and train_rate:
        print(f"tf.data ({workload}): {data_rate:.0f} img/s = "
              f"{data_rate / train_rate:.1f}x our training throughput")


if __name__ == "__main__":
  sys.exit(main())
