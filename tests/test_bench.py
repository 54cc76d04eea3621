"""The bench's own machinery: layout search, PyTorch peers, the ratio table.

The timings themselves are benchmarks (`python -m bench`), never tests;
these check that the bench builds what it says at the size it says, and
that its summary is the median of same-pass ratios.
"""

import importlib.util
import json

import numpy as np
import pytest

from bench import models, report, runner

HAVE_TORCH_PEERS = all(importlib.util.find_spec(m) for m in ("torch",
                                                               "normflows"))
needs_torch = pytest.mark.skipif(
    not HAVE_TORCH_PEERS,
    reason='torch and normflows are the bench extra: pip install -e ".[bench]"'
    " (.ci/run installs it)")


@pytest.mark.parametrize("shape,target,checkerboard", [
    ((32, 32, 3), 200_000, "masked"),     # below the multiple-of-8 grid
    ((32, 32, 3), 220_000, "squeezed"),
    ((64, 64, 3), 5_000_000, "squeezed"),
])
def test_layout_search_within_five_percent(shape, target, checkerboard):
  model, params, widths = models.ours(shape, target, checkerboard=checkerboard)
  assert abs(params - target) <= 0.05 * target, (params, widths)
  assert model.count_params() == params
  assert model.checkerboard == checkerboard
  assert len(widths) == 3


def test_layout_search_names_the_reachable_range():
  with pytest.raises(ValueError, match=r"within 5% of 20,000 parameters for "
                     r"\(32, 32, 3\) \(smallest layout: [\d,]+\)"):
    models.ours((32, 32, 3), 20_000)


@needs_torch
@pytest.mark.parametrize("kind", ["nf_glow", "nf_realnvp"])
def test_torch_peer_size_training_and_samples(kind):
  from bench import torch_peers  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  built = torch_peers.build({"impl": kind, "target": 210_000}, (16, 16, 3), 8)
  assert abs(built["params"] - 210_000) <= 0.1 * 210_000
  assert built["size"] % models.WIDTH_STEP == 0
  assert torch.get_num_threads() >= 1
  # Denormals flushed: 1e-30 · 1e-10 is subnormal in float32, read as 0.
  assert float(torch.tensor(1e-30) * torch.tensor(1e-10)) == 0.0
  losses = [built["train"]() for _ in range(6)]
  assert all(np.isfinite(losses))
  assert losses[-1] < losses[0], losses
  # Pixel units: −log p(x) per dim sits near the uniform 8 bits at start.
  bpd = -built["log_prob"]().numpy() / (16 * 16 * 3 * np.log(2.0))
  assert np.all((bpd > 4.0) & (bpd < 20.0)), bpd
  samples = built["raw_sample"](8, [1, 2])
  assert samples.shape == (8, 16, 16, 3)
  assert np.array_equal(samples, built["raw_sample"](8, [1, 2]))
  assert not np.array_equal(samples, built["raw_sample"](8, [1, 3]))
  forward, train, sample = built["flops"]()
  assert forward > 0 and sample > 0 and train > 2 * forward


@needs_torch
def test_torch_peer_rejects_unknown_kind():
  from bench import torch_peers  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match="'nf_glow' or 'nf_realnvp'"):
    torch_peers.build_flow("glow", (16, 16, 3), 10_000)


def _row(impl, n, train, checkerboard=None):
  row = {"workload": "mnist", "preset": "small", "impl": impl, "jit": False,
         "pass": n, "parameters": 1000, "peak_rss_mb": 1.0,
         "train_images_per_second": train,
         "log_prob_images_per_second": 2 * train,
         "sample_images_per_second": 3 * train}
  if checkerboard:
    row["checkerboard"] = checkerboard
  return row


def test_table_ratio_is_median_of_same_pass_ratios(capsys):
  # Pass 1 is slow for both (a noisy pass): same-pass ratios are 2, 2, 3;
  # the ratio of medians would be 200/100 = 2 as well, but per pass 3 shows.
  rows = [_row("ours", 0, 200.0, "squeezed"), _row("nf_glow", 0, 100.0),
          _row("ours", 1, 60.0, "squeezed"), _row("nf_glow", 1, 30.0),
          _row("ours", 2, 300.0, "squeezed"), _row("nf_glow", 2, 100.0)]
  machine = {"cpu": "test", "cores": 2, "tensorflow": "x", "date": "d",
             "matmul_gflops": 100.0, "matmul_gflops_bfloat16": 100.0}
  report.table(rows, machine)
  out = capsys.readouterr().out
  line = next(l for l in out.splitlines()
              if l.startswith("| mnist | small | ours squeezed | 1,000"))
  cells = [c.strip() for c in line.split("|")]
  assert cells[5:8] == ["200", "400", "600"]  # medians over passes
  assert "**2.00×** (2.00, 2.00, 3.00)" in cells[8]
  assert cells[8].count("**2.00×**") == 3  # train, log_prob, sample


