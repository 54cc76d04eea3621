"""The training application end to end: artifacts, resume after SIGKILL,
the NaN guard, and the evaluate / sample CLIs."""

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

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


def _csv_epochs(run_dir):
  path = os.path.join(run_dir, "training_log.csv")
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_train_digits_end_to_end(tmp_path):
  run_dir = str(tmp_path / "run")
  export_dir = str(tmp_path / "saved_models")
  code = train_cli.main(["--config", "digits", "--output_dir", run_dir,
                         "--epochs", "6", "--num_res_blocks", "1",
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
              "wall_time_seconds", "config"):
    assert key in metrics
  assert metrics["train_images_per_second"] > 0
  arrays = data.digits_arrays()
  baseline = data.gaussian_baseline_bits_per_dim(arrays["train"][0],
                                                 arrays["test"][0])
  assert metrics["test_bits_per_dim"] < baseline
  assert _csv_epochs(run_dir) == list(range(6))

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
  # realnvp-export writes the next version from the run's checkpoint.
  assert export_cli.main([run_dir, "--base_dir", export_dir,
                          "--warmup_requests", "0"]) == 0
  assert sorted(os.listdir(os.path.join(export_dir, "digits"))) == ["1", "2"]
  assert metrics["export"] == os.path.join(export_dir, "digits", "1")


def test_resume_after_sigkill(tmp_path):
  run_dir = str(tmp_path / "run")
  cmd = [sys.executable, "-m", "training.train", "--config", "digits",
         "--output_dir", run_dir, "--epochs", "6"] + TINY
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and len(_csv_epochs(run_dir)) < 2:
      assert proc.poll() is None, "training ended before it could be killed"
      time.sleep(0.05)
    assert len(_csv_epochs(run_dir)) >= 2, "no epoch finished in time"
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  finally:
    if proc.poll() is None:
      proc.kill()
  done_before = _csv_epochs(run_dir)
  assert len(done_before) < 6
  assert os.path.isdir(os.path.join(run_dir, "backup"))

  rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert "resuming run in" in rerun.stdout
  epochs = _csv_epochs(run_dir)
  assert epochs[:len(done_before)] == done_before
  resumed = epochs[len(done_before):]
  # It continues from the backup: nothing before the interrupted epoch is
  # repeated and it finishes all epochs.
  assert resumed == list(range(done_before[-1] + 1, 6))
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics["resumed"] is True
  assert metrics["epochs_run_in_this_process"] == len(resumed)


def test_nan_guard_keeps_last_good_checkpoint(tmp_path, capsys):
  run_dir = str(tmp_path / "run")
  assert train_cli.main(["--config", "digits", "--output_dir", run_dir,
                         "--epochs", "1"] + TINY) == 0
  best = os.path.join(run_dir, "checkpoints", "best.keras")
  digest = hashlib.sha256(open(best, "rb").read()).hexdigest()
  before = evaluate_cli.evaluate(run_dir)

  code = train_cli.main(["--config", "digits", "--output_dir", run_dir,
                         "--epochs", "3", "--learning_rate", "1e8",
                         "--clipnorm", "0"] + TINY)
  assert code == 3
  err = capsys.readouterr().err
  assert "training loss became" in err and "last good checkpoint" in err
  assert hashlib.sha256(open(best, "rb").read()).hexdigest() == digest
  after = evaluate_cli.evaluate(run_dir)
  assert np.isfinite(after) and after == pytest.approx(before, abs=1e-4)


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
  # 8x8 tiles with a 1-pixel frame: 10 class rows vs a 2x2 grid.
  assert per_class.shape[:2] == (10 * 9 + 1, 2 * 9 + 1)
  assert image.shape[:2] == (2 * 9 + 1, 2 * 9 + 1)
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


def test_num_filters_flag_takes_one_width_or_one_per_scale():
  p = train_cli.parser()
  assert p.parse_args(["--num_filters", "32"]).num_filters == 32
  assert p.parse_args(["--num_filters", "16,32,56"]).num_filters == [16, 32,
                                                                      56]
