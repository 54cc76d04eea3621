"""realnvp-evaluate / -sample / -export on checkpoints: damaged files are
named, `--seed` sets the evaluation noise, bad sampling arguments fail
before anything is written, and concurrent exports each get a version."""

import json
import os
import shutil

import keras
import pytest

import tfp_realnvp
from tfp_realnvp import export as export_lib
from training import evaluate as evaluate_cli
from training import export as export_cli
from training import sample as sample_cli


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A run directory as realnvp-train leaves it (an untrained tiny model,
  a config with seed 5)."""
  root = tmp_path_factory.mktemp("checkpoints") / "run"
  keras.utils.set_random_seed(0)
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, num_res_blocks=1,
                              num_filters=8, name="tiny")
  model.compile()
  os.makedirs(root / "checkpoints")
  model.save(root / "checkpoints" / "best.keras")
  (root / "config.json").write_text(json.dumps(
      {"dataset": "digits", "seed": 5, "config_name": "tiny"}))
  return root


@pytest.fixture
def truncated(run_dir, tmp_path):
  path = tmp_path / "best.keras"
  content = (run_dir / "checkpoints" / "best.keras").read_bytes()
  path.write_bytes(content[:len(content) // 2])
  return str(path)


def test_a_truncated_checkpoint_is_named_by_every_cli(truncated, tmp_path,
                                                      capsys):
  expected = f"{truncated} is not a readable .keras archive"
  commands = [
      (evaluate_cli.main, [truncated, "--dataset", "digits"]),
      (sample_cli.main, [truncated, "--output", str(tmp_path / "s.png")]),
      (export_cli.main, [truncated, "--base_dir", str(tmp_path / "models"),
                         "--name", "tiny"]),
  ]
  for main, argv in commands:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "File not found" not in err
  assert not (tmp_path / "s.png").exists()


def test_a_damaged_run_config_is_named(run_dir, tmp_path, capsys):
  damaged = tmp_path / "run"
  shutil.copytree(run_dir, damaged)
  (damaged / "config.json").write_text('{"dataset": "dig')
  assert evaluate_cli.main([str(damaged)]) == 2
  err = capsys.readouterr().err
  assert f"the run's config {damaged / 'config.json'} is not valid JSON" in err


def test_evaluate_seed_defaults_to_the_runs_seed(run_dir, capsys):
  def bpd(**kwargs):
    return evaluate_cli.evaluate(str(run_dir), split="validation", steps=1,
                                 **kwargs)
  own = bpd()
  assert own == bpd(seed=5)  # the run's seed, as in its metrics.json
  assert bpd(seed=0) != own  # (the value hard-coded before)
  assert evaluate_cli.main([str(run_dir), "--split", "validation",
                            "--steps", "1", "--seed", "0"]) == 0
  assert json.loads(capsys.readouterr().out)["bits_per_dim"] == bpd(seed=0)
  with pytest.raises(ValueError, match="--seed must be an integer >= 0"):
    bpd(seed=-1)


@pytest.mark.parametrize("flag,value,message", [
    ("--temperature", "nan", "--temperature must be a finite number > 0, "
     "got nan"),
    ("--temperature", "inf", "--temperature must be a finite number > 0, "
     "got inf"),
    ("--temperature", "0", "--temperature must be a finite number > 0, "
     "got 0.0"),
    ("--temperature", "-1", "--temperature must be a finite number > 0"),
    ("--num", "0", "--num must be an integer >= 1, got 0"),
])
def test_sample_rejects_bad_arguments(run_dir, tmp_path, flag, value,
                                      message, capsys):
  out = tmp_path / "samples.png"
  assert sample_cli.main([str(run_dir), "--output", str(out), flag,
                          value]) == 2
  assert message in capsys.readouterr().err
  assert not out.exists()


def test_concurrent_exports_each_get_a_version(run_dir, tmp_path,
                                               monkeypatch, capsys):
  base = tmp_path / "models"
  real_write = export_lib.write_saved_model
  writes = []

  def racing_write(model, path):
    """Another export finishes version 1 while this one writes it."""
    real_write(model, path)
    writes.append(path)
    if len(writes) == 1:
      shutil.copytree(path, base / "tiny" / "1")

  monkeypatch.setattr(export_lib, "write_saved_model", racing_write)
  argv = [str(run_dir), "--base_dir", str(base), "--warmup_requests", "0"]
  assert export_cli.main(argv) == 0
  assert capsys.readouterr().out.strip() == str(base / "tiny" / "2")
  assert sorted(os.listdir(base / "tiny")) == ["1", "2"]
  assert os.path.exists(base / "tiny" / "2" / "saved_model.pb")
  # An explicit version another export took first is a clear error.
  writes.clear()
  shutil.rmtree(base / "tiny" / "1")
  assert export_cli.main(argv + ["--version", "1"]) == 2
  assert "already exists; versions are never overwritten" in (
      capsys.readouterr().err)
  # An existing version is never overwritten.
  assert export_cli.main(argv + ["--version", "2"]) == 2
  assert "already exists" in capsys.readouterr().err
  assert sorted(os.listdir(base / "tiny")) == ["1", "2"]
