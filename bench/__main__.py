"""Benchmark suite: ours vs PyTorch normflows Glow (the bar), normflows Real
NVP and TFP's `tfb.Glow`, at matched parameter count, interleaved.

    pip install -e ".[bench]"                        # + torch (CPU), normflows
    python -m bench                                  # mnist + cifar, small
    python -m bench --presets small,medium,paper     # + ~3M and the paper's
                                                     #   CIFAR-10 model (ours)
    python -m bench --impls ours,nf_glow --checkerboard squeezed
    python -m bench --structure plain,glow           # + ours with mnist_fast's
                                                     #   Glow step
    python -m bench --jit false,true                 # + XLA (ours, tfp_glow)
    python -m bench --mixed_precision none,mixed_bfloat16   # + ours in bf16
    python -m bench --isa native,avx2                # + each under an AVX2 cap
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
(masked, squeezed) and `--structure` (`plain`, the default: Real NVP's
step; `glow`: mnist_fast's Glow step, actnorm, 1×1 convolution (LU) and
the split prior, `bench.models.GLOW_STEP`, its actnorms initialised from
the timed batch as `fit` would; sized with those layers counted; rows
and tables name it: `"structure": "glow"`, `ours masked glow`); `nf_glow`
and `nf_realnvp` (`bench.torch_peers`: eager
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

ISA settings (`--isa native,avx2`, `bench.isa`): each setting is the
environment of the child processes (`native`: none of the variables;
`avx2`: `ONEDNN_MAX_CPU_ISA=AVX2`, `ATEN_CPU_CAPABILITY=avx2`,
`MKL_ENABLE_INSTRUCTIONS=AVX2`, for ours and the torch peers alike; other
oneDNN names such as `avx512_core` likewise). Each pass runs every
(contestant, setting) once, a contestant's settings back to back; every
JSON row records its `isa` (and `isa_variables`, what the child saw); the
tables get a column group per setting, and ratios to a peer are taken
within one setting only (plus each setting / the first, same contestant).
The run header gives the CPU's model and ISA flags, the versions, the date
and, per setting, the float32 matmul GFLOP/s of TF and of torch measured in
child processes under it, with the ratio to native and a WARNING line when
a cap did not lower a rate (or did not change the library's dispatch).
FLOPs, serving latency and tf.data are measured under the first setting.

Sample counts (`bench.measure.sample_counts`) are taken in pixel space
before any clipping, the same way for all: ours from `RealNVP.sample(...,
clip=False)`, the Glow-style peers' samples y (they model x/256 − 0.5)
mapped back to pixels as (y + 0.5)·256; temperature 1 (the prior's own
scale) on every side, seeds (1, 2), (1, 3), ... per batch of 64. Reported:
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
import sys

from bench import isa, machine, measure, models, report, runner
from bench.common import IMPLS

# The parts: bench.common (constants), bench.runner (the child processes
# and the pass loops), bench.measure (one child's row), bench.contestants
# (the models it times), bench.report (the tables), bench.machine (timing,
# peaks).


def _parser():
  """The command line of `python -m bench` (and `--one`, a child's spec)."""
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
  p.add_argument("--structure", default="plain",
                 help="comma list of our structures: plain (Real NVP's "
                      "step), glow (mnist_fast's Glow step: actnorm, 1x1 "
                      "conv, split prior), spline and glow_spline (the "
                      "same with 4-bin rational-quadratic spline "
                      "couplings)")
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
  p.add_argument("--isa", default="native",
                 help="comma list of ISA settings of the child processes: "
                      "native, avx2, or another oneDNN ISA name such as "
                      "avx512_core (bench.isa)")
  p.add_argument("--matmul_n", type=int, default=4096,
                 help="matrix size of the header's per-ISA matmul check")
  p.add_argument("--one", help=argparse.SUPPRESS)  # runner.run's child
  return p


def main(argv=None):
  p = _parser()
  args = p.parse_args(argv)
  if args.one:
    spec = json.loads(args.one)
    row = (measure.isa_check(spec) if "isa_check" in spec else
           measure.run_one(spec))
    print(json.dumps(row), flush=True)
    return 0
  impls = args.impls.split(",")
  unknown = sorted(set(impls) - set(IMPLS))
  if unknown:
    p.error(f"--impls: unknown {unknown}; expected some of {list(IMPLS)}")
  unknown = sorted(set(runner.structures(args)) - set(models.STRUCTURES))
  if unknown:
    p.error(f"--structure: unknown {unknown}; expected some of "
            f"{list(models.STRUCTURES)}")
  try:
    settings = runner.isas(args)
  except ValueError as e:
    p.error(f"--isa: {e}")
  refused = isa.jit_refused(settings, [j == "true" for j in
                                       args.jit.split(",")])
  if refused:
    p.error(f"--jit true with --isa {','.join(refused)}: XLA generates code "
            "for this CPU whatever the ISA variables say (bench.isa), so "
            "the row would not be capped; time XLA with --isa native")
  if settings != [isa.NATIVE] and (args.scaling or args.finiteness):
    p.error("--isa: --scaling and --finiteness run native only")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # Counts need no compute peak.
  described = machine.describe(peaks=not args.finiteness)
  print(json.dumps({"machine": described}), flush=True)
  checks = (None if args.finiteness else
            isa.check(settings, args.matmul_n))
  print("\n".join(isa.header_lines(described, checks)) + "\n", flush=True)
  if args.scaling:
    report.scaling_table(runner.scaling(args, impls))
  elif args.finiteness:
    report.finiteness_table(runner.finiteness(args, impls))
  else:
    report.table(runner.interleaved(args, impls), described, checks)
  return 0


if __name__ == "__main__":
  sys.exit(main())