def test_variants_and_reference():
  class Args:  # pylint: disable=too-few-public-methods
    jit = "false,true"
    checkerboard = "masked,squeezed"
    mixed_precision = "none"
  variants = runner._variants(Args, ["ours", "nf_glow", "tfp_glow"])  # pylint: disable=protected-access
  labels = [(i, e.get("checkerboard"), e["jit"]) for i, e in variants]
  assert labels == [("ours", "masked", False), ("ours", "masked", True),
                    ("ours", "squeezed", False), ("ours", "squeezed", True),
                    ("nf_glow", None, False), ("tfp_glow", None, False),
                    ("tfp_glow", None, True)]
  assert runner._reference(["ours", "tfp_glow", "nf_glow"]) == "nf_glow"  # pylint: disable=protected-access
  assert runner._reference(["ours"]) == "ours"  # pylint: disable=protected-access


def test_quality_ablation_runs_are_valid_configs_and_one_lever_each():
  from bench import quality  # pylint: disable=import-outside-toplevel
  from training import configs  # pylint: disable=import-outside-toplevel
  runs = quality.ablation_runs()
  labels = [label for label, _, _ in runs]
  assert labels[0].startswith("baseline") and labels[-1] == "all levers"
  assert len(runs) == len(quality.ABLATION) + 2
  base = runs[0][2]
  for label, name, overrides in runs:
    configs.validate(dict(configs.load(name), **overrides))
    changed = {k for k in overrides if overrides[k] != base[k]}
    if label.startswith("+ "):
      assert changed == {k for k, v in quality.ABLATION[label[2:]].items()
                         if v != base[k]}
  assert {k for k in runs[-1][2] if runs[-1][2][k] != base[k]} == set().union(
      *(set(lever) for lever in quality.ABLATION.values()))


def test_quality_structure_runs_are_valid_and_at_equal_parameters():
  from bench import quality  # pylint: disable=import-outside-toplevel
  from training import configs  # pylint: disable=import-outside-toplevel
  runs = quality.structure_runs()
  assert len(runs) == len(quality.STRUCTURE) + 1
  assert runs[0][2] == quality.REAL_NVP_STRUCTURE
  reference = quality.config_parameters("mnist_fast",
                                        quality.REAL_NVP_STRUCTURE)
  for label, name, overrides in runs:
    configs.validate(dict(configs.load(name), **overrides))
    count = quality.config_parameters(name, overrides)
    assert abs(count - reference) <= 0.10 * reference, label
  with pytest.raises(ValueError, match="not within"):
    quality.structure_runs(tolerance=0.001)


def test_quality_config_contestant_reports_its_run(tmp_path):
  from bench import quality  # pylint: disable=import-outside-toplevel
  tiny = {"num_scales": 1, "num_res_blocks": 0, "num_filters": 4,
          "epochs": 2, "steps_per_epoch": 3, "validation_steps": 1,
          "test_steps": 1, "num_samples": 4, "interpolation_steps": 2,
          "ema_decay": 0.9, "test_iw_samples": 2}
  row = quality.run_config("digits", tiny, minutes=5, data_dir=None,
                           keep_dir=str(tmp_path / "kept"))
  assert row["steps"] == 6 and row["parameters"] > 0
  assert row["bound"] == "bits_per_dim" and row["iw_samples"] == 2
  assert 0 < row["test_iw_bits_per_dim"] and 0 < row["test_bits_per_dim"]
  assert 0 < row["train_seconds"] < 300
  assert (tmp_path / "kept" / "checkpoints" / "best.keras").exists()


# --isa (issue 28): the child's environment per ISA setting, the pass
# order, the per-ISA table and the run header. No child is timed here.


