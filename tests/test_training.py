"""The training application end to end: artifacts, resume after SIGKILL,
the NaN guard, and the evaluate / sample CLIs.

Also the helpers of tests/test_cli_*.py: TINY flags, `train_main` (the CLI
in-process with extra Keras callbacks) and `Interrupt` / `KILL_LAUNCHER`
(stop or SIGKILL a run at a known epoch and batch, not after a sleep).
"""

import csv
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
from unittest import mock

import keras
import numpy as np
import pytest

from training import data
from training import evaluate as evaluate_cli
from training import export as export_cli
from training import sample as sample_cli
from training import train as train_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--num_scales", "1", "--num_res_blocks", "1", "--num_filters", "8",
        "--num_samples", "16", "--interpolation_steps", "3", "--verbose", "0",
        "--export", "false"]


# A few steps per epoch: the resume tests need epochs, not learning.
FAST = TINY + ["--steps_per_epoch", "3", "--validation_steps", "2",
               "--test_steps", "2"]


def _csv_epochs(run_dir):
  path = os.path.join(run_dir, "training_log.csv")
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return [int(row["epoch"]) for row in csv.DictReader(f)]


csv_epochs = _csv_epochs


def sha256(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


class Interrupted(Exception):
  """Raised by `Interrupt` (a crash that main() does not handle)."""


class Interrupt(keras.callbacks.Callback):
  """Raises `Interrupted` after training batch `batch` of epoch `epoch`
  (both 1-based), or calls `action` there instead."""

  def __init__(self, epoch, batch=1, action=None):
    super().__init__()
    self.at = (epoch, batch)
    self.action = action
    self._epoch = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch + 1

  def on_train_batch_end(self, batch, logs=None):
    if (self._epoch, batch + 1) == self.at:
      if self.action is not None:
        self.action(self.model)
      else:
        raise Interrupted(f"interrupted at epoch {self._epoch}, batch "
                          f"{batch + 1}")


def train_main(argv, callbacks=()):
  """`realnvp-train` in this process, with extra Keras `callbacks`."""
  with mock.patch.object(train_cli, "run",
                         functools.partial(train_cli.run,
                                           callbacks=list(callbacks))):
    return train_cli.main(argv)


# `python -c KILL_LAUNCHER <realnvp-train flags>` with KILL_AT=epoch:batch
# SIGKILLs itself right after that training batch: no handler, no cleanup,
# at a known step.
KILL_LAUNCHER = """
import functools, os, signal, sys
import keras
from training import train

class KillAt(keras.callbacks.Callback):
  def __init__(self, epoch, batch):
    super().__init__()
    self.at, self.epoch = (epoch, batch), 0
  def on_epoch_begin(self, epoch, logs=None):
    self.epoch = epoch + 1
  def on_train_batch_end(self, batch, logs=None):
    if (self.epoch, batch + 1) == self.at:
      os.kill(os.getpid(), signal.SIGKILL)

epoch, batch = (int(v) for v in os.environ["KILL_AT"].split(":"))
train.run = functools.partial(train.run, callbacks=[KillAt(epoch, batch)])
sys.exit(train.main(sys.argv[1:]))
"""


def backup_epoch(run_dir):
  with open(os.path.join(run_dir, "backup", "training_metadata.json")) as f:
    return json.load(f)["epoch"]


def test_train_digits_end_to_end(tmp_path):
  run_dir = str(tmp_path / "run")
  export_dir = str(tmp_path / "saved_models")
  code = train_cli.main(["--config", "digits", "--output_dir", run_dir,
                         "--epochs", "3", "--num_res_blocks", "1",
                         "--num_filters", "16", "--verbose", "0",
                         "--export_dir", export_dir])
  assert code == 0
  # Exported for TF Serving by default, as version 1 of model "digits".
  assert os.path.exists(os.path.join(export_dir, "digits", "1",
                                     "saved_model.pb"))
  assert os.path.exists(os.path.join(export_dir, "models.config"))
  for name in ("config.json", "checkpoints/best.keras", "training_log.csv",
               "samples.png", "interpolation.png", "metrics.json"):
    assert os.path.exists(os.path.join(run_dir, name)), name
  assert not os.path.exists(os.path.join(run_dir, "backup"))  # run finished
  events = [f for _, _, files in os.walk(os.path.join(run_dir, "logs"))
            for f in files if "tfevents" in f]
  assert len(events) >= 3  # train, validation, sample images
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  for key in ("test_bits_per_dim", "epochs", "train_images_per_second",
              "wall_time_seconds", "train_seconds", "train_steps", "config"):
    assert key in metrics
  assert metrics["train_images_per_second"] > 0
  assert 0 < metrics["train_seconds"] < metrics["wall_time_seconds"]
  arrays = data.digits_arrays()
  baseline = data.gaussian_baseline_bits_per_dim(arrays["train"][0],
                                                 arrays["test"][0])
  assert metrics["test_bits_per_dim"] < baseline
  assert _csv_epochs(run_dir) == list(range(3))

  from PIL import Image
  samples = np.asarray(Image.open(os.path.join(run_dir, "samples.png")))
  assert samples.ndim >= 2 and samples.std() > 10  # not a blank image

  # The evaluate CLI reproduces the test figure from the checkpoint.
  bpd = evaluate_cli.evaluate(run_dir)
  assert abs(bpd - metrics["test_bits_per_dim"]) < 1e-3
  out = str(tmp_path / "grid.png")
  sample_cli.sample_png(run_dir, out, num=9, temperature=0.7, seed=1)
  assert Image.open(out).size[0] > 0
  with pytest.raises(ValueError, match="class-conditional"):
    sample_cli.sample_png(run_dir, out, label=3)
  # (realnvp-export writing the next version: tests/test_cli_checkpoints.py)
  assert metrics["export"] == os.path.join(export_dir, "digits", "1")


def test_resume_after_sigkill(tmp_path):
  run_dir = str(tmp_path / "run")
  flags = ["--config", "digits", "--output_dir", run_dir, "--epochs", "6"]
  flags += TINY
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KILL_AT="3:5")
  killed = subprocess.run([sys.executable, "-c", KILL_LAUNCHER] + flags,
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
  # Killed by its own SIGKILL after batch 5 of epoch 3: epochs 1 and 2 are
  # finished and backed up, epoch 3 is not.
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert _csv_epochs(run_dir) == [0, 1]
  assert backup_epoch(run_dir) == 2
  assert not os.path.exists(os.path.join(run_dir, "metrics.json"))

  rerun = subprocess.run([sys.executable, "-m", "training.train"] + flags,
                         cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert "resuming run in" in rerun.stdout
  # Only the unfinished epoch 3 is lost: it and the rest run once each.
  assert _csv_epochs(run_dir) == list(range(6))
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics["resumed"] is True
  assert metrics["epochs_run_in_this_process"] == 4
  assert metrics["last_epoch"] == 6
  with open(os.path.join(run_dir, "training_log.csv"), newline="") as f:
    best = min(float(r["val_bits_per_dim"]) for r in csv.DictReader(f))
  # The best checkpoint's figure is the best of all six epochs.
  assert metrics["best_val_bits_per_dim"] == pytest.approx(best, rel=1e-6)
  assert not os.path.exists(os.path.join(run_dir, "backup"))


def test_nan_guard_keeps_last_good_checkpoint(tmp_path, capsys):
  run_dir = str(tmp_path / "run")
  best = os.path.join(run_dir, "checkpoints", "best.keras")
  seen = {}

  def explode(model):
    # After epoch 1 (saved as best.keras) the learning rate goes wild.
    seen["digest"] = sha256(best)
    model.optimizer.learning_rate.assign(1e8)

  code = train_main(["--config", "digits", "--output_dir", run_dir,
                     "--epochs", "3"] + TINY,
                    callbacks=[Interrupt(2, 1, action=explode)])
  assert code == 3
  captured = capsys.readouterr()
  err = captured.err
  assert "training loss became" in err and "last good checkpoint" in err
  assert captured.out.count(f"starting run in {run_dir} ") == 1  # once
  assert sha256(best) == seen["digest"]
  assert backup_epoch(run_dir) == 1  # the broken weights were not backed up
  assert np.isfinite(evaluate_cli.evaluate(run_dir))


def test_train_class_conditional_cli(tmp_path):
  run_dir = str(tmp_path / "run")
  assert train_cli.main(["--config", "digits", "--output_dir", run_dir,
                         "--epochs", "1", "--num_classes", "10"] + TINY) == 0
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics["config"]["conditional"] is True
  assert np.isfinite(metrics["test_bits_per_dim"])
  out = str(tmp_path / "sevens.png")
  image = sample_cli.sample_png(run_dir, out, num=4, label=7)
  assert image.shape[0] > 0 and os.path.exists(out)
  per_class = sample_cli.sample_png(run_dir, out, num=20, per_class=True)
  # 8x8 tiles with a 1-pixel frame: 10 class rows vs a 2x2 grid, upscaled
  # 4x, under a 16-pixel caption band.
  assert per_class.shape[:2] == (16 + 4 * (10 * 9 + 1), 4 * (2 * 9 + 1))
  assert image.shape[:2] == (16 + 4 * (2 * 9 + 1), 4 * (2 * 9 + 1))
  # The caption is drawn (dark text pixels on the white band) and differs
  # with the temperature.
  band = image[:16]
  assert band.min() < 100 and np.median(band) == 255
  other = sample_cli.sample_png(run_dir, out, num=4, label=7,
                                temperature=0.5)
  assert not np.array_equal(other[:16], band)
  assert train_cli.main(["--config", "digits", "--output_dir",
                         str(tmp_path / "bad"), "--num_classes", "7"] +
                        TINY) == 2


def test_cli_help_and_config_errors(capsys):
  with pytest.raises(SystemExit) as exit_info:
    train_cli.main(["--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  for key in ("--learning_rate", "--num_res_blocks", "--temperatures",
              "--manual_dir", "--data_dir", "--output_dir"):
    assert key in out
  assert train_cli.main(["--config", "nonexistent"]) == 2
  assert "unknown config" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    train_cli.main(["--epochs", "abc"])
  assert exit_info.value.code == 2
  assert "--epochs: expected an integer, got 'abc'" in capsys.readouterr().err


def test_num_filters_flag_takes_one_width_or_one_per_scale():
  p = train_cli.parser()
  assert p.parse_args(["--num_filters", "32"]).num_filters == 32
  assert p.parse_args(["--num_filters", "16,32,56"]).num_filters == [16, 32,
                                                                      56]


def test_train_with_the_model_dequantizing(tmp_path):
  """--dequantizer uniform: the pipeline feeds integer levels, the model
  dequantizes them; the run trains, evaluates and exports."""
  ds = data.load("digits", batch_size=16, dequantize=False)
  batch = next(iter(ds.train)).numpy()
  assert np.array_equal(batch, np.floor(batch)) and batch.max() <= 255
  test = next(iter(ds.test)).numpy()
  assert np.array_equal(test, np.floor(test))
  run_dir = str(tmp_path / "run")
  assert train_cli.main(["--config", "digits", "--output_dir", run_dir,
                         "--epochs", "1", "--dequantizer", "uniform"] +
                        TINY) == 0
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics["config"]["dequantizer"] == "uniform"
  assert np.isfinite(metrics["test_bits_per_dim"])
  model = keras.saving.load_model(os.path.join(run_dir, "checkpoints",
                                               "best.keras"))
  assert model.dequantizer_name == "uniform"
  # realnvp-evaluate feeds such a model integer levels too.
  assert np.isfinite(evaluate_cli.evaluate(run_dir, split="test"))


def test_train_with_every_lever_then_evaluate_sample_export(tmp_path):
  """EMA + variational dequantization + warmup/decay + Adamax + bn_lag +
  importance-weighted test figure, through every CLI; the budget stops the
  first epoch early."""
  run_dir = str(tmp_path / "run")
  assert train_cli.main(
      ["--config", "digits", "--output_dir", run_dir, "--epochs", "2",
       "--ema_decay", "0.9", "--dequantizer", "variational", "--bn_lag",
       "0.9", "--optimizer", "adamax", "--warmup_steps", "3", "--lr_decay",
       "cosine", "--decay_steps", "20", "--test_iw_samples", "3",
       "--steps_per_epoch", "5"] + TINY) == 0
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  # The bound is named for what it is; plain bits_per_dim is not reported.
  assert "test_bits_per_dim" not in metrics
  single = metrics["test_variational_bits_per_dim"]
  iw = metrics["test_importance_weighted_bits_per_dim"]
  assert metrics["test_iw_samples"] == 3 and iw < single
  assert "best_val_variational_bits_per_dim" in metrics
  assert metrics["train_seconds"] > 0 and metrics["train_steps"] == 10
  report = evaluate_cli.evaluate_report(run_dir, iw_samples=3)
  assert report["variational_bits_per_dim"] == pytest.approx(single,
                                                             rel=1e-5)
  assert report["importance_weighted_bits_per_dim"] == pytest.approx(
      iw, rel=1e-6)
  raw = evaluate_cli.evaluate(run_dir, raw_weights=True)
  assert raw != pytest.approx(single, rel=1e-6)  # the averages are used
  out = str(tmp_path / "raw.png")
  assert sample_cli.main([run_dir, "--output", out, "--num", "4",
                          "--raw_weights"]) == 0
  assert export_cli.main([run_dir, "--base_dir", str(tmp_path / "sm"),
                          "--raw_weights", "--warmup_requests", "0"]) == 0
  # A model trained without averages refuses --raw_weights.
  plain = str(tmp_path / "plain")
  assert train_cli.main(["--config", "digits", "--output_dir", plain,
                         "--epochs", "3", "--max_train_minutes", "0.001",
                         "--steps_per_epoch", "5"] + TINY) == 0
  with open(os.path.join(plain, "metrics.json")) as f:
    budget = json.load(f)
  # The budget (60 ms) ends training after its first step, not an epoch.
  assert budget["train_steps"] == 1 and budget["last_epoch"] == 1
  with pytest.raises(ValueError, match="no averaged weights"):
    evaluate_cli.evaluate(plain, raw_weights=True)


def test_train_with_learned_priors_and_glow_steps(tmp_path):
  """--prior made/split, --actnorm, --permutation: the run trains (actnorm
  initialised from the first batch), resumes nothing it should not, and
  evaluates, samples and exports."""
  run_dir = str(tmp_path / "run")
  assert train_cli.main(
      ["--config", "digits", "--output_dir", run_dir, "--epochs", "1",
       "--steps_per_epoch", "5", "--prior", "made", "--made_hidden_units",
       "32,32", "--actnorm", "true", "--permutation", "conv1x1",
       "--num_scales", "2", "--num_res_blocks", "1", "--num_filters", "8",
       "--test_steps", "2", "--validation_steps", "2", "--num_samples", "4",
       "--interpolation_steps", "2", "--verbose", "0", "--export",
       "false"]) == 0
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics["config"]["prior"] == "made"
  assert metrics["config"]["made_hidden_units"] == [32, 32]
  assert np.isfinite(metrics["test_bits_per_dim"])
  model = keras.saving.load_model(os.path.join(run_dir, "checkpoints",
                                               "best.keras"))
  assert model.prior_name == "made" and model.permutation == "conv1x1"
  assert model.actnorm and not model.actnorm_init_pending()
  assert np.isfinite(evaluate_cli.evaluate(run_dir, split="test"))
  out = str(tmp_path / "made.png")
  assert sample_cli.main([run_dir, "--output", out, "--num", "4"]) == 0
  assert os.path.getsize(out) > 0
  split_dir = str(tmp_path / "split")
  assert train_cli.main(
      ["--config", "digits", "--output_dir", split_dir, "--epochs", "1",
       "--steps_per_epoch", "3", "--prior", "split", "--permutation",
       "reverse", "--test_steps", "1", "--validation_steps", "1",
       "--num_samples", "4", "--interpolation_steps", "2"] + TINY) == 0
  with open(os.path.join(split_dir, "metrics.json")) as f:
    assert json.load(f)["config"]["prior"] == "split"
  with pytest.raises(SystemExit):
    train_cli.main(["--made_hidden_units", "a,b"])
  assert train_cli.main(["--config", "digits", "--prior", "vampprior",
                         "--output_dir", str(tmp_path / "bad")]) == 2
