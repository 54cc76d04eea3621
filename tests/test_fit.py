"""Keras 3 `fit` trains the model: a smoke run on scikit-learn's digits."""

import numpy as np
import pytest
import keras

import tfp_realnvp
from training import data


def test_fit_on_digits_beats_gaussian_baseline():
  keras.utils.set_random_seed(0)
  splits = data.digits_arrays(seed=0)
  train, _ = splits["train"]
  test, _ = splits["test"]
  baseline = data.gaussian_baseline_bits_per_dim(train, test)

  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, num_res_blocks=1,
                              num_filters=16)
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  rng = np.random.default_rng(0)
  pipelines = data.load("digits", batch_size=64, seed=0)
  history = model.fit(pipelines.train, epochs=6,
                      validation_data=pipelines.validation, verbose=0,
                      score_statistics=False)
  # The bits/dim metric is reported for training and validation.
  assert len(history.history["bits_per_dim"]) == 6
  assert len(history.history["val_bits_per_dim"]) == 6
  assert history.history["loss"][-1] < history.history["loss"][0]

  test_bpd = float(np.mean(model.bits_per_dim(data.dequantize(test, rng))))
  print(f"digits: test bits/dim {test_bpd:.3f} vs independent-Gaussian "
        f"baseline {baseline:.3f}")
  assert test_bpd < baseline - 1.0
  # evaluate() runs in inference mode and reports the same metric.
  result = model.evaluate(data.dequantize(test, rng), verbose=0,
                          return_dict=True)
  assert abs(result["bits_per_dim"] - test_bpd) < 0.05


def test_fit_class_conditional_with_labels_as_input():
  keras.utils.set_random_seed(1)
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, num_res_blocks=1,
                              num_filters=8, num_classes=10)
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-2))
  before = model.prior.class_loc.numpy().copy()
  pipelines = data.load("digits", batch_size=64, seed=0, conditional=True)
  history = model.fit(pipelines.train.take(4), epochs=1, verbose=0,
                      score_statistics=False)
  assert np.isfinite(history.history["loss"][0])
  assert not np.allclose(model.prior.class_loc.numpy(), before)


CASES = ("none", "synchronized", "synchronized:squeezed", "per_replica",
         "glow")


@pytest.fixture(scope="module")
def mirrored():
  """Every case of tests/mirrored_check.py, run in one subprocess (logical
  devices must be configured before TF initialises; one TF start serves
  all cases)."""
  import json
  import os
  import subprocess
  import sys
  here = os.path.dirname(os.path.abspath(__file__))
  proc = subprocess.run(
      [sys.executable, os.path.join(here, "mirrored_check.py"), *CASES],
      capture_output=True, text=True, timeout=900,
      cwd=os.path.dirname(here),
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  results = json.loads(proc.stdout.strip().splitlines()[-1])
  assert sorted(results) == sorted(CASES)
  assert all(r["replicas"] == 2 for r in results.values())
  return results


@pytest.mark.parametrize("mode", ["none", "synchronized",
                                  "synchronized:squeezed"])
def test_mirrored_strategy_matches_single_device(mode, mirrored):
  """Same global batch, same loss and same SGD update (the gradient) under
  MirroredStrategy over 2 logical CPUs, without batch norm and with
  synchronized batch norm (whose moving averages must match too), with the
  masked and the squeezed checkerboard."""
  result = mirrored[mode]
  single, mirrored = result["losses"]
  assert abs(single - mirrored) <= 1e-5 * abs(single)
  assert result["relative_update_difference"] < 1e-5
  assert result["relative_moving_stat_difference"] < 1e-5
  # synchronized: the EMA copy is among the compared weights and updated.
  assert (result["ema_weights"] > 0) == mode.startswith("synchronized")


def test_per_replica_batch_norm_differs_from_single_device(mirrored):
  """The control for the test above: with per-replica statistics the
  objective depends on the split, so the loss is not the single-device one."""
  result = mirrored["per_replica"]
  single, mirrored = result["losses"]
  assert abs(single - mirrored) > 1e-4 * abs(single)
  assert result["relative_moving_stat_difference"] > 1e-3


def test_mirrored_strategy_matches_single_device_with_glow_steps(mirrored):
  """actnorm's data-dependent initialisation (in fit, on the global batch),
  1x1 convolutions and the split prior give the single-device update under
  MirroredStrategy too."""
  result = mirrored["glow"]
  single, mirrored = result["losses"]
  assert abs(single - mirrored) <= 1e-5 * abs(single)
  assert result["relative_update_difference"] < 1e-5
  assert result["actnorm_initialized"] == [1.0] * 10
  assert result["relative_actnorm_difference"] < 1e-5