def test_isa_environment_of_a_child():
  from bench import isa  # pylint: disable=import-outside-toplevel
  parent = {"PATH": "/bin", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
            "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
  avx2 = isa.environment("avx2", parent)
  assert avx2["ONEDNN_MAX_CPU_ISA"] == "AVX2"        # TF's and torch's oneDNN
  assert avx2["ATEN_CPU_CAPABILITY"] == "avx2"       # PyTorch's own kernels
  assert avx2["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"   # torch's oneMKL GEMM
  assert avx2["PATH"] == "/bin"
  native = isa.environment("native", parent)
  assert native == {"PATH": "/bin"}  # none set, the parent's removed
  assert isa.settings("native") == {}
  assert isa.settings("avx512_core") == {
      "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx512",
      "MKL_ENABLE_INSTRUCTIONS": "AVX512"}
  assert isa.parse("native, AVX2,avx2") == ["native", "avx2"]
  with pytest.raises(ValueError, match="unknown ISA setting 'avx3'.*avx2"):
    isa.parse("native,avx3")


def test_runner_starts_each_child_under_its_isa(monkeypatch):
  from bench import isa  # pylint: disable=import-outside-toplevel
  seen = []

  class Done:  # pylint: disable=too-few-public-methods
    returncode, stderr = 0, ""

    def __init__(self, spec):
      self.stdout = "noise\n" + json.dumps(dict(spec, parameters=1))

  def fake_run(argv, env=None, **_):
    seen.append(env)
    return Done(json.loads(argv[-1]))
  monkeypatch.setattr(runner.subprocess, "run", fake_run)
  monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
  row = runner.run({"impl": "nf_glow", "isa": "avx2"})
  assert row["isa"] == "avx2"
  assert {k: seen[0][k] for k in isa.VARIABLES} == isa.settings("avx2")
  row = runner.run({"impl": "ours"})  # no isa: native, recorded as such
  assert row["isa"] == "native"
  assert not set(isa.VARIABLES) & set(seen[1])


class _Args:  # pylint: disable=too-few-public-methods
  passes, repeats, steps = 2, 1, 1
  workloads, presets = "mnist", "small"
  jit, checkerboard, mixed_precision = "false", "squeezed", "none"
  isa = "native,avx2"


def test_interleaved_runs_every_contestant_under_every_isa(monkeypatch):
  specs = []

  def fake_run(spec):
    specs.append(spec)
    row = dict(spec, parameters=1000 if spec["impl"] == "nf_glow" else 990)
    if spec["impl"] == "ours":
      row.update(size=[8, 16, 64], scales=3)
    return row
  monkeypatch.setattr(runner, "run", fake_run)
  rows = runner.interleaved(_Args, ["ours", "nf_glow"])
  order = [(s["pass"], s["impl"], s["isa"]) for s in specs]
  assert order == [(n, impl, isa) for n in (0, 1)
                   for impl in ("nf_glow", "ours")   # the reference first
                   for isa in ("native", "avx2")]
  assert [r["isa"] for r in rows] == [s["isa"] for s in specs]
  # Extras (FLOPs, serving, tf.data) once per model: pass 0, first ISA.
  assert [s["extras"] for s in specs] == [True, False] * 2 + [False] * 4
  # The same model under every ISA: ours sized to the reference and pinned
  # from its first row.
  ours = [s for s in specs if s["impl"] == "ours"]
  assert all(s["target"] == 1000 for s in ours)
  assert "size" not in ours[0]
  assert all(s["size"] == [8, 16, 64] for s in ours[1:])


def _isa_row(impl, n, train, isa, checkerboard=None):
  return dict(_row(impl, n, train, checkerboard), isa=isa)


def test_table_has_a_column_group_per_isa_and_ratios_within_one(capsys):
  # native: ours 2× nf_glow every pass; avx2: ours 3× (its own nf_glow is
  # slower). A ratio across settings (ours avx2 / nf_glow native) would
  # read 1.5×.
  rows = []
  for n in range(3):
    rows += [_isa_row("nf_glow", n, 100.0, "native"),
             _isa_row("nf_glow", n, 50.0, "avx2"),
             _isa_row("ours", n, 200.0, "native", "squeezed"),
             _isa_row("ours", n, 150.0, "avx2", "squeezed")]
  machine = {"cpu": "test", "cores": 2, "tensorflow": "x", "date": "d",
             "matmul_gflops": 100.0, "matmul_gflops_bfloat16": 100.0}
  report.table(rows, machine)
  out = capsys.readouterr().out
  head = next(l for l in out.splitlines() if l.startswith(
      "| workload | preset | impl | params | native"))
  cells = [c.strip() for c in head.split("|")][5:-1]
  assert cells == [
      "native: train / log_prob / sample img/s",
      "native: vs nf_glow train / log_prob / sample",
      "avx2: train / log_prob / sample img/s",
      "avx2: vs nf_glow train / log_prob / sample",
      "avx2 / native (same impl) train / log_prob / sample"]
  line = next(l for l in out.splitlines()
              if l.startswith("| mnist | small | ours squeezed | 1,000"))
  cells = [c.strip() for c in line.split("|")][5:-1]
  assert cells[0] == "200 / 400 / 600" and cells[2] == "150 / 300 / 450"
  assert cells[1].count("**2.00×** (2.00, 2.00, 2.00)") == 3
  assert cells[3].count("**3.00×** (3.00, 3.00, 3.00)") == 3
  assert "1.50" not in cells[1] + cells[3]
  assert cells[4].count("**0.75×**") == 3  # ours avx2 / ours native
  # The per-pass table names each row's setting.
  assert "| mnist | small | nf_glow | avx2 | False | 0 | 1,000 | 50 |" in out


def test_table_without_isa_keeps_its_columns(capsys):
  rows = [_row("ours", 0, 200.0, "squeezed"), _row("nf_glow", 0, 100.0)]
  machine = {"cpu": "test", "cores": 2, "tensorflow": "x", "date": "d",
             "matmul_gflops": 100.0, "matmul_gflops_bfloat16": 100.0}
  report.table(rows, machine)
  out = capsys.readouterr().out
  assert "isa" not in out
  assert ("| workload | preset | impl | params | train img/s | log_prob "
          "img/s | sample img/s | vs nf_glow train / log_prob / sample |"
          in out)


def _check(tf_rate, torch_rate, tf_isa, mkl_isa, aten, variables=None):
  return {"variables": variables or {}, "matmul_n": 4096,
          "tf": {"matmul_gflops": tf_rate, "dispatch": tf_isa},
          "torch": {"matmul_gflops": torch_rate, "dispatch": mkl_isa,
                    "aten_capability": aten}}


def test_run_header_lists_cpu_flags_versions_and_isa_checks(tmp_path):
  from bench import isa  # pylint: disable=import-outside-toplevel
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nmodel name\t: Test Xeon\nflags\t\t: "
                     "fpu sse2 avx2 fma avx512f avx512_vnni amx_tile "
                     "amx_int8\n")
  machine = {"cpu": "Test Xeon", "cores": 2, "date": "2026-12-07",
             "cpu_flags": isa.flag_summary(isa.cpu_flags(str(cpuinfo))),
             "versions": {"tensorflow": "2.21.0", "torch": "2.13.0+cpu",
                          "normflows": "1.7.3", "keras": "3.15.1",
                          "tensorflow_probability": "0.25.0"}}
  checks = {"native": _check(400.0, 390.0, "Intel AVX-512", "AVX-512",
                             "AVX512"),
            "avx2": _check(210.0, 200.0, "Intel AVX2", "AVX2", "AVX2")}
  lines = isa.header_lines(machine, checks)
  text = "\n".join(lines)
  assert lines[0] == ("CPU: Test Xeon, 2 cores; flags: avx2 yes, avx512f "
                      "yes, avx512_vnni yes, avx512_bf16 no, avx512_fp16 "
                      "no, amx yes")
  for part in ("TensorFlow 2.21.0", "TFP 0.25.0", "Keras 3.15.1",
               "torch 2.13.0+cpu", "normflows 1.7.3", "2026-12-07"):
    assert part in lines[1]
  assert ("| avx2 | ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 "
          "MKL_ENABLE_INSTRUCTIONS=AVX2 | 210 (0.53×) | Intel AVX2 | "
          "200 (0.51×) | AVX2 | AVX2 |") in text
  assert "| native | (none) | 400 | Intel AVX-512 | 390 |" in text
  assert "WARNING" not in text
  # A cap that changes nothing is called out.
  checks["avx2"] = _check(395.0, 200.0, "Intel AVX-512", "AVX2", "AVX2")
  found = isa.warnings(checks)
  assert len(found) == 2 and all(w.startswith("WARNING") for w in found)
  assert "did NOT lower TensorFlow's" in found[0] and "0.99×" in found[0]
  assert "it may not be in force" in found[0]
  assert "'Intel AVX-512', as native does" in found[1]
  assert found[0] in isa.header_lines(machine, checks)
  # Not lowered, but the library did switch: said so (a noisy rate).
  checks["avx2"] = _check(210.0, 395.0, "Intel AVX2", "AVX2", "AVX2")
  found = isa.warnings(checks)
  assert len(found) == 1 and "did NOT lower PyTorch's" in found[0]
  assert "reports dispatching to 'AVX2' (native: 'AVX-512')" in found[0]


def test_isa_dispatch_read_from_verbose_output():
  from bench import isa  # pylint: disable=import-outside-toplevel
  onednn = ("onednn_verbose,v1,info,oneDNN v3.7.1\n"
            "onednn_verbose,v1,info,cpu,isa:Intel AVX2\n{\"x\": 1}\n")
  assert isa.dispatch(onednn) == "Intel AVX2"
  mkl = ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for "
         "Intel(R) 64 architecture Intel(R) Advanced Vector Extensions 2 "
         "(Intel(R) AVX2) enabled processors, Lnx 2.30GHz lp64 gnu_thread\n")
  assert isa.dispatch(mkl) == "AVX2"
  assert isa.dispatch("{}") is None


