"""The tables of `python -m bench` (Markdown, printed after the JSON rows).

`table` is the full bench's: every pass, FLOPs / serving / tf.data per
model, and the medians over passes with ours / peer as the median of the
same-pass ratios; `finiteness_table` and `scaling_table` are those of
`--finiteness` and `--scaling`. Rows under an ISA setting other than native
(`--isa`, the row's `isa`) get an isa column in the per-pass and FLOPs
tables and a column group per setting in the medians, where every ratio is
taken within one setting (and each setting / the first, same contestant);
with native alone the tables are as they were before `--isa`.
"""

import statistics

from bench import isa as isa_lib

FIGURES = ("train_images_per_second", "log_prob_images_per_second",
           "sample_images_per_second")


def _fmt(value, spec=".0f"):
  return "–" if value is None else format(value, spec)


def _pct(fraction):
  return "–" if fraction is None else f"{100 * fraction:.2f}%"


def _label(row):
  """`ours masked`, `ours squeezed glow` (a structure other than plain,
  `--structure`), `ours squeezed mixed_bfloat16`, `nf_glow`, ..."""
  parts = [row["impl"]]
  if row["impl"] == "ours":
    parts.append(row.get("checkerboard", "masked"))
    if row.get("structure", "plain") != "plain":
      parts.append(row["structure"])
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


def _isa(row):
  return row.get("isa", isa_lib.NATIVE)


def isas_of(rows):
  """The ISA settings of `rows`, in order of first appearance."""
  return list(dict.fromkeys(_isa(r) for r in rows))


def _peaks(machine, checks, isas):
  """float32 matmul GFLOP/s per ISA setting: this process's peak for
  native, the header's TF check for the others."""
  peaks = {}
  for isa in isas:
    check = ((checks or {}).get(isa) or {}).get("tf", {})
    peaks[isa] = (machine["matmul_gflops"] if isa == isa_lib.NATIVE or
                  "matmul_gflops" not in check else check["matmul_gflops"])
  return peaks


def table(rows, machine, checks=None):
  """The full bench's tables of `rows` (`bench.runner.interleaved`);
  `checks`: `bench.isa.check`'s, printed in the header."""
  peak = machine["matmul_gflops"]
  print(f"\nmachine: {machine['cpu']}, {machine['cores']} cores, TF "
        f"{machine['tensorflow']}, float32 matmul peak {peak:.0f} GFLOP/s "
        f"(bfloat16: {machine['matmul_gflops_bfloat16']:.0f}), "
        f"{machine['date']}")
  if checks is not None:
    print("\n".join(isa_lib.header_lines(machine, checks)))
  isas = isas_of(rows)
  show_isa = isas != [isa_lib.NATIVE]
  _every_pass(rows, show_isa)
  ok = [r for r in rows if "error" not in r]
  labels = []
  for r in ok:
    if _label(r) not in labels:
      labels.append(_label(r))
  passes = sorted({r["pass"] for r in ok})
  _flops(ok, passes, _peaks(machine, checks, isas), show_isa)
  if show_isa:
    _medians_by_isa(ok, labels, passes, isas)
  else:
    _medians(ok, labels, passes)


def _every_pass(rows, show_isa=False):
  isa_head, isa_rule = ("isa | ", "---|") if show_isa else ("", "")
  print("\nEvery pass (images/s, batch 64):")
  print(f"\n| workload | preset | impl | {isa_head}jit | pass | params | "
        "train img/s | log_prob img/s | sample img/s | all-finite samples "
        "(unclipped) | finite pixels outside [0, 256) | peak RSS MB |")
  print(f"|---|---|---|{isa_rule}---|---|---|---|---|---|---|---|---|")
  for r in rows:
    isa = f"{_isa(r)} | " if show_isa else ""
    if "error" in r:
      print(f"| {r['workload']} | {r['preset']} | {_label(r)} | {isa}"
            f"{r['jit']} | {r['pass']} | error: {r['error']} ||||||")
      continue
    print(f"| {r['workload']} | {r['preset']} | {_label(r)} | {isa}"
          f"{r['jit']} | {r['pass']} | {r['parameters']:,} | " +
          " | ".join(_fmt(r.get(k)) for k in FIGURES) +
          f" | {_fmt(r.get('samples_finite_fraction'), '.2f')} | "
          f"{_pct(r.get('pixels_out_of_range_fraction'))} | "
          f"{r['peak_rss_mb']:.0f} |")


