"""Instruction-set caps of `python -m bench --isa` and `python -m bench.profile
--isa`: the environment of a child process, and the check that it works.

An ISA setting is the environment a child process starts with; the parent
never changes its own. `native` sets none of `VARIABLES` (and removes any
the parent has, so native means the machine's own dispatch). Any other
setting is a oneDNN ISA name (`ONEDNN_NAMES`, case-insensitive, e.g.
`avx2`, `avx512_core`) and caps all three libraries that pick their kernels
at run time:

- `ONEDNN_MAX_CPU_ISA`: oneDNN, i.e. TensorFlow's matmuls and convolutions
  (TF's `_Mkl*` ops) and PyTorch's oneDNN (mkldnn) kernels;
- `ATEN_CPU_CAPABILITY`: PyTorch's own vectorised kernels (ATen);
- `MKL_ENABLE_INSTRUCTIONS`: oneMKL, PyTorch's float32 GEMM (its matmuls and
  the im2col convolutions normflows' small convs take here: checked with
  `MKL_VERBOSE=1`); without it torch's matmul keeps AVX-512 under the other
  two. For the AVX-512 settings the oneMKL cap is plain `AVX512`: float32
  GEMM uses none of VNNI, BF16, FP16 or AMX.

TF's Eigen kernels (element-wise ops, reductions) are compiled for a fixed
ISA and ignore every variable. So does XLA (`jit_compile=True`): its CPU
backend generates code for the host and a jitted float32 4096² matmul kept
its native rate under every cap (2026-12-08, a 2-core Xeon model 167 with
AVX-512 and AMX: 293 GFLOP/s native, 269 under `ONEDNN_MAX_CPU_ISA=AVX2`,
289 with `XLA_FLAGS=--xla_cpu_max_isa=AVX2`, a flag that also accepted an
unknown value silently; TF's own matmul 325 → 196 under the same cap), so
a jitted row under a cap would not be that CPU's figure: `jit_refused`
names the settings `python -m bench` refuses with `--jit true`.

`check(isas)` runs, per setting, one child
with TF and one with torch (never both in one process;
`bench.measure.isa_check`), each timing a large float32 matmul and
reporting the ISA its library dispatched to
(`ONEDNN_VERBOSE=1` / `MKL_VERBOSE=1` in that child only, and ATen's
`torch.backends.cpu.get_cpu_capability()`); `header_lines` prints them
with the CPU's flags and the versions, and a WARNING line where a cap did
not lower the rate or did not change the dispatch.
"""

import importlib.metadata
import json
import os
import re
import subprocess
import sys

NATIVE = "native"
VARIABLES = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
             "MKL_ENABLE_INSTRUCTIONS")
# oneDNN ISA name -> (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS).
ONEDNN_NAMES = {
    "SSE41": ("default", "SSE4_2"),
    "AVX": ("default", "AVX"),
    "AVX2": ("avx2", "AVX2"),
    "AVX2_VNNI": ("avx2", "AVX2"),
    "AVX512_CORE": ("avx512", "AVX512"),
    "AVX512_CORE_VNNI": ("avx512", "AVX512"),
    "AVX512_CORE_BF16": ("avx512", "AVX512"),
    "AVX512_CORE_AMX": ("avx512", "AVX512"),
}
# The /proc/cpuinfo flags the header reports (amx: any of the amx_* ones).
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
         "amx")
# A capped rate at or above this fraction of native's counts as not lowered.
NOT_LOWERED = 0.95
MATMUL_N = 4096


def parse(text):
  """`--isa` text -> ISA names (lowercase, in order, once each); ValueError
  naming the accepted ones."""
  names = []
  for part in text.split(","):
    name = part.strip().lower()
    if name != NATIVE and name.upper() not in ONEDNN_NAMES:
      raise ValueError(
          f"unknown ISA setting {part.strip()!r}; expected native or a "
          f"oneDNN name: {', '.join(n.lower() for n in ONEDNN_NAMES)}")
    if name not in names:
      names.append(name)
  if not names:
    raise ValueError("no ISA setting given")
  return names


