"""The parent side of `python -m bench`: which contestants run, in what
order, at what size, each in its own child process.

`run(spec)` is the child-process protocol: `python -m bench --one SPEC`
(JSON) prints the row of `bench.measure.run_one(SPEC)` as its last JSON
line; a child that fails gives `dict(spec, error=[last stderr line])`.
Every row is printed as a JSON line as it arrives. A spec's `isa` (default
native) is the child's environment (`bench.isa.environment`). `interleaved`
is the full bench's pass loop (sizes pinned after the first pass; with
`--isa`, every contestant once per ISA setting in each pass, the settings
of one contestant back to back), `finiteness` and `scaling` the loops of
`--finiteness` and `--scaling` (native only); each returns its rows for
`bench.report`.
"""

import json
import subprocess
import sys

from bench import isa as isa_lib
from bench.common import BATCH, WORKLOADS

SCALING_SIDES = (16, 32, 64)
SCALING_BATCHES = (16, 32, 64, 128, 256)


def run(spec):
  """The row of `spec` measured in a child process (module docstring)."""
  spec = dict({"isa": isa_lib.NATIVE}, **spec)
  proc = subprocess.run(
      [sys.executable, "-m", "bench", "--one", json.dumps(spec)],
      capture_output=True, text=True, check=False,
      env=isa_lib.environment(spec["isa"]))
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if proc.returncode or not lines:
    row = dict(spec, error=proc.stderr.strip().splitlines()[-1:])
  else:
    row = json.loads(lines[-1])
  print(json.dumps(row), flush=True)
  return row


def structures(args):
  """Our structures of `args` (`--structure`, default plain)."""
  return (getattr(args, "structure", None) or "plain").split(",")


def _variants(args, impls):
  """(impl, extra spec) per contestant row: ours once per checkerboard ×
  structure × precision × jit (the spec names a structure other than
  plain, as it names a precision other than float32); TFP Glow per jit
  (float32: it fails under a mixed Keras policy); the torch peers once
  (eager PyTorch, float32)."""
  jits = [j == "true" for j in args.jit.split(",")]
  out = []
  for impl in impls:
    if impl == "ours":
      for checkerboard in args.checkerboard.split(","):
        for structure in structures(args):
          for precision in args.mixed_precision.split(","):
            for jit in jits:
              extra = {"checkerboard": checkerboard, "jit": jit}
              if structure != "plain":
                extra["structure"] = structure
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


def isas(args):
  """The ISA settings of `args` (`--isa`, default native)."""
  return isa_lib.parse(getattr(args, "isa", None) or isa_lib.NATIVE)


def _schedule(args, variants):
  """(pass, workload, preset, impl, extra, isa) in run order: every
  (contestant, ISA setting) once per pass, a contestant's settings back to
  back; the paper preset is cifar and ours only."""
  settings = isas(args)
  for n in range(args.passes):
    for workload in args.workloads.split(","):
      for preset in args.presets.split(","):
        if preset == "paper" and workload != "cifar":
          continue
        for impl, extra in variants:
          if preset == "paper" and impl != "ours":
            continue
          for isa in settings:
            yield n, workload, preset, impl, extra, isa


def interleaved(args, impls):
  """The full bench's rows: `--passes` interleaved passes, the reference
  first in each, every other contestant sized to the reference's parameter
  count and ours pinned to its first-pass layout (the same model under
  every ISA setting)."""
  variants = _variants(args, impls)
  reference = _reference(impls)
  # The reference first, so every other contestant matches its size.
  variants.sort(key=lambda v: v[0] != reference)
  rows, pinned = [], {}
  first_jit = args.jit.split(",")[0] == "true"
  first_isa = isas(args)[0]
  for n, workload, preset, impl, extra, isa in _schedule(args, variants):
    key = (workload, preset, impl, extra.get("checkerboard"),
           extra.get("structure"), extra.get("mixed_precision"))
    spec = dict({"workload": workload, "preset": preset, "impl": impl,
                 "repeats": args.repeats, "steps": args.steps,
                 "pass": n, "isa": isa}, **extra)
    # FLOPs, serving latency, data: once per model (first pass,
    # float32, first jit setting, first ISA setting).
    spec["extras"] = (n == 0 and extra["jit"] == first_jit and
                      isa == first_isa and
                      "mixed_precision" not in extra and
                      preset != "paper")
    if preset == "paper":
      spec.update(repeats=3, steps=1, train_only=True)
    ref = pinned.get((workload, preset, "target"))
    if impl != reference and ref:
      spec["target"] = ref  # match the reference's size
    spec.update(pinned.get(key, {}))
    row = run(spec)
    if "parameters" in row:
      if impl == reference:
        pinned.setdefault((workload, preset, "target"),
                          row["parameters"])
      if impl == "ours":  # the same layout in every later pass
        pinned.setdefault(key, {"size": row["size"],
                                "scales": row["scales"]})
    rows.append(row)
  return rows


def finiteness(args, impls):
  """The `--finiteness` rows: sample counts (no timing) per workload,
  preset (not paper) and `--train_steps`, float32 without jit."""
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
          row = run(spec)
          if impl == reference and "parameters" in row:
            ref = row["parameters"]
          rows.append(row)
  return rows


def scaling(args, impls):
  """The `--scaling` rows: the training step of each float32, non-jit
  contestant, sized once at the workload's shape, over image sides
  `SCALING_SIDES` (batch 64) and batches `SCALING_BATCHES`."""
  rows = []
  for workload in args.workloads.split(","):
    side, _, channels = WORKLOADS[workload]
    for impl, extra in _variants(args, impls):
      if extra["jit"] or "mixed_precision" in extra:
        continue
      # Size the model once at the workload's own shape, then keep it.
      base = run(dict({"workload": workload, "preset": "small",
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
        rows.append(run(dict(fixed, shape=[s, s, channels], batch=BATCH,
                             sweep="side")))
      for b in SCALING_BATCHES:
        rows.append(run(dict(fixed, shape=[side, side, channels], batch=b,
                             sweep="batch")))
  return rows
