"""`realnvp-train` checks the whole config before it creates, loads or
trains anything: every bad key is named with its flag, bad JSON names its
file and position, and a bad flag value says what was expected."""

import json

import pytest

from training import configs
from training import train as train_cli


@pytest.mark.parametrize("flag,value,message", [
    ("--epochs", "-1", "epochs must be an integer >= 1, got -1 (--epochs)"),
    ("--epochs", "0", "epochs must be an integer >= 1, got 0 (--epochs)"),
    ("--steps_per_epoch", "-1",
     "steps_per_epoch must be an integer >= 0, got -1 (--steps_per_epoch)"),
    ("--temperatures", "0,0.7", "temperatures must be a non-empty list of "
     "finite numbers > 0 (e.g. 1.0,0.7), got [0.0, 0.7] (--temperatures)"),
    ("--temperatures", "nan", "temperatures must be a non-empty list"),
    ("--num_samples", "0", "num_samples must be an integer >= 1, got 0"),
    ("--batch_size", "0", "batch_size must be an integer >= 1, got 0"),
    ("--learning_rate", "inf",
     "learning_rate must be a finite number > 0, got inf"),
    ("--seed", "-3", "seed must be an integer in [0, 4294967295], got -3"),
    ("--alpha", "0.5", "alpha must be a finite number in (0, 0.5), got 0.5"),
    ("--bn_momentum", "1", "bn_momentum must be a finite number in [0, 1)"),
    ("--coupling", "glow", "coupling must be one of affine, additive, "
     "spline, got 'glow'"),
    ("--dataset", "imagenet", "dataset must be one of digits, mnist"),
    ("--dataset", "folder:/tmp", "image_size is required for a folder: "
     "dataset"),
    ("--num_filters", "8,16,32", "num_filters has 3 widths but "
     "num_scales=2"),
    ("--jit_compile", "maybe", "jit_compile must be auto, true or false"),
    ("--mixed_precision", "fp16", "mixed_precision must be one of none, "
     "mixed_float16, mixed_bfloat16"),
    ("--interpolation_steps", "0", "interpolation_steps must be an integer "
     ">= 1"),
    ("--max_train_minutes", "-5", "max_train_minutes must be a finite "
     "number >= 0"),
    ("--num_classes", "1", "num_classes must be an integer >= 2, got 1"),
])
def test_bad_values_fail_before_anything_is_done(flag, value, message,
                                                 tmp_path, capsys):
  run_dir = tmp_path / "run"
  code = train_cli.main(["--config", "digits", "--output_dir", str(run_dir),
                         "--export_dir", str(tmp_path / "models"),
                         flag, value])
  assert code == 2
  err = capsys.readouterr().err
  assert "realnvp-train: error: invalid config: " in err
  assert message in err, err
  assert not run_dir.exists() and not (tmp_path / "models").exists()


def test_every_problem_is_reported_at_once(tmp_path, capsys):
  assert train_cli.main(["--output_dir", str(tmp_path / "run"),
                         "--epochs", "0", "--num_samples", "0",
                         "--temperatures", "0"]) == 2
  err = capsys.readouterr().err
  for key in ("epochs", "num_samples", "temperatures"):
    assert f"(--{key})" in err


def test_shipped_configs_are_valid():
  for name in configs.available():
    assert configs.validate(configs.load(name))["config_name"] == name


def _config_file(tmp_path, text, name="mine.json"):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def test_config_files_name_themselves_in_errors(tmp_path, capsys):
  broken = _config_file(tmp_path, '{"epochs": 3,\n "dataset": "digits"\n')
  assert train_cli.main(["--config", broken]) == 2
  err = capsys.readouterr().err
  assert f"config file {broken} is not valid JSON" in err
  assert "line 3 column 1" in err

  listed = _config_file(tmp_path, "[1, 2]", "listed.json")
  assert train_cli.main(["--config", listed]) == 2
  assert f"config file {listed} must hold a JSON object" in (
      capsys.readouterr().err)

  typed = _config_file(tmp_path, json.dumps({"epochs": "30",
                                             "use_batch_norm": "yes"}),
                       "typed.json")
  assert train_cli.main(["--config", typed, "--output_dir",
                         str(tmp_path / "run")]) == 2
  err = capsys.readouterr().err
  assert "epochs must be an integer >= 1, got '30'" in err
  assert "use_batch_norm must be true or false, got 'yes'" in err


def test_a_config_name_that_cannot_be_a_serving_name(tmp_path, capsys):
  spaced = _config_file(tmp_path, "{}", "my config.json")
  assert train_cli.main(["--config", spaced, "--output_dir",
                         str(tmp_path / "run")]) == 2
  assert "config name 'my config'" in capsys.readouterr().err
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag,value,message", [
    ("--epochs", "abc", "argument --epochs: expected an integer, got 'abc'"),
    ("--learning_rate", "fast",
     "argument --learning_rate: expected a number, got 'fast'"),
    ("--temperatures", "1,x", "argument --temperatures: expected "
     "comma-separated numbers like 1.0,0.7, got '1,x'"),
    ("--image_size", "8,8,a", "argument --image_size: expected three "
     "comma-separated integers H,W,C, got '8,8,a'"),
    ("--use_batch_norm", "maybe", "argument --use_batch_norm: expected true "
     "or false, got 'maybe'"),
])
def test_flag_values_say_what_was_expected(flag, value, message, capsys):
  with pytest.raises(SystemExit) as exit_info:
    train_cli.main([flag, value])
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err


def test_resume_rules_are_in_the_help(capsys):
  with pytest.raises(SystemExit):
    train_cli.main(["--help"])
  out = " ".join(capsys.readouterr().out.split())
  assert "epochs (extends or shortens the run)" in out
  for key in configs.MAY_CHANGE_ON_RESUME:
    assert key in out
  assert "refused with the list of differing keys" in out


def test_config_differences_name_old_and_new_values():
  saved = configs.load("digits")
  changed = dict(saved, batch_size=32, epochs=99, temperatures=[0.5])
  assert train_cli.config_differences(
      saved, changed, configs.MAY_CHANGE_ON_RESUME) == ["batch_size 64 -> 32"]
  # A config.json from an older version lacks new keys: defaults apply.
  older = {k: v for k, v in saved.items() if k != "jit_compile"}
  assert train_cli.config_differences(older, saved) == []


def test_an_output_dir_that_cannot_be_written_is_named(tmp_path, capsys,
                                                       monkeypatch):
  """An existing file, a path below a file, or an unwritable directory as
  --output_dir: exit 2 with a message naming the path, nothing created."""
  from training import rundir  # pylint: disable=import-outside-toplevel
  a_file = tmp_path / "taken"
  a_file.write_text("not a directory")
  for output_dir, message in (
      (a_file, "is a file, not a directory"),
      (a_file / "run", "cannot be created"),
  ):
    assert train_cli.main(["--config", "digits", "--output_dir",
                           str(output_dir)]) == 2
    err = capsys.readouterr().err
    assert str(output_dir) in err and message in err, err
  locked = tmp_path / "locked"
  locked.mkdir()
  real_access = rundir.os.access
  # (A chmod would not stop root, who runs CI containers: fake the check.)
  monkeypatch.setattr(rundir.os, "access", lambda path, mode: (
      False if path == str(locked) else real_access(path, mode)))
  assert train_cli.main(["--config", "digits", "--output_dir",
                         str(locked / "run")]) == 2
  err = capsys.readouterr().err
  assert "is not writable" in err and str(locked) in err
  assert not (locked / "run").exists()
