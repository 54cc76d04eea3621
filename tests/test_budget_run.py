"""`realnvp-train --max_train_minutes M` end to end on the embedded digits
(issue 29): metrics.json records each phase's wall time and the evaluation
subsets; the whole command stays within the budget plus a margin; a
time-keyed schedule ends with progress 1; the importance-weighted subset
keeps each image's evaluation noise."""

import json
import math
import os

import numpy as np
import pytest

from training import builders
from training import configs
from training import results
from training import train as train_cli

TINY = ["--num_scales", "1", "--num_res_blocks", "1", "--num_filters", "8",
        "--num_samples", "16", "--interpolation_steps", "3", "--verbose", "0",
        "--export", "false"]
PHASES = {"setup", "fit", "score_reference", "evaluation", "iw_evaluation",
          "figures", "export", "total"}
BUDGET_MINUTES = 0.05
# What the fast test allows after a 3-second budget on 2 shared cores: the
# first step's tracing alone takes several seconds there.
MARGIN_SECONDS = 60.0


def test_budget_run_records_phases_subsets_and_schedule(tmp_path):
  run_dir = str(tmp_path / "run")
  code = train_cli.main(
      ["--config", "digits", "--output_dir", run_dir, "--epochs", "50",
       "--validation_steps", "1", "--max_train_minutes", str(BUDGET_MINUTES),
       "--warmup_fraction", "0.2", "--lr_decay", "cosine_to_budget",
       "--lr_decay_rate", "0.05", "--test_iw_samples", "4",
       "--test_iw_images", "100", "--score_reference_images", "300"] + TINY)
  assert code == 0
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  phases = metrics["phase_seconds"]
  assert set(phases) == PHASES
  assert all(v >= 0 for v in phases.values()) and phases["export"] < 1.0
  assert abs(sum(v for k, v in phases.items() if k != "total")
             - phases["total"]) < 1.0
  assert phases["total"] <= 60 * BUDGET_MINUTES + MARGIN_SECONDS
  assert phases["fit"] >= 60 * BUDGET_MINUTES
  # Since the process started (here: pytest's), at least the run's total.
  assert metrics["process_seconds"] >= phases["total"]
  # The evaluation subsets, as metrics.json states them.
  assert metrics["train_images"] == 300
  assert metrics["score_reference_subset"]["images"] == 300
  assert metrics["score_reference_subset"]["seed"] == 0
  assert metrics["test_images"] == 359  # the single draw: every test image
  assert metrics["test_iw_subset"] == {
      "images": 100, "of": 359, "seed": 0,
      "selection": "uniform without replacement: numpy "
                   "default_rng(seed).choice(of, images)"}
  assert math.isfinite(metrics["test_importance_weighted_bits_per_dim"])
  # The budget stopped fit: the schedule's progress ended at 1.
  schedule = metrics["lr_schedule"]
  assert schedule["final_progress"] == 1.0
  assert 0.0 <= schedule["last_step_progress"] <= 1.0
  lr = builders.learning_rate(metrics["config"])
  assert schedule["last_step_learning_rate"] == pytest.approx(
      float(lr.value_at(schedule["last_step_progress"])), rel=1e-5)


def test_iw_subset_keeps_each_images_evaluation_noise():
  config = configs.validate(dict(
      configs.load("digits"), num_scales=1, num_res_blocks=0, num_filters=4,
      max_train_minutes=1.0, test_iw_samples=1, test_iw_images=50))
  datasets = builders.load_datasets(config)
  model = builders.build_model(config, datasets.image_shape,
                               datasets.num_classes)
  model.compile()
  test_bpd, count = results.evaluate_test(model, datasets, config)
  assert count == 359
  chosen = results.iw_subset(config, count)
  assert len(chosen) == 50 and len(set(chosen)) == 50
  np.testing.assert_array_equal(chosen, results.iw_subset(config, count))
  iw = results.importance_weighted(model, datasets, config, count)
  assert iw["test_iw_subset"]["images"] == 50
  # K = 1: draw 0 is the evaluation noise, so the bound over the subset is
  # the single-draw bits/dim of those images.
  x = np.concatenate([b.numpy() for b in datasets.test])
  bpd = -model.log_prob(x).numpy().astype(np.float64) / (
      model.event_size * math.log(2.0))
  assert bpd.mean() == pytest.approx(test_bpd, rel=1e-4)
  assert iw["test_importance_weighted_bits_per_dim"] == pytest.approx(
      bpd[chosen].mean(), rel=1e-5)
  # A subset at least as large as the split is the whole split.
  assert results.iw_subset(dict(config, test_iw_images=400), count) is None
