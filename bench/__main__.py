"""Benchmark suite: ours vs PyTorch normflows Glow (the bar), normflows Real
NVP and TFP's `tfb.Glow`, at matched parameter count, interleaved.

    pip install -e ".[bench]"                        # + torch (CPU), normflows
    python -m bench                                  # mnist + cifar, small
    python -m bench --presets small,medium,paper     # + ~3M and the paper's
                                                     #   CIFAR-10 model (ours)
    python -m bench --impls ours,nf_glow --checkerboard squeezed
    python -m bench --jit false,true                 # + XLA (ours, tfp_glow)
    python -m bench --mixed_precision none,mixed_bfloat16   # + ours in bf16
    python -m bench --scaling                        # step time vs side, batch
    python -m bench --finiteness --presets small,medium   # sample counts only
    python -m bench.quality --minutes 10             # bits/dim per wall time
    python -m bench.models                           # our layout search

Protocol (the VM varies 5-46% from process to process): `--passes` (3)
interleaved passes; each pass runs every contestant once, each in its own
subprocess (peak RSS is that model's, nothing is shared), and each figure
of a pass is the median of `--repeats` timed repeats of `--steps` steps
after a warm-up. The tables give every pass, the median over passes, and
per workload the ratio ours / peer as the median over passes of the
same-pass ratio, with each pass's ratio. Float32, batch 64. Sizes: the
reference peer (normflows Glow when it runs) is searched to the preset's
parameter count, every other contestant to the reference's count (ours
within 5%: `bench.models.ours`; the peers by their width), pinned after the
first pass. Contestants (`--impls`): `ours` once per `--checkerboard`
(masked, squeezed); `nf_glow` and `nf_realnvp` (`bench.torch_peers`: eager
PyTorch with `torch.set_flush_denormal(True)`, threads = cores; the Real
NVP with a sigmoid scale, see there); `tfp_glow` (`bench.models.glow`).

Run it from a copy of the tree you do not edit meanwhile: AutoGraph reads a
function's source from disk when it traces, so a file edited during a run
can make a later trace read the wrong lines (seen on 2026-12-02: a
10-minute `bench.quality` run lost at its final trace with `TypeError:
...tf__get_config() takes ... 2 were given`).

Figures per workload (`mnist` 28×28×1, `cifar` 32×32×3): training images/s
(a full optimizer step: forward, log-det, backward, Adam; ours through
Keras `fit`'s own train function), `log_prob` images/s in inference,
sampling images/s, the sample counts below, parameters, peak RSS, FLOPs
per image of the forward pass, of sampling and of the training step (TF:
counted from the traced graph, every op; torch: `FlopCounterMode`,
matmuls and convolutions only) and the achieved GFLOP/s of the training
step as a fraction of the float32 matmul peak measured in the same run,
exported-SavedModel `log_prob` latency through TF's C API (the TF Serving
loader) for N = 1 and 64 (TF contestants), and (ours) the tf.data input
pipeline's images/s. `--scaling` times the training step for image sides
16/32/64 and batches 16..256.

Sample counts (`_sample_counts`) are taken in pixel space before any
clipping, the same way for all: ours from `RealNVP.sample(..., clip=False)`,
the Glow-style peers' samples y (they model x/256 − 0.5) mapped back to
pixels as (y + 0.5)·256; temperature 1 (the prior's own scale) on every
side, seeds (1, 2), (1, 3), ... per batch of 64. Reported:
`samples_finite_fraction`, images whose every pixel is finite;
`pixels_nonfinite_fraction`, NaN/±inf pixels among all pixels;
`pixels_out_of_range_fraction`, pixels outside [0, 256) among the finite
ones; `samples_in_range_fraction`, images entirely finite and inside
[0, 256), i.e. that clipping would leave unchanged. In the full bench the
models are untrained (fresh initialisation plus the timed steps on one
uniform-noise batch) when they are sampled. `--finiteness` measures only
these counts (no timing) for `--batches` batches, after `--train_steps`
Adam steps on that same noise batch (0: the freshly initialised model;
data-dependent ActNorms then initialise from their first call); `--flops`
adds the FLOP counts, which need no timing either.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench import SHARED_TFDS, cpu_model
from bench import models
from bench.common import BATCH, IMPLS, PRESETS, WORKLOADS

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


def _build_ours(spec, shape, x):
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  config = {"checkerboard": spec.get("checkerboard", "masked")}
  if spec.get("mixed_precision"):
    config["mixed_precision"] = spec["mixed_precision"]
  if spec["preset"] == "paper":
    model, params, size = models.ours(shape, None, **models.PAPER_CIFAR,
                                      **config)
  elif "size" in spec:
    model, params, size = models.ours(shape, None, num_scales=spec["scales"],
                                      num_res_blocks=models.OURS_BLOCKS,
                                      num_filters=spec["size"], **config)
  else:
    model, params, size = models.ours(shape, spec.get("target") or
                                      PRESETS[spec["preset"]], **config)
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                jit_compile=spec["jit"])
  model.make_train_function()
  train_fn = model.train_function
  iterator = iter(tf.data.Dataset.from_tensors(x).repeat())
  batch = int(x.shape[0])
  log_prob = tf.function(lambda t: model.log_prob(t))
  sample = tf.function(lambda: model.sample(batch, seed=(1, 2)))
  # Unclipped, pixel space: what the flow itself produces.
  raw = tf.function(lambda seed: model.sample(batch, seed=seed, clip=False))

  def loss(t):
    return -tf.reduce_mean(model.log_prob(t, training=True))
  return dict(
      params=params, size=size, train=lambda: train_fn(iterator),
      log_prob=lambda: log_prob(x), sample=sample,
      raw_sample=lambda n, seed: raw(tf.constant(seed, tf.int32)).numpy(),
      flops=lambda: _tf_flops(model.log_prob, loss, model.trainable_variables,
                              lambda n: model.sample(n, seed=(1, 2)), x),
      model=model, scales=model.num_scales)


def _build_tfp_glow(spec, shape, x):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  # A pinned "target" (our size, or the scaling sweep's) keeps one width.
  dist, _, params, size = models.glow(shape, spec.get("target") or
                                      PRESETS[spec["preset"]])
  variables = dist.bijector.trainable_variables
  step = models.glow_train_step(dist, shape, jit_compile=spec["jit"])
  batch = int(x.shape[0])

  def log_prob_fn(t):
    return models.glow_log_prob_pixels(dist, t, shape)

  def loss(t):
    return -tf.reduce_mean(log_prob_fn(t))
  log_prob = tf.function(log_prob_fn)
  sample = tf.function(lambda: dist.sample(batch, seed=(1, 2)))
  # Glow models y = x/256 − 0.5: back to pixels, unclipped.
  raw = tf.function(lambda seed: (dist.sample(batch, seed=seed) + 0.5) *
                    256.0)
  return dict(
      params=params, size=size, train=lambda: step(x),
      log_prob=lambda: log_prob(x), sample=sample,
      raw_sample=lambda n, seed: raw(tf.constant(seed, tf.int32)).numpy(),
      flops=lambda: _tf_flops(log_prob_fn, loss, variables,
                              lambda n: dist.sample(n, seed=(1, 2)), x),
      dist=dist)


def _build(spec, shape, x):
  """The handle dict of one contestant: parameters, `size` (ours: per-scale
  widths; the peers: their width), no-argument `train`, `log_prob` and
  `sample` callables on the fixed batch `x`, `raw_sample(n, seed)` (numpy,
  pixel space, before any clipping) and `flops()` → MFLOP per image of
  (log_prob, training step, sample)."""
  if spec["impl"] == "ours":
    return _build_ours(spec, shape, x)
  if spec["impl"] == "tfp_glow":
    return _build_tfp_glow(spec, shape, x)
  from bench import torch_peers  # pylint: disable=import-outside-toplevel
  return torch_peers.build(spec, shape, int(x.shape[0]))


def _sample_counts(built, batch, batches=1):
  """Finiteness and range of unclipped pixel-space samples (module
  docstring), over `batches` batches of `batch` with seeds (1, 2 + i)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  images = finite_images = in_range_images = 0
  pixels = nonfinite = finite_pixels = out_of_range = 0
  low, high = float("inf"), -float("inf")
  for i in range(batches):
    s = np.reshape(built["raw_sample"](batch, [1, 2 + i]),
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


def _tf_flops(log_prob, loss, variables, sample, x):
  """FLOPs per image of (log_prob, training step gradient, sample), counted
  from the traced TF graphs."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from bench.flops import count_flops  # pylint: disable=import-outside-toplevel
  n = int(x.shape[0])
  forward = tf.function(log_prob).get_concrete_function(x)

  @tf.function
  def gradient(t):
    with tf.GradientTape() as tape:
      value = loss(t)
    return tape.gradient(value, variables)
  sampled = tf.function(lambda: sample(n)).get_concrete_function()
  return (count_flops(forward) / n,
          count_flops(gradient.get_concrete_function(x)) / n,
          count_flops(sampled) / n)


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
  out = dict(spec)
  built = _build(spec, shape, x)
  out["parameters"] = int(built["params"])
  out["size"] = built["size"]
  for key in ("scales", "torch"):
    if key in built:
      out[key] = built[key]
  if spec.get("finiteness"):
    for _ in range(spec.get("train_steps", 0)):
      built["train"]()
    out.update(_sample_counts(built, batch, spec.get("batches", 1)))
    if spec.get("flops"):
      forward, train, sampling = built["flops"]()
      out.update(forward_mflops_per_image=forward / 1e6,
                 train_mflops_per_image=train / 1e6,
                 sample_mflops_per_image=sampling / 1e6)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out
  sec = _timed(built["train"], repeats, steps)
  out["train_step_ms"] = sec * 1e3
  out["train_images_per_second"] = batch / sec
  if spec.get("train_only"):
    out["peak_rss_mb"] = _peak_rss_mb()
    return out
  out["log_prob_images_per_second"] = batch / _timed(built["log_prob"],
                                                     repeats, steps)
  out["sample_images_per_second"] = batch / _timed(built["sample"], repeats,
                                                   steps)
  out.update(_sample_counts(built, batch))  # before any clipping
  out["peak_rss_mb"] = _peak_rss_mb()
  if spec.get("extras"):
    forward, train, sampling = built["flops"]()
    out["forward_mflops_per_image"] = forward / 1e6
    out["train_mflops_per_image"] = train / 1e6
    out["sample_mflops_per_image"] = sampling / 1e6
    if spec["impl"] in ("ours", "tfp_glow"):
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


def _variants(args, impls):
  """(impl, extra spec) per contestant row: ours once per checkerboard ×
  precision × jit; TFP Glow per jit (float32: it fails under a mixed Keras
  policy); the torch peers once (eager PyTorch, float32)."""
  jits = [j == "true" for j in args.jit.split(",")]
  out = []
  for impl in impls:
    if impl == "ours":
      for checkerboard in args.checkerboard.split(","):
        for precision in args.mixed_precision.split(","):
          for jit in jits:
            extra = {"checkerboard": checkerboard, "jit": jit}
            if precision != "none":
              extra["mixed_precision"] = precision
            out.append((impl, extra))
    elif impl == "tfp_glow":
      out += [(impl, {"jit": jit}) for jit in jits]
    else:
      out.append((impl, {"jit": False}))
  return out


def _reference(impls):
  """The peer whose parameter count the others match: normflows Glow when
  it runs (the bar), else TFP Glow, else ours at the preset's size."""
  for impl in ("nf_glow", "tfp_glow", "nf_realnvp", "ours"):
    if impl in impls:
      return impl
  raise ValueError(f"no known impl in {impls}")


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m bench",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--workloads", default="mnist,cifar")
  p.add_argument("--presets", default="small",
                 help="comma list of small (~0.5M), medium (~3M), paper "
                      "(the paper's CIFAR-10 model, ours only)")
  p.add_argument("--impls", default=",".join(IMPLS),
                 help=f"comma list of {', '.join(IMPLS)}")
  p.add_argument("--checkerboard", default="masked,squeezed",
                 help="our checkerboard couplings to measure")
  p.add_argument("--passes", type=int, default=3,
                 help="interleaved passes over every contestant; figures "
                      "are medians over passes of per-pass ratios")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--steps", type=int, default=5,
                 help="steps per timed repeat")
  p.add_argument("--jit", default="false",
                 help="jit_compile settings to measure (ours, tfp_glow)")
  p.add_argument("--mixed_precision", default="none",
                 help="comma list of our s/t-network precisions: none "
                      "(float32), mixed_bfloat16, mixed_float16 (the peers "
                      "stay float32)")
  p.add_argument("--scaling", action="store_true",
                 help="time the training step vs image side and batch")
  p.add_argument("--finiteness", action="store_true",
                 help="only count unclipped samples: finite images and "
                      "pixels outside [0, 256), every contestant (no timing)")
  p.add_argument("--batches", type=int, default=4,
                 help="--finiteness: batches of 64 samples per model")
  p.add_argument("--train_steps", default="0",
                 help="--finiteness: comma list of Adam steps on the noise "
                      "batch before sampling (0: freshly initialised)")
  p.add_argument("--flops", action="store_true",
                 help="--finiteness: also count FLOPs per image of "
                      "log_prob, sample and the training step")
  p.add_argument("--one", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.one:
    print(json.dumps(run_one(json.loads(args.one))), flush=True)
    return 0
  impls = args.impls.split(",")
  unknown = sorted(set(impls) - set(IMPLS))
  if unknown:
    p.error(f"--impls: unknown {unknown}; expected some of {list(IMPLS)}")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # Counts need no compute peak.
  machine = _machine(peaks=not args.finiteness)
  print(json.dumps({"machine": machine}), flush=True)
  if args.scaling:
    _scaling(args, impls)
    return 0
  if args.finiteness:
    _finiteness(args, impls)
    return 0
  variants = _variants(args, impls)
  reference = _reference(impls)
  # The reference first, so every other contestant matches its size.
  variants.sort(key=lambda v: v[0] != reference)
  rows, pinned = [], {}
  first_jit = args.jit.split(",")[0] == "true"
  for n in range(args.passes):
    for workload in args.workloads.split(","):
      for preset in args.presets.split(","):
        if preset == "paper" and workload != "cifar":
          continue
        for impl, extra in variants:
          if preset == "paper" and impl != "ours":
            continue
          key = (workload, preset, impl, extra.get("checkerboard"),
                 extra.get("mixed_precision"))
          spec = dict({"workload": workload, "preset": preset, "impl": impl,
                       "repeats": args.repeats, "steps": args.steps,
                       "pass": n}, **extra)
          # FLOPs, serving latency, data: once per model (first pass,
          # float32, first jit setting).
          spec["extras"] = (n == 0 and extra["jit"] == first_jit and
                            "mixed_precision" not in extra and
                            preset != "paper")
          if preset == "paper":
            spec.update(repeats=3, steps=1, train_only=True)
          ref = pinned.get((workload, preset, "target"))
          if impl != reference and ref:
            spec["target"] = ref  # match the reference's size
          spec.update(pinned.get(key, {}))
          row = _run(spec)
          if "parameters" in row:
            if impl == reference:
              pinned.setdefault((workload, preset, "target"),
                                row["parameters"])
            if impl == "ours":  # the same layout in every later pass
              pinned.setdefault(key, {"size": row["size"],
                                      "scales": row["scales"]})
          rows.append(row)
  _table(rows, machine)
  return 0


def _finiteness(args, impls):
  rows = []
  variants = [(i, e) for i, e in _variants(args, impls)
              if not e["jit"] and "mixed_precision" not in e]
  reference = _reference(impls)
  variants.sort(key=lambda v: v[0] != reference)
  for workload in args.workloads.split(","):
    for preset in args.presets.split(","):
      if preset == "paper":
        continue
      for train_steps in [int(t) for t in args.train_steps.split(",")]:
        ref = None
        for impl, extra in variants:
          spec = dict({"workload": workload, "preset": preset, "impl": impl,
                       "repeats": 0, "steps": 0, "finiteness": True,
                       "train_steps": train_steps, "batches": args.batches,
                       "flops": args.flops}, **extra)
          if impl != reference and ref:
            spec["target"] = ref
          row = _run(spec)
          if impl == reference and "parameters" in row:
            ref = row["parameters"]
          rows.append(row)
  print("\nUnclipped samples, temperature 1, batch 64 (module docstring):")
  print("\n| workload | preset | impl | params | Adam steps before | "
        "samples | all-finite samples | non-finite pixels | finite pixels "
        "outside [0, 256) | samples inside [0, 256) | finite pixel range |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {r['workload']} | {r['preset']} | {_label(r)} | error: "
            f"{r['error']} ||||||||")
      continue
    span = ("–" if r["finite_pixel_min"] is None else
            f"{r['finite_pixel_min']:.3g} … {r['finite_pixel_max']:.3g}")
    print(f"| {r['workload']} | {r['preset']} | {_label(r)} | "
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
      print(f"| {r['workload']} | {r['preset']} | {_label(r)} | "
            f"{r['forward_mflops_per_image']:.0f} | "
            f"{r['sample_mflops_per_image']:.0f} | "
            f"{r['train_mflops_per_image']:.0f} |")


def _pct(fraction):
  return "–" if fraction is None else f"{100 * fraction:.2f}%"


def _scaling(args, impls):
  rows = []
  for workload in args.workloads.split(","):
    side, _, channels = WORKLOADS[workload]
    for impl, extra in _variants(args, impls):
      if extra["jit"] or "mixed_precision" in extra:
        continue
      # Size the model once at the workload's own shape, then keep it.
      base = _run(dict({"workload": workload, "preset": "small",
                        "impl": impl, "repeats": 1, "steps": 1,
                        "train_only": True}, **extra))
      if "error" in base:
        continue
      fixed = dict({"impl": impl, "preset": "small",
                    "repeats": args.repeats, "steps": 2, "train_only": True,
                    "size": base["size"], "scales": base.get("scales", 3),
                    "target": base["parameters"], "workload": workload},
                   **extra)
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
      print(f"| {r['workload']} | {_label(r)} | {r['sweep']} | "
            f"{r['shape']} | {r['batch']} | error: {r['error']} |||")
      continue
    print(f"| {r['workload']} | {_label(r)} | {r['sweep']} | "
          f"{'×'.join(map(str, r['shape']))} | {r['batch']} | "
          f"{r['parameters']:,} | {r['train_step_ms']:.0f} | "
          f"{r['train_images_per_second']:.0f} |")


FIGURES = ("train_images_per_second", "log_prob_images_per_second",
           "sample_images_per_second")


def _fmt(value, spec=".0f"):
  return "–" if value is None else format(value, spec)


def _label(row):
  """`ours masked`, `ours squeezed mixed_bfloat16`, `nf_glow`, ..."""
  parts = [row["impl"]]
  if row["impl"] == "ours":
    parts.append(row.get("checkerboard", "masked"))
  if row.get("mixed_precision"):
    parts.append(row["mixed_precision"])
  return " ".join(parts)


def _best(rows, label, key, w, p, n=None, best=max):
  """Best (over jit settings) `key` of `label` rows for workload `w`,
  preset `p`, in pass `n` (every pass when None)."""
  vals = [r[key] for r in rows if _label(r) == label and r["workload"] == w
          and r["preset"] == p and key in r and (n is None or
                                                 r.get("pass") == n)]
  return best(vals) if vals else None


def _table(rows, machine):
  peak = machine["matmul_gflops"]
  print(f"\nmachine: {machine['cpu']}, {machine['cores']} cores, TF "
        f"{machine['tensorflow']}, float32 matmul peak {peak:.0f} GFLOP/s "
        f"(bfloat16: {machine['matmul_gflops_bfloat16']:.0f}), "
        f"{machine['date']}")
  print("\nEvery pass (images/s, batch 64):")
  print("\n| workload | preset | impl | jit | pass | params | train img/s | "
        "log_prob img/s | sample img/s | all-finite samples (unclipped) | "
        "finite pixels outside [0, 256) | peak RSS MB |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {r['workload']} | {r['preset']} | {_label(r)} | {r['jit']} "
            f"| {r['pass']} | error: {r['error']} ||||||")
      continue
    print(f"| {r['workload']} | {r['preset']} | {_label(r)} | {r['jit']} | "
          f"{r['pass']} | {r['parameters']:,} | " +
          " | ".join(_fmt(r.get(k)) for k in FIGURES) +
          f" | {_fmt(r.get('samples_finite_fraction'), '.2f')} | "
          f"{_pct(r.get('pixels_out_of_range_fraction'))} | "
          f"{r['peak_rss_mb']:.0f} |")
  ok = [r for r in rows if "error" not in r]
  labels = []
  for r in ok:
    if _label(r) not in labels:
      labels.append(_label(r))
  passes = sorted({r["pass"] for r in ok})
  cells = [(w, p) for w in dict.fromkeys(r["workload"] for r in ok)
           for p in dict.fromkeys(r["preset"] for r in ok)]
  extras = [r for r in ok if "train_mflops_per_image" in r]
  if extras:
    print("\nFLOPs per image (TF: graph profiler, every op; torch: "
          "FlopCounterMode, matmuls and convolutions only) and the training "
          "step's achieved rate at the median train img/s:")
    print("\n| workload | preset | impl | fwd MFLOP/img | sample MFLOP/img | "
          "train MFLOP/img | train GFLOP/s | % of matmul peak | serve N=1 ms "
          "| serve N=64 ms | tf.data img/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in extras:
      w, p, label = r["workload"], r["preset"], _label(r)
      rate = statistics.median([_best(ok, label, "train_images_per_second", w, p, n)
                      for n in passes if _best(
                          ok, label, "train_images_per_second", w, p, n)])
      gflops = r["train_mflops_per_image"] * rate / 1e3
      print(f"| {w} | {p} | {label} | {r['forward_mflops_per_image']:.0f} | "
            f"{r['sample_mflops_per_image']:.0f} | "
            f"{r['train_mflops_per_image']:.0f} | {gflops:.1f} | "
            f"{100 * gflops / peak:.1f}% | "
            f"{_fmt(r.get('serving_log_prob_p50_ms_n1'), '.1f')} | "
            f"{_fmt(r.get('serving_log_prob_p50_ms_n64'), '.1f')} | "
            f"{_fmt(r.get('data_images_per_second'))} |")
  print(f"\nMedians over {len(passes)} interleaved passes (best of the jit "
        "settings within a pass); ratio = median over passes of the "
        "same-pass ratio, per-pass ratios in brackets:")
  print("\n| workload | preset | impl | params | train img/s | log_prob img/s"
        " | sample img/s | " + " | ".join(
            f"vs {peer} train / log_prob / sample" for peer in labels
            if not peer.startswith("ours")) + " |")
  peers = [l for l in labels if not l.startswith("ours")]
  print("|---|---|---|---|---|---|---|" + "---|" * len(peers))
  for w, p in cells:
    for label in labels:
      params = _best(ok, label, "parameters", w, p)
      if params is None:
        continue
      medians = []
      for key in FIGURES:
        vals = [v for v in (_best(ok, label, key, w, p, n) for n in passes)
                if v]
        medians.append(statistics.median(vals) if vals else None)
      ratio_cells = []
      for peer in peers:
        if not label.startswith("ours"):
          ratio_cells.append("")
          continue
        parts = []
        for key in FIGURES:
          per_pass = [a / b for a, b in (
              (_best(ok, label, key, w, p, n), _best(ok, peer, key, w, p, n))
              for n in passes) if a and b]
          parts.append("–" if not per_pass else
                       f"**{statistics.median(per_pass):.2f}×** (" + ", ".join(
                           f"{v:.2f}" for v in per_pass) + ")")
        ratio_cells.append(" / ".join(parts))
      print(f"| {w} | {p} | {label} | {params:,} | " +
            " | ".join(_fmt(m) for m in medians) + " | " +
            " | ".join(ratio_cells) + " |")


if __name__ == "__main__":
  sys.exit(main())