def single(text):
  """`--isa` text naming exactly one setting -> its name; ValueError
  otherwise (`python -m bench.quality`: every contestant of a run shares
  one setting)."""
  names = parse(text)
  if len(names) != 1:
    raise ValueError(f"one setting per run, got {', '.join(names)} (run "
                     "each in its own invocation)")
  return names[0]


def jit_refused(isas, jits):
  """The capped settings of `isas` when `jits` includes XLA (True): XLA
  ignores the caps (module docstring), so these pairs would time the
  native ISA under a capped label. Empty when nothing is refused."""
  return [name for name in isas if name != NATIVE] if any(jits) else []


def settings(isa):
  """The variables `isa` sets: {} for native."""
  if isa == NATIVE:
    return {}
  aten, mkl = ONEDNN_NAMES[isa.upper()]
  return {"ONEDNN_MAX_CPU_ISA": isa.upper(), "ATEN_CPU_CAPABILITY": aten,
          "MKL_ENABLE_INSTRUCTIONS": mkl}


def environment(isa, base=None):
  """The whole environment of a child under `isa`: `base` (this process's
  environment) without `VARIABLES`, plus `settings(isa)`."""
  env = {k: v for k, v in (os.environ if base is None else base).items()
         if k not in VARIABLES}
  env.update(settings(isa))
  return env


def describe_settings(isa):
  """`ONEDNN_MAX_CPU_ISA=AVX2 ...`, or `(none)` for native."""
  return " ".join(f"{k}={v}" for k, v in settings(isa).items()) or "(none)"


def in_force():
  """The ISA variables of this process's environment (what a child got)."""
  return {k: os.environ[k] for k in VARIABLES if k in os.environ}


def cpu_flags(cpuinfo="/proc/cpuinfo"):
  """The CPU's feature flags (a set): /proc/cpuinfo, else `lscpu`."""
  try:
    with open(cpuinfo, encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True,
                         check=False).stdout
  except OSError:
    return set()
  for line in out.splitlines():
    if line.startswith("Flags:"):
      return set(line.split(":", 1)[1].split())
  return set()


def flag_summary(flags):
  """{flag: present} for `FLAGS` ('amx': any amx_* flag)."""
  return {f: (any(g.startswith("amx") for g in flags) if f == "amx"
              else f in flags) for f in FLAGS}


def versions():
  """Installed versions of the bench's libraries (None: not installed)."""
  out = {}
  for key, dists in (("tensorflow", ("tensorflow", "tensorflow-cpu")),
                     ("tensorflow_probability", ("tensorflow-probability",
                                                 "tfp-nightly")),
                     ("keras", ("keras",)), ("torch", ("torch",)),
                     ("normflows", ("normflows",))):
    out[key] = None
    for dist in dists:
      try:
        out[key] = importlib.metadata.version(dist)
        break
      except importlib.metadata.PackageNotFoundError:
        continue
  return out


def dispatch(stdout):
  """The ISA oneDNN or oneMKL reported in a child's verbose output."""
  for line in stdout.splitlines():
    if line.startswith("onednn_verbose") and ",isa:" in line:
      return line.split(",isa:", 1)[1].strip()
    if line.startswith("MKL_VERBOSE oneMKL"):
      found = re.search(r"\(Intel\(R\) ([^)]+)\)", line)
      return found.group(1) if found else line[len("MKL_VERBOSE "):]
  return None