def test_bench_rejects_unknown_isa(capsys):
  from bench import __main__ as bench_main  # pylint: disable=import-outside-toplevel
  with pytest.raises(SystemExit):
    bench_main.main(["--isa", "native,avx3"])
  assert "unknown ISA setting 'avx3'" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    bench_main.main(["--isa", "avx2", "--finiteness"])


def test_bench_refuses_xla_under_a_cap(capsys):
  """XLA ignores the ISA variables (bench.isa), so a jitted row under a cap
  would time the native ISA: refused before anything runs; native is
  allowed, and a capped run without XLA is not refused."""
  from bench import __main__ as bench_main  # pylint: disable=import-outside-toplevel
  from bench import isa  # pylint: disable=import-outside-toplevel
  with pytest.raises(SystemExit):
    bench_main.main(["--isa", "native,avx2", "--jit", "false,true"])
  err = capsys.readouterr().err
  assert "--jit true with --isa avx2" in err and "native" in err
  assert isa.jit_refused(["native", "avx2", "avx512_core"], [False, True]) == [
      "avx2", "avx512_core"]
  assert isa.jit_refused(["native", "avx2"], [False]) == []
  assert isa.jit_refused(["native"], [True, False]) == []


# bench.profile --by op_type (issue 28): op names as TF's profiler reports
# them for our train step and sampling (mnist_fast's Glow step), and the
# category each belongs to.
_FWD = ("StatefulPartitionedCall/real_nvp_5_1/RealNVP/log_prob/real_nvp_flow/"
        "forward/scale_0/forward/")
