"""Where our training step's time goes: per coupling network (default) or
by op type, measured.

    python -m bench.profile --workload cifar --target 544392 \\
        --checkerboard squeezed
    python -m bench.profile --by op_type --isa avx2 --workload mnist \\
        --preset small --checkerboard masked --glow_step

Builds our model as `python -m bench` does (`bench.models.ours` at the
target parameter count; `--glow_step`: with mnist_fast's Glow step,
`bench.models.GLOW_STEP`, the `glow` structure of `python -m bench
--structure`), batch 64, float32. With `--isa` other than native, and always
with `--by op_type`, the measurement runs in a child process whose
environment is that ISA setting (`bench.isa`: `avx2` sets
`ONEDNN_MAX_CPU_ISA=AVX2`, `ATEN_CPU_CAPABILITY=avx2`,
`MKL_ENABLE_INSTRUCTIONS=AVX2`); its header gives the CPU, its ISA flags,
the versions, the variables in force and TF's float32 matmul GFLOP/s under
them.

`--by network` (the default) times, each in isolation in one process
(median of `--repeats` × `--steps` after a warm-up):

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

`--by op_type` times the train step and sampling (`decode` of `--samples`
latents, 64) without the profiler (median of `--repeats` × `--steps`), then
runs `--profile_steps` more of each under TF's profiler and adds up its op
events per category (`bench.op_profile`: convolutions, weight norm, batch
norm, coupling arithmetic, actnorm, 1×1 conv, split prior, logit
preprocessing, Adam, other): ms per step, share and ops per step, then the
check against the step time and the unattributed remainder. Without
`--target` the target is normflows Glow's parameter count at `--preset`
(`bench.torch_peers`, searched as `python -m bench` does; found in the
parent process, so torch never loads in the profiled one). `--trace_dir`
keeps the traces for TensorBoard.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

from bench import cpu_model, isa, models, op_profile
from bench.common import BATCH, PRESETS, WORKLOADS
from bench.machine import matmul_gflops, timed

DEFAULT_TARGET = 0.5e6  # --by network without --target


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


def _parser():
  p = argparse.ArgumentParser(prog="python -m bench.profile",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--by", choices=("network", "op_type"), default="network",
                 help="per coupling network (default) or by op category")
  p.add_argument("--workload", default="cifar", choices=sorted(WORKLOADS))
  p.add_argument("--target", type=float, default=None,
                 help="parameter count (default: 0.5M by network; "
                      "normflows Glow's at --preset by op_type)")
  p.add_argument("--preset", default="small",
                 choices=[k for k, v in PRESETS.items() if v],
                 help="--by op_type without --target: the peer's size")
  p.add_argument("--checkerboard", default="squeezed",
                 choices=("masked", "squeezed"))
  p.add_argument("--glow_step", action="store_true",
                 help="mnist_fast's Glow step: actnorm, 1x1 conv, split "
                      "prior")
  p.add_argument("--isa", default=isa.NATIVE,
                 help="one ISA setting: native, avx2 or another oneDNN "
                      "name (bench.isa)")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--profile_steps", type=int, default=5,
                 help="--by op_type: steps under the profiler")
  p.add_argument("--samples", type=int, default=BATCH,
                 help="--by op_type: images per sampling call")
  p.add_argument("--trace_dir",
                 help="--by op_type: keep the profiler's traces here")
  p.add_argument("--matmul_n", type=int, default=4096,
                 help="size of the float32 matmul peak check")
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  return p


def peer_target(workload, preset):
  """(parameters, where from): normflows Glow's count at `preset`, as the
  bench sizes it, or the preset's own count without torch/normflows."""
  try:
    from bench import torch_peers  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():  # torch.lu's deprecation, in normflows
      warnings.simplefilter("ignore", UserWarning)
      _, n, hidden = torch_peers.build_flow("nf_glow", WORKLOADS[workload],
                                            PRESETS[preset])
  except ImportError as e:
    n = int(PRESETS[preset])
    return n, f"preset {preset}'s count ({e.name} is not installed)"
  return n, f"normflows Glow at preset {preset} (hidden width {hidden})"


