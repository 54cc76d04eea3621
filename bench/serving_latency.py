"""Latency of exported signatures through TF's C API (the serving loader).

    python -m bench.serving_latency [--repeats 200] [--checkpoint runs/.../best.keras]

For a digits-sized (8×8×1) and an MNIST-sized (28×28×1, the `mnist` config)
model it exports a SavedModel, loads it with `TF_LoadSessionFromSavedModel`
in a subprocess without TensorFlow Python, and times `TF_SessionRun` of
`serving_default` and `sample` for N = 1 and N = 64 after warm-up. Prints
one JSON line per figure and a markdown table (p50 / p99 in milliseconds).
"""

import argparse
import json
import os
import tempfile

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import tfp_realnvp  # noqa: E402
from bench import cpu_model  # noqa: E402
from tfp_realnvp import export  # noqa: E402
from tfp_realnvp.testing import capi  # noqa: E402

MODELS = {
    "digits": dict(image_shape=(8, 8, 1), num_scales=2, num_res_blocks=2,
                   num_filters=32),
    "mnist": dict(image_shape=(28, 28, 1), num_scales=3, num_res_blocks=4,
                  num_filters=32),
}


def measure(name, model, repeats, warmup=5):
  rows = []
  with tempfile.TemporaryDirectory() as base:
    path = export.export_for_serving(model, base, name=name,
                                     warmup_requests=0)
    with capi.CApiSession(path) as session:
      for signature in ("serving_default", "sample"):
        for n in (1, 64):
          inputs = export.example_inputs(model, signature, n=n)
          session.run(signature, inputs, repeat=warmup)
          _, seconds = session.run(signature, inputs, repeat=repeats,
                                   return_seconds=True)
          ms = np.asarray(seconds) * 1e3
          row = {"model": name, "parameters": int(model.count_params()),
                 "signature": signature, "n": n, "repeats": repeats,
                 "p50_ms": float(np.percentile(ms, 50)),
                 "p99_ms": float(np.percentile(ms, 99)),
                 "images_per_second": float(n / np.median(seconds))}
          print(json.dumps(row), flush=True)
          rows.append(row)
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--repeats", type=int, default=100)
  p.add_argument("--models", default="digits,mnist")
  p.add_argument("--checkpoint", help="use this trained .keras model for "
                 "the digits row instead of fresh weights")
  args = p.parse_args(argv)
  print(json.dumps({"tensorflow": tf.__version__, "cpu": cpu_model(),
                    "cores": os.cpu_count(),
                    "inter_op_threads":
                        tf.config.threading.get_inter_op_parallelism_threads(),
                    "intra_op_threads":
                        tf.config.threading.get_intra_op_parallelism_threads()}))
  rows = []
  for name in args.models.split(","):
    if name == "digits" and args.checkpoint:
      import keras  # pylint: disable=import-outside-toplevel
      model = keras.models.load_model(args.checkpoint, compile=False)
    else:
      model = tfp_realnvp.RealNVP(**MODELS[name], name=name)
    rows += measure(name, model, args.repeats)
  print("\n| model | params | signature | N | p50 ms | p99 ms | images/s |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['model']} | {r['parameters']:,} | {r['signature']} | "
          f"{r['n']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
          f"{r['images_per_second']:.0f} |")


if __name__ == "__main__":
  main()