def _child(isa, library, matmul_n):
  env = environment(isa)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env["ONEDNN_VERBOSE" if library == "tf" else "MKL_VERBOSE"] = "1"
  spec = {"isa_check": library, "isa": isa, "matmul_n": matmul_n}
  proc = subprocess.run([sys.executable, "-m", "bench", "--one",
                         json.dumps(spec)], capture_output=True, text=True,
                        env=env, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if proc.returncode or not lines:
    return {"error": proc.stderr.strip().splitlines()[-1:]}
  row = json.loads(lines[-1])
  row["dispatch"] = dispatch(proc.stdout)
  return row


def check(isas, matmul_n=MATMUL_N):
  """Per ISA setting (native always, first): TF's and torch's float32
  matmul GFLOP/s and dispatch, each from a child under that setting.
  Prints each as a JSON line; returns {isa: check}."""
  out = {}
  for isa in [NATIVE] + [i for i in isas if i != NATIVE]:
    row = {"isa": isa, "variables": settings(isa), "matmul_n": matmul_n}
    for library in ("tf", "torch"):
      got = _child(isa, library, matmul_n)
      row[library] = got
    out[isa] = row
    print(json.dumps({"isa_check": row}), flush=True)
  return out


def _rate(check_row, library):
  return (check_row or {}).get(library, {}).get("matmul_gflops")


def warnings(checks):
  """WARNING lines: a capped setting whose rate is not below native's, or
  whose library reported the same dispatch as native."""
  native = checks.get(NATIVE)
  lines = []
  for isa, row in checks.items():
    if isa == NATIVE:
      continue
    for library, name in (("tf", "TensorFlow"), ("torch", "PyTorch")):
      rate, base = _rate(row, library), _rate(native, library)
      if rate is None or base is None:
        lines.append(f"WARNING: {isa}: no {name} matmul rate to compare "
                     f"({row[library].get('error') or 'native failed'})")
        continue
      got, was = row[library].get("dispatch"), native[library].get("dispatch")
      if rate >= NOT_LOWERED * base:
        why = (f"although its library reports dispatching to {got!r} "
               f"(native: {was!r}): a noisy measurement, or kernels the cap "
               "does not reach" if got and got != was else
               "it may not be in force")
        lines.append(
            f"WARNING: the {isa} cap did NOT lower {name}'s float32 matmul "
            f"rate ({rate:.0f} vs native {base:.0f} GFLOP/s, "
            f"{rate / base:.2f}×), {why}")
      if got and got == was:
        lines.append(f"WARNING: under {isa} {name}'s library still "
                     f"dispatches to {got!r}, as native does")
  return lines


def header_lines(machine, checks=None):
  """The run header: CPU model and flags, versions, date, and per ISA
  setting the checked matmul rates (ratio to native) and dispatch."""
  flags = machine.get("cpu_flags", {})
  lines = [f"CPU: {machine['cpu']}, {machine['cores']} cores; flags: " +
           ", ".join(f"{f} {'yes' if flags.get(f) else 'no'}"
                     for f in FLAGS)]
  v = machine.get("versions", {})
  lines.append(
      f"versions: TensorFlow {v.get('tensorflow')}, TFP "
      f"{v.get('tensorflow_probability')}, Keras {v.get('keras')}, torch "
      f"{v.get('torch')}, normflows {v.get('normflows')}; date "
      f"{machine['date']}")
  if not checks:
    return lines
  n = next(iter(checks.values()))["matmul_n"]
  lines += ["", f"ISA settings, each checked in child processes of its own "
            f"(float32 {n}×{n} matmul, best of 5; ratio to native):", "",
            "| isa | environment | TF GFLOP/s | oneDNN dispatch (TF) | torch "
            "GFLOP/s | oneMKL dispatch (torch) | ATen |",
            "|---|---|---|---|---|---|---|"]
  native = checks.get(NATIVE)
  for isa, row in checks.items():
    cells = []
    for library in ("tf", "torch"):
      rate, base = _rate(row, library), _rate(native, library)
      cell = "error" if rate is None else f"{rate:.0f}"
      if rate is not None and base and isa != NATIVE:
        cell += f" ({rate / base:.2f}×)"
      cells += [cell, row[library].get("dispatch") or "–"]
    lines.append(f"| {isa} | {describe_settings(isa)} | " +
                 " | ".join(cells) + " | " +
                 f"{row['torch'].get('aten_capability') or '–'} |")
  found = warnings(checks)
  return lines + ([""] + found if found else [])