def _in_child(args, argv):
  """Runs this command again in a child under `args.isa`; its exit code."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if args.by == "op_type" and args.target is None:
    target, source = peer_target(args.workload, args.preset)
    print(f"target: {target:,} parameters, {source}", flush=True)
    argv += ["--target", str(target)]
  env = isa.environment(args.isa)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  return subprocess.run([sys.executable, "-m", "bench.profile", *argv,
                         "--child"], env=env, check=False).returncode


def main(argv=None):
  p = _parser()
  args = p.parse_args(argv)
  try:
    settings = isa.parse(args.isa)
  except ValueError as e:
    p.error(f"--isa: {e}")
  if len(settings) != 1:
    p.error("--isa: one setting per profile")
  args.isa = settings[0]
  if not args.child and (args.by == "op_type" or args.isa != isa.NATIVE):
    return _in_child(args, argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if args.by == "op_type":
    return by_op_type(args)
  return by_network(args)


def _build(args, target):
  """(model, parameters, widths, x, rng) of ours at `target`, actnorms
  (Glow step) initialised from the noise batch `x` drawn from `rng`."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  shape = WORKLOADS[args.workload]
  model, params, widths = models.ours(
      shape, int(target), checkerboard=args.checkerboard,
      **models.structure_options("glow" if args.glow_step else "plain"))
  rng = np.random.default_rng(0)
  x = tf.constant(rng.uniform(0, 256, (BATCH,) + shape), tf.float32)
  models.initialize(model, x)
  return model, params, widths, x, rng


def _train_function(model, x):
  """Keras `fit`'s own train step on the fixed batch `x`, traced."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tfp_realnvp  # pylint: disable=import-outside-toplevel
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  model.make_train_function()
  iterator = iter(tf.data.Dataset.from_tensors(x).repeat())
  return lambda: model.train_function(iterator)


def _model_line(args, params, widths):
  glow = (", Glow step (actnorm, 1×1 conv, split prior)" if args.glow_step
          else "")
  return (f"ours, {args.workload} {args.checkerboard}{glow}: {params:,} "
          f"parameters (target {int(args.target):,}), widths {widths}, "
          f"batch {BATCH}, float32")


def by_op_type(args):
  """`--by op_type` (module docstring), in this process."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if args.target is None:
    args.target = peer_target(args.workload, args.preset)[0]
  model, params, widths, x, _ = _build(args, args.target)
  train = _train_function(model, x)
  decode = tf.function(lambda e: model.decode(e))
  eps = tf.random.stateless_normal([args.samples, model.event_size],
                                   seed=(1, 2))
  peak = matmul_gflops(args.matmul_n)
  machine = {"cpu": cpu_model(), "cores": os.cpu_count(),
             "date": time.strftime("%Y-%m-%d"),
             "cpu_flags": isa.flag_summary(isa.cpu_flags()),
             "versions": isa.versions()}
  print("\n".join(isa.header_lines(machine)))
  print(f"ISA setting {args.isa}: {isa.describe_settings(args.isa)}; in "
        f"force here: {isa.in_force() or 'none'}; TF float32 matmul "
        f"({args.matmul_n}²) {peak:.0f} GFLOP/s under it")
  print(_model_line(args, params, widths))
  for kind, title, fn in (
      ("train_step", "Train step (fit's train function: forward, log-det, "
       "backward, Adam), by op category:", train),
      ("sampling", f"Sampling (decode of {args.samples} latents), by op "
       "category:", lambda: decode(eps))):
    step_ms = 1e3 * timed(fn, args.repeats, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
      logdir = (os.path.join(args.trace_dir, kind) if args.trace_dir else
                tmp)
      events, seconds = op_profile.profile(fn, args.profile_steps, logdir)
    summary = op_profile.summarize(events, args.profile_steps)
    op_profile.table(title, summary, step_ms, 1e3 * seconds)
    print(json.dumps({"profile": kind, "isa": args.isa,
                      "workload": args.workload, "preset": args.preset,
                      "checkerboard": args.checkerboard,
                      "glow_step": args.glow_step, "parameters": params,
                      "step_ms": step_ms, "profiled_step_ms": 1e3 * seconds,
                      "matmul_gflops": peak,
                      **{k: v for k, v in summary.items()
                         if k != "top_other"}}), flush=True)
  return 0


def by_network(args):
  """`--by network` (module docstring), in this process."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if args.target is None:
    args.target = DEFAULT_TARGET
  model, params, widths, x, rng = _build(args, args.target)
  seen = _input_shapes(model, x)
  train = _train_function(model, x)
  train_ms = 1e3 * timed(train, args.repeats, args.steps)
  forward = tf.function(lambda t: model.log_prob(t))
  forward_ms = 1e3 * timed(lambda: forward(x), args.repeats, args.steps)

  peak = matmul_gflops(args.matmul_n)
  rows = _network_rows(model, seen, rng, args.repeats, args.steps)
  total_ms = sum(r["ms"] for r in rows)
  total_mflop = sum(r["mflop_per_batch"] for r in rows)
  isa_note = ("" if args.isa == isa.NATIVE else
              f", ISA {args.isa} ({isa.describe_settings(args.isa)})")
  print(f"\n{time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} "
        f"cores{isa_note}, float32 matmul peak {peak:.0f} GFLOP/s; "
        f"{args.workload} {args.checkerboard}"
        f"{' Glow step' if args.glow_step else ''}, {params:,} parameters, "
        f"widths {widths}, batch {BATCH}")
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