_GRAD = ("StatefulPartitionedCall/gradient_tape/real_nvp_1/RealNVP/log_prob/"
         "real_nvp_flow/forward/scale_0/forward/")
_INV = ("real_nvp_flow/inverse/scale_0/inverse/factor_out_s0/inverse/"
        "jointmap_of_flatten_2_and_scale_1/inverse/scale_1/inverse/")


@pytest.mark.parametrize("name,op_type,category", [
    (_GRAD + "coupling_2_s0_checkerboard0/forward/st_net_2_1/in_conv_1/"
     "Conv2DBackpropFilter", "_MklNativeConv2DBackpropFilterWithBias",
     "convolutions"),
    (_FWD + "coupling_0_s0_checkerboard0/forward/st_net_0_1/in_conv_1/"
     "BiasAdd", "_MklNativeFusedConv2D", "convolutions"),
    (_GRAD + "coupling_0_s0_checkerboard0/forward/st_net_0_1/out_conv_1/"
     "Conv2DBackpropInput", "_MklNativeConv2DBackpropInput", "convolutions"),
    (_INV + "coupling_10_s1_channel0/inverse/st_net_10_1/block0_conv1_1/"
     "Conv2D", "_MklNativeConv2D", "convolutions"),
    (_INV + "coupling_15_s2_checkerboard1/inverse/st_net_15_1/block0_conv1_1/"
     "Square", "Square", "weight norm"),
    (_GRAD + "coupling_0_s0_checkerboard0/forward/st_net_0_1/in_conv_1/"
     "mul_grad/Mul", "Mul", "weight norm"),
    (_GRAD + "coupling_0_s0_checkerboard0/forward/st_net_0_1/out_bn_1/"
     "FusedBatchNormGradV3", "_MklNativeFusedBatchNormGradV3", "batch norm"),
    (_FWD + "coupling_8_s1_checkerboard0/forward/st_net_8_1/block0_bn2_1/"
     "FusedBatchNormV3", "_MklNativeFusedBatchNormEx", "batch norm"),
    (_GRAD + "batch_norm_2_s0/forward/Reciprocal", "Reciprocal",
     "batch norm"),
    (_FWD + "coupling_3_s0_channel0/forward/Exp", "Exp",
     "coupling arithmetic"),
    (_FWD + "coupling_6_s1_checkerboard0/forward/st_net_6_1/mul", "Mul",
     "coupling arithmetic"),  # s = scale·tanh(raw)
    (_GRAD + "coupling_15_s2_checkerboard1/forward/st_net_15_1/ReluGrad_1",
     "ReluGrad", "coupling arithmetic"),
    (_FWD + "actnorm_1_s0/forward/mul_2", "Mul", "actnorm"),
    (_GRAD + "conv1x1_1_s0/forward/ScaleMatvecLU/forward/MatVec/MatMul/"
     "MatMul", "_MklBatchMatMulV2", "1×1 conv"),  # not "convolutions"
    (_FWD + "factor_out_s0/forward/jointmap_of_flatten_2_and_scale_1/forward/"
     "scale_1/forward/split_prior_s1/forward/split_net_1_1/conv_1/BiasAdd",
     "_MklNativeFusedConv2D", "split prior + base density"),
    ("StatefulPartitionedCall/real_nvp_1/RealNVP/log_prob/IndependentNormal/"
     "log_prob/Normal/log_prob/SquaredDifference", "SquaredDifference",
     "split prior + base density"),
    ("StatefulPartitionedCall/real_nvp_5_1/RealNVP/log_prob/real_nvp_flow/"
     "forward/logit_preprocess/forward/Log1p/unary_ops_composition",
     "_UnaryOpsComposition", "logit preprocessing"),
    ("StatefulPartitionedCall/adam/Sub_895/ReadVariableOp", "ReadVariableOp",
     "Adam"),
    ("StatefulPartitionedCall/adam/AssignSubVariableOp_61",
     "AssignSubVariableOp", "Adam"),
    ("StatefulPartitionedCall/AddN_214", "AddN", "other"),
    (_GRAD + "squeeze_s0/forward/transpose/forward/transpose/transpose",
     "_MklTranspose", "other"),
])
def test_op_type_classifier(name, op_type, category):
  from bench import op_profile  # pylint: disable=import-outside-toplevel
  assert op_profile.classify(name, op_type) == category
  assert category in op_profile.CATEGORIES


