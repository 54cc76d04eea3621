"""One measurement of `python -m bench`, in the child process it runs in.

`run_one(spec)` builds the spec's contestant (`bench.contestants.build`)
and returns its row: timings, the unclipped sample counts
(`sample_counts`, the `bench` module docstring), peak RSS and, for the
spec's `extras`, FLOPs, exported-SavedModel serving latency and the tf.data
input pipeline's images/s.
"""

import os
import tempfile
import time

from bench import SHARED_TFDS
from bench import isa, models
from bench.common import BATCH, WORKLOADS
from bench.contestants import build
from bench.machine import matmul_gflops, peak_rss_mb, timed


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
  out["isa_variables"] = isa.in_force()  # what this child ran under
  built = build(spec, shape, x)
  out["parameters"] = int(built["params"])
  out["size"] = built["size"]
  for key in ("scales", "torch"):
    if key in built:
      out[key] = built[key]
  if spec.get("finiteness"):
    for _ in range(spec.get("train_steps", 0)):
      built["train"]()
    out.update(sample_counts(built, batch, spec.get("batches", 1)))
    if spec.get("flops"):
      forward, train, sampling = built["flops"]()
      out.update(forward_mflops_per_image=forward / 1e6,
                 train_mflops_per_image=train / 1e6,
                 sample_mflops_per_image=sampling / 1e6)
    out["peak_rss_mb"] = peak_rss_mb()
    return out
  sec = timed(built["train"], repeats, steps)
  out["train_step_ms"] = sec * 1e3
  out["train_images_per_second"] = batch / sec
  if spec.get("train_only"):
    out["peak_rss_mb"] = peak_rss_mb()
    return out
  out["log_prob_images_per_second"] = batch / timed(built["log_prob"],
                                                    repeats, steps)
  out["sample_images_per_second"] = batch / timed(built["sample"], repeats,
                                                  steps)
  out.update(sample_counts(built, batch))  # before any clipping
  out["peak_rss_mb"] = peak_rss_mb()
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


def isa_check(spec):
  """A child of `bench.isa.check` (`python -m bench --one '{"isa_check":
  "tf" | "torch", "matmul_n": N}'`): the float32 N×N matmul GFLOP/s of
  TF or torch under this process's ISA variables (best of 5)."""
  n = int(spec.get("matmul_n", isa.MATMUL_N))
  out = {"isa_check": spec["isa_check"], "variables": isa.in_force()}
  if spec["isa_check"] == "tf":
    out["matmul_gflops"] = matmul_gflops(n)
    return out
  from bench.torch_peers import configure_torch  # pylint: disable=import-outside-toplevel
  torch = configure_torch()
  a, b = torch.randn(n, n), torch.randn(n, n)
  torch.matmul(a, b)
  best = float("inf")
  for _ in range(5):
    start = time.perf_counter()
    torch.matmul(a, b)
    best = min(best, time.perf_counter() - start)
  out["matmul_gflops"] = 2 * n ** 3 / best / 1e9
  out["aten_capability"] = torch.backends.cpu.get_cpu_capability()
  return out


def sample_counts(built, batch, batches=1):
  """Finiteness and range of unclipped pixel-space samples (the `bench`
  module docstring), over `batches` batches of `batch` with seeds (1, 2 + i)."""
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
