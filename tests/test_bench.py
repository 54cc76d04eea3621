"""The bench's own machinery: layout search, PyTorch peers, the ratio table.

The timings themselves are benchmarks (`python -m bench`), never tests;
these check that the bench builds what it says at the size it says, and
that its summary is the median of same-pass ratios.
"""

import importlib.util

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