def test_op_profile_splits_the_clock_between_concurrent_ops(capsys):
  from bench import op_profile  # pylint: disable=import-outside-toplevel
  ms = 10 ** 9  # picoseconds
  events = [("c/st_net_0/in_conv/Conv2D", "Conv2D", 0, 4 * ms),
            ("adam/Mul", "Mul", 2 * ms, 4 * ms),  # overlaps 2 ms
            ("AddN", "AddN", 8 * ms, 2 * ms)]
  summary = op_profile.summarize(events, steps=2)
  cats = summary["categories"]
  assert cats["convolutions"] == (1.5, 2.0, 0.5)  # wall, summed, ops / step
  assert cats["Adam"] == (1.5, 2.0, 0.5)
  assert cats["other"] == (1.0, 1.0, 0.5)
  assert summary["wall_ms"] == 4.0 and summary["op_ms"] == 5.0
  op_profile.table("t", summary, step_ms=4.4, profiled_ms=5.0)
  out = capsys.readouterr().out
  assert "| convolutions | 1.50 | 37.5% | 2.00 | 0 |" in out
  assert "unattributed (step without the profiler − categories): +0.40 ms" \
      in out and "WARNING" not in out
  op_profile.table("t", summary, step_ms=8.0, profiled_ms=9.0)
  assert "WARNING: the categories do not add up" in capsys.readouterr().out