def _flops(ok, passes, peaks, show_isa=False):
  """FLOPs, serving latency and tf.data rows (the `extras` ones, measured
  under the first ISA setting), with the training step's GFLOP/s at the
  median over passes of its train img/s: one row per ISA setting, against
  that setting's matmul peak (`peaks`)."""
  extras = [r for r in ok if "train_mflops_per_image" in r]
  if not extras:
    return
  isa_head, isa_rule = ("isa | ", "---|") if show_isa else ("", "")
  print("\nFLOPs per image (TF: graph profiler, every op; torch: "
        "FlopCounterMode, matmuls and convolutions only) and the training "
        "step's achieved rate at the median train img/s" +
        (" under each ISA setting, as a % of that setting's float32 matmul "
         "rate (native: this process; others: the header's check):"
         if show_isa else ":"))
  print(f"\n| workload | preset | impl | {isa_head}fwd MFLOP/img | sample "
        "MFLOP/img | train MFLOP/img | train GFLOP/s | % of matmul peak | "
        "serve N=1 ms | serve N=64 ms | tf.data img/s |")
  print(f"|---|---|---|{isa_rule}---|---|---|---|---|---|---|---|")
  for r in extras:
    w, p, label = r["workload"], r["preset"], _label(r)
    for isa, peak in peaks.items():
      rows = [q for q in ok if _isa(q) == isa]
      rates = [v for v in (_best(rows, label, "train_images_per_second", w,
                                 p, n) for n in passes) if v]
      if not rates:
        continue
      gflops = r["train_mflops_per_image"] * statistics.median(rates) / 1e3
      cell = f"{isa} | " if show_isa else ""
      print(f"| {w} | {p} | {label} | {cell}"
            f"{r['forward_mflops_per_image']:.0f} | "
            f"{r['sample_mflops_per_image']:.0f} | "
            f"{r['train_mflops_per_image']:.0f} | {gflops:.1f} | "
            f"{100 * gflops / peak:.1f}% | "
            f"{_fmt(r.get('serving_log_prob_p50_ms_n1'), '.1f')} | "
            f"{_fmt(r.get('serving_log_prob_p50_ms_n64'), '.1f')} | "
            f"{_fmt(r.get('data_images_per_second'))} |")


def _cells(ok):
  """The (workload, preset) pairs of `ok`, in order of first appearance."""
  return [(w, p) for w in dict.fromkeys(r["workload"] for r in ok)
          for p in dict.fromkeys(r["preset"] for r in ok)]


def _pass_medians(rows, label, w, p, passes):
  """Per figure of `FIGURES`: the median over `passes` of `label`'s best
  value in `rows` (`None` if it has none)."""
  medians = []
  for key in FIGURES:
    vals = [v for v in (_best(rows, label, key, w, p, n) for n in passes)
            if v]
    medians.append(statistics.median(vals) if vals else None)
  return medians


def _medians(ok, labels, passes):
  """Per workload, preset and contestant: the medians over passes and, for
  ours, the ratio to each peer (the median of the same-pass ratios)."""
  cells = _cells(ok)
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
      medians = _pass_medians(ok, label, w, p, passes)
      ratio_cells = [_ratios(ok, label, peer, w, p, passes)
                     if label.startswith("ours") else "" for peer in peers]
      print(f"| {w} | {p} | {label} | {params:,} | " +
            " | ".join(_fmt(m) for m in medians) + " | " +
            " | ".join(ratio_cells) + " |")


def _ratios(ok, label, peer, w, p, passes, peer_rows=None):
  """`label` / `peer` per figure: **median** (each pass's ratio); the
  peer's figures from `peer_rows` when given (another ISA setting)."""
  peer_rows = ok if peer_rows is None else peer_rows
  parts = []
  for key in FIGURES:
    per_pass = [a / b for a, b in (
        (_best(ok, label, key, w, p, n), _best(peer_rows, peer, key, w, p, n))
        for n in passes) if a and b]
    parts.append("–" if not per_pass else
                 f"**{statistics.median(per_pass):.2f}×** (" + ", ".join(
                     f"{v:.2f}" for v in per_pass) + ")")
  return " / ".join(parts)


def _medians_by_isa(ok, labels, passes, isas):
  """`_medians` with a column group per ISA setting: the medians over
  passes (train / log_prob / sample img/s), ours / each peer within that
  setting, and for every setting after the first, this setting / the
  first for the same contestant (each the median of same-pass ratios)."""
  cells = _cells(ok)
  peers = [l for l in labels if not l.startswith("ours")]
  by_isa = {isa: [r for r in ok if _isa(r) == isa] for isa in isas}
  head = []
  for i, isa in enumerate(isas):
    head.append(f"{isa}: train / log_prob / sample img/s")
    head += [f"{isa}: vs {peer} train / log_prob / sample" for peer in peers]
    if i:
      head.append(f"{isa} / {isas[0]} (same impl) train / log_prob / sample")
  print(f"\nMedians over {len(passes)} interleaved passes per ISA setting "
        "(best of the jit settings within a pass); every ratio = median "
        "over passes of the same-pass ratio within one ISA setting, per-pass "
        "ratios in brackets:")
  print("\n| workload | preset | impl | params | " + " | ".join(head) + " |")
  print("|---|---|---|---|" + "---|" * len(head))
  for w, p in cells:
    for label in labels:
      params = _best(ok, label, "parameters", w, p)
      if params is None:
        continue
      row = []
      for i, isa in enumerate(isas):
        rows = by_isa[isa]
        medians = _pass_medians(rows, label, w, p, passes)
        row.append(" / ".join(_fmt(m) for m in medians))
        row += [_ratios(rows, label, peer, w, p, passes)
                if label.startswith("ours") else "" for peer in peers]
        if i:
          row.append(_ratios(rows, label, label, w, p, passes,
                             peer_rows=by_isa[isas[0]]))
      print(f"| {w} | {p} | {label} | {params:,} | " + " | ".join(row) +
            " |")


def finiteness_table(rows):
  """The `--finiteness` tables of `rows` (`bench.runner.finiteness`)."""
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


def scaling_table(rows):
  """The `--scaling` table of `rows` (`bench.runner.scaling`)."""
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
