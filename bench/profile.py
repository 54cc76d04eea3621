"""Where our training step's time goes: per coupling network, measured.

    python -m bench.profile --workload cifar --target 544392 \\
        --checkerboard squeezed

Builds our model as `python -m bench` does (`bench.models.ours` at the
target parameter count), then times, each in isolation in one process
(median of `--repeats` × `--steps` after a warm-up, batch 64, float32):

- the whole Keras train step (`fit`'s train function: forward, log-det,
  backward, Adam);
- the forward pass alone (`log_prob`);
- every coupling's s/t network, forward + gradient (w.r.t. its input and
  weights: what the train step runs for it), on the input shape it sees in
  the model, with its FLOPs from the traced graph and the GFLOP/s reached.

The difference between the train step and the sum of the networks is the
rest: the bijector arithmetic (masks, exp, log-dets), batch-norm bijectors,
logit preprocessing, the prior, Adam. Prints one table row per network,
then the totals.
"""

import argparse
import json
import os
import sys
import time

from bench import cpu_model, models
from bench.common import BATCH, WORKLOADS
from bench.machine import matmul_gflops, timed


def _input_shapes(model, x):
  """The input shape each coupling network sees, recorded on one forward
  pass of `x`."""
  seen = {}
  for i, net in enumerate(model.coupling_networks):
    def recorder(inputs, *a, _i=i, _call=net.call, **k):
      seen.setdefault(_i, tuple(inputs.shape))
      return _call(inputs, *a, **k)
    net.call = recorder
  model.log_prob(x)
  for net in model.coupling_networks:
    del net.call  # back to the class's own call
  return seen


def _network_rows(model, seen, rng, repeats, steps):
  """One row per coupling's s/t network: forward + gradient ms, MFLOP per
  batch and GFLOP/s, each printed as a JSON line as it is measured."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from bench.flops import count_flops  # pylint: disable=import-outside-toplevel
  rows = []
  for step in [s for s in model.flow().steps if s.kind == "coupling"]:
    net = model.coupling_networks[step.index]
    t = tf.constant(rng.normal(size=seen[step.index]), tf.float32)

    @tf.function
    def fwd_bwd(u, _net=net):
      with tf.GradientTape() as tape:
        tape.watch(u)
        s, b = _net(u, training=True)
        value = tf.reduce_sum(s) + tf.reduce_sum(b)
      return tape.gradient(value, [u] + _net.trainable_variables)
    mflop = count_flops(fwd_bwd.get_concrete_function(t)) / 1e6
    ms = 1e3 * timed(lambda: fwd_bwd(t), repeats, steps)
    rows.append({"step": step.name, "input": seen[step.index][1:],
                 "out_channels": step.out_channels, "ms": ms,
                 "mflop_per_batch": mflop,
                 "gflops_per_second": mflop / ms})
    print(json.dumps(rows[-1]), flush=True)
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m bench.profile",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--workload", default="cifar", choices=sorted(WORKLOADS))
  p.add_argument("--target", type=float, default=0.5e6)
  p.add_argument("--checkerboard", default="squeezed")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--steps", type=int, default=10)
  args = p.parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  shape = WORKLOADS[args.workload]
  model, params, widths = models.ours(shape, int(args.target),
                                      checkerboard=args.checkerboard)
  rng = np.random.default_rng(0)
  x = tf.constant(rng.uniform(0, 256, (BATCH,) + shape), tf.float32)
  seen = _input_shapes(model, x)

  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  model.make_train_function()
  iterator = iter(tf.data.Dataset.from_tensors(x).repeat())
  train_ms = 1e3 * timed(lambda: model.train_function(iterator),
                         args.repeats, args.steps)
  forward = tf.function(lambda t: model.log_prob(t))
  forward_ms = 1e3 * timed(lambda: forward(x), args.repeats, args.steps)

  peak = matmul_gflops()
  rows = _network_rows(model, seen, rng, args.repeats, args.steps)
  total_ms = sum(r["ms"] for r in rows)
  total_mflop = sum(r["mflop_per_batch"] for r in rows)
  print(f"\n{time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} "
        f"cores, float32 matmul peak {peak:.0f} GFLOP/s; {args.workload} "
        f"{args.checkerboard}, {params:,} parameters, widths {widths}, "
        f"batch {BATCH}")
  print("\n| coupling network | input (H, W, C) | out (s, t) channels | fwd+grad "
        "ms | MFLOP/batch | GFLOP/s | % of peak |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['step']} | {r['input']} | {r['out_channels']} | "
          f"{r['ms']:.2f} | {r['mflop_per_batch']:.0f} | "
          f"{r['gflops_per_second']:.1f} | "
          f"{100 * r['gflops_per_second'] / peak:.0f}% |")
  print(f"\ntrain step {train_ms:.1f} ms ({BATCH / train_ms * 1e3:.0f} img/s);"
        f" forward (log_prob) {forward_ms:.1f} ms; the s/t networks "
        f"fwd+grad {total_ms:.1f} ms = {100 * total_ms / train_ms:.0f}% of "
        f"the step at {total_mflop / total_ms:.1f} GFLOP/s; the rest "
        f"(bijectors, batch norm, logit, prior, Adam) "
        f"{train_ms - total_ms:.1f} ms")
  return 0


if __name__ == "__main__":
  sys.exit(main())