def test_op_profile_reads_the_profilers_trace(tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from bench import op_profile  # pylint: disable=import-outside-toplevel
  kernel = tf.Variable(tf.random.normal([3, 3, 4, 8]))
  slot = tf.Variable(tf.zeros([8]))

  @tf.function
  def step(x):
    with tf.name_scope("coupling_0_s0_checkerboard0"):
      with tf.name_scope("st_net_0"):
        with tf.name_scope("in_conv"):
          w = kernel * tf.math.rsqrt(tf.reduce_sum(tf.square(kernel)))
          h = tf.nn.conv2d(x, w, 1, "SAME")
        h = tf.nn.relu(h)
      y = tf.exp(-h)
    with tf.name_scope("adam"):
      slot.assign_sub(0.1 * tf.reduce_mean(y, axis=[0, 1, 2]))
    return y
  x = tf.random.normal([8, 16, 16, 4])
  step(x)
  events, seconds = op_profile.profile(lambda: step(x), 3, str(tmp_path))
  summary = op_profile.summarize(events, 3)
  cats = summary["categories"]
  assert cats["convolutions"][2] == 1  # one conv op per step
  for category in ("weight norm", "coupling arithmetic", "Adam"):
    assert cats[category][2] >= 1, (category, summary)
  assert 0 < summary["wall_ms"] <= summary["op_ms"]
  assert summary["wall_ms"] <= 1e3 * seconds


def test_profile_by_op_type_runs_in_a_child_under_its_isa(monkeypatch):
  from bench import isa, profile  # pylint: disable=import-outside-toplevel
  calls = []

  class Done:  # pylint: disable=too-few-public-methods
    returncode = 0

  def fake_run(argv, env=None, check=False):
    calls.append((argv, env))
    return Done()
  monkeypatch.setattr(profile, "peer_target", lambda w, p: (478248, "stub"))
  monkeypatch.setattr(profile.subprocess, "run", fake_run)
  assert profile.main(["--by", "op_type", "--isa", "avx2", "--workload",
                       "mnist", "--checkerboard", "masked",
                       "--glow_step"]) == 0
  argv, env = calls[0]
  assert argv[1:3] == ["-m", "bench.profile"] and "--glow_step" in argv
  assert argv[-3:] == ["--target", "478248", "--child"]
  assert {k: env.get(k) for k in isa.VARIABLES} == isa.settings("avx2")
  with pytest.raises(SystemExit):  # one setting per profile
    profile.main(["--by", "op_type", "--isa", "native,avx2"])


def test_glow_step_is_mnist_fasts_and_one_definition():
  from training import configs  # pylint: disable=import-outside-toplevel
  config = configs.load("mnist_fast")
  assert models.GLOW_STEP == {k: config[k] for k in models.GLOW_STEP}
  assert models.STRUCTURES == {
      "plain": {}, "glow": models.GLOW_STEP, "spline": models.SPLINE,
      "glow_spline": dict(models.GLOW_STEP, **models.SPLINE)}
  assert models.SPLINE["coupling"] == "spline"
  with pytest.raises(ValueError, match="unknown structure 'glo'.*'glow'"):
    models.structure_options("glo")


# --structure (issue 28): ours with mnist_fast's Glow step, sized with its
# extra parameters counted, named in rows and tables. No child is timed.


def test_structure_variant_builds_ours_with_mnist_fasts_glow_step():
  from bench import contestants  # pylint: disable=import-outside-toplevel
  from training import configs  # pylint: disable=import-outside-toplevel
  config = configs.load("mnist_fast")

  class Args:  # pylint: disable=too-few-public-methods
    jit = "false"
    checkerboard = "masked,squeezed"
    structure = "plain,glow"
    mixed_precision = "none"
  variants = runner._variants(Args, ["ours", "nf_glow"])  # pylint: disable=protected-access
  assert [e for _, e in variants] == [
      {"checkerboard": "masked", "jit": False},  # plain: no structure key
      {"checkerboard": "masked", "jit": False, "structure": "glow"},
      {"checkerboard": "squeezed", "jit": False},
      {"checkerboard": "squeezed", "jit": False, "structure": "glow"},
      {"jit": False}]
  for impl, extra in variants[:4]:
    options = contestants.ours_options(dict(extra, impl=impl))
    glow = {k: v for k, v in options.items() if k != "checkerboard"}
    assert options["checkerboard"] == extra["checkerboard"]
    if extra.get("structure") == "glow":
      assert glow == {k: config[k] for k in ("actnorm", "permutation",
                                             "prior")}
    else:
      assert glow == {}
  del Args.structure  # an args without --structure: plain only
  assert len(runner._variants(Args, ["ours"])) == 2  # pylint: disable=protected-access


@pytest.mark.parametrize("workload", ["mnist", "cifar"])
@pytest.mark.parametrize("checkerboard", ["masked", "squeezed"])
def test_glow_step_layout_within_ten_percent_of_the_peer(workload,
                                                         checkerboard):
  from bench import profile  # pylint: disable=import-outside-toplevel
  from bench.common import WORKLOADS  # pylint: disable=import-outside-toplevel
  # normflows Glow's count at preset small (the preset's without torch).
  target, _ = profile.peer_target(workload, "small")
  shape = WORKLOADS[workload]
  model, params, widths = models.ours(shape, target,
                                      checkerboard=checkerboard,
                                      **models.structure_options("glow"))
  assert (model.actnorm, model.permutation, model.prior_name) == (
      True, "conv1x1", "split")
  assert params == model.count_params()
  trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
  # Both the reported count and the trainable one (the peers') match.
  for count in (params, trainable):
    assert abs(count - target) <= 0.10 * target, (count, target, widths)
  # The Glow step's own layers are in the count: the same widths without
  # it are smaller.
  plain, _, _ = models.ours(shape, None, num_scales=len(widths),
                            num_res_blocks=models.OURS_BLOCKS,
                            num_filters=widths, checkerboard=checkerboard)
  assert plain.count_params() < params


def test_interleaved_pins_each_structure_on_its_own(monkeypatch):
  specs = []

  def fake_run(spec):
    specs.append(spec)
    row = dict(spec, parameters=1000 if spec["impl"] == "nf_glow" else 990)
    if spec["impl"] == "ours":
      glow = spec.get("structure") == "glow"
      row.update(size=[8, 16, 72 if glow else 64], scales=3)
    return row
  monkeypatch.setattr(runner, "run", fake_run)

  class Args(_Args):  # pylint: disable=too-few-public-methods
    structure = "plain,glow"
  runner.interleaved(Args, ["ours", "nf_glow"])
  later = [s for s in specs if s["impl"] == "ours" and s["pass"] == 1]
  assert [(s.get("structure"), s["isa"], s["size"]) for s in later] == [
      (None, "native", [8, 16, 64]), (None, "avx2", [8, 16, 64]),
      ("glow", "native", [8, 16, 72]), ("glow", "avx2", [8, 16, 72])]


def test_table_names_the_structure(capsys):
  rows = []
  for n in range(2):
    rows += [_row("nf_glow", n, 100.0), _row("ours", n, 200.0, "masked"),
             dict(_row("ours", n, 150.0, "masked"), structure="glow")]
  machine = {"cpu": "test", "cores": 2, "tensorflow": "x", "date": "d",
             "matmul_gflops": 100.0, "matmul_gflops_bfloat16": 100.0}
  report.table(rows, machine)
  out = capsys.readouterr().out
  assert "| mnist | small | ours masked glow | False | 1 | 1,000 | 150 |" \
      in out  # every pass
  line = next(l for l in out.splitlines()
              if l.startswith("| mnist | small | ours masked glow | 1,000"))
  assert line.count("**1.50×** (1.50, 1.50)") == 3  # vs nf_glow, medians
  line = next(l for l in out.splitlines()
              if l.startswith("| mnist | small | ours masked | 1,000"))
  assert line.count("**2.00×** (2.00, 2.00)") == 3  # plain: as before
  with_isa = [dict(r, isa=isa) for r in rows for isa in ("native", "avx2")]
  report.table(with_isa, machine)
  out = capsys.readouterr().out
  assert "| mnist | small | ours masked glow | avx2 | False | 0 |" in out
  assert any(l.startswith("| mnist | small | ours masked glow | 1,000 | "
                          "150 / 300 / 450 |") for l in out.splitlines())


def test_bench_rejects_unknown_structure(capsys):
  from bench import __main__ as bench_main  # pylint: disable=import-outside-toplevel
  with pytest.raises(SystemExit):
    bench_main.main(["--structure", "plain,glo"])
  assert "--structure: unknown ['glo']" in capsys.readouterr().err


def test_quality_runs_every_contestant_under_its_isa_setting(monkeypatch,
                                                             capsys):
  """`python -m bench.quality --isa avx2` caps each contestant's process
  (oneDNN, ATen, oneMKL) and labels its row; native removes caps the parent
  has. One setting per invocation."""
  import subprocess  # pylint: disable=import-outside-toplevel
  from bench import quality  # pylint: disable=import-outside-toplevel
  envs = []

  def fake_run(cmd, **kwargs):
    envs.append(kwargs["env"])
    return subprocess.CompletedProcess(cmd, 0, '{"impl": "nf_glow"}\n', "")

  monkeypatch.setattr(quality.subprocess, "run", fake_run)
  args = quality._parser().parse_args(["--isa", "avx2"])  # pylint: disable=protected-access
  assert quality._run(0, ("nf_glow", None, None), args)["isa"] == "avx2"  # pylint: disable=protected-access
  assert (envs[0]["ONEDNN_MAX_CPU_ISA"], envs[0]["ATEN_CPU_CAPABILITY"],
          envs[0]["MKL_ENABLE_INSTRUCTIONS"]) == ("AVX2", "avx2", "AVX2")
  monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
  quality._run(0, ("nf_glow", None, None), quality._parser().parse_args([]))  # pylint: disable=protected-access
  assert "ONEDNN_MAX_CPU_ISA" not in envs[1]
  for bad, message in (("avx2,native", "one setting per run"),
                       ("avx9", "unknown ISA setting 'avx9'")):
    with pytest.raises(SystemExit):
      quality.main(["--isa", bad])
    assert message in capsys.readouterr().err
