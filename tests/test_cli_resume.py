"""`realnvp-train` reruns: a changed config is refused, a failed export or
a damaged backup loses no training, the best checkpoint survives restarts,
and no epoch ends without a training step.

Interruptions happen at a known epoch and batch (`Interrupt`), never after
a sleep. One interrupted run (epochs 1-2 finished and backed up, epoch 3
interrupted) is trained once per module and copied for each test.
"""

import csv
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_realnvp
from test_training import FAST, TINY, Interrupt, Interrupted, backup_epoch
from test_training import csv_epochs, sha256, train_main
from training import callbacks as callbacks_lib


def _flags(run_dir, *extra):
  return ["--config", "digits", "--output_dir", str(run_dir)] + FAST + list(
      extra)


def _metrics(run_dir):
  with open(os.path.join(run_dir, "metrics.json")) as f:
    return json.load(f)


def _val_column(run_dir):
  with open(os.path.join(run_dir, "training_log.csv"), newline="") as f:
    return [float(r["val_bits_per_dim"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
  run_dir = tmp_path_factory.mktemp("interrupted") / "run"
  with pytest.raises(Interrupted):
    train_main(_flags(run_dir, "--epochs", "3"), callbacks=[Interrupt(3, 1)])
  assert csv_epochs(run_dir) == [0, 1] and backup_epoch(run_dir) == 2
  assert os.path.exists(run_dir / "backup" / "latest.weights.h5.bkp")
  return run_dir


@pytest.fixture
def run_copy(interrupted, tmp_path):
  target = tmp_path / "run"
  shutil.copytree(interrupted, target)
  return str(target)


def test_resume_refuses_a_changed_config_and_names_the_keys(run_copy,
                                                            capsys):
  capsys.readouterr()
  code = train_main(_flags(run_copy, "--epochs", "3", "--batch_size", "32",
                           "--learning_rate", "0.01"))
  assert code == 2
  err = capsys.readouterr().err
  assert (f"the unfinished run in {run_copy} was started with a different "
          f"config: batch_size 64 -> 32, learning_rate 0.001 -> 0.01.") in err
  assert "choose another --output_dir" in err
  assert csv_epochs(run_copy) == [0, 1] and backup_epoch(run_copy) == 2

  # `epochs` may change: a longer run resumes and goes on.
  assert train_main(_flags(run_copy, "--epochs", "4")) == 0
  assert "resuming run in" in capsys.readouterr().out
  assert csv_epochs(run_copy) == [0, 1, 2, 3]
  metrics = _metrics(run_copy)
  assert (metrics["last_epoch"], metrics["epochs_run_in_this_process"]) == (
      4, 2)
  assert metrics["best_val_bits_per_dim"] == pytest.approx(
      min(_val_column(run_copy)), rel=1e-6)


def test_fresh_starts_a_new_run_and_never_deletes_one(interrupted, tmp_path,
                                                      monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  old = tmp_path / "runs" / "digits-20000101-000000"
  shutil.copytree(interrupted, old)
  argv = ["--config", "digits", "--epochs", "3", "--seed", "1"] + FAST
  assert train_main(argv) == 2  # finds the unfinished run: refuses
  err = capsys.readouterr().err
  assert f"the unfinished run in {os.path.join('runs', old.name)}" in err
  assert "seed 0 -> 1" in err and "pass --fresh to start a new run" in err

  assert train_main(argv + ["--fresh"]) == 0
  runs = sorted(os.listdir("runs"))
  assert len(runs) == 2 and runs[0] == old.name
  assert os.path.exists(os.path.join("runs", runs[1], "metrics.json"))
  assert csv_epochs(old) == [0, 1] and backup_epoch(old) == 2  # untouched
  # --fresh into a directory that holds a run is refused, not a deletion.
  assert train_main(_flags(old, "--epochs", "3", "--fresh")) == 2
  assert "already holds a run" in capsys.readouterr().err
  assert csv_epochs(old) == [0, 1] and backup_epoch(old) == 2


def test_a_run_killed_in_its_first_epoch_starts_again(tmp_path, capsys):
  run_dir = tmp_path / "run"
  with pytest.raises(Interrupted):
    train_main(_flags(run_dir, "--epochs", "1"), callbacks=[Interrupt(1, 2)])
  assert not (run_dir / "backup").exists() and csv_epochs(run_dir) == []
  capsys.readouterr()
  assert train_main(_flags(run_dir, "--epochs", "1")) == 0
  assert f"starting run in {run_dir}" in capsys.readouterr().out
  assert csv_epochs(run_dir) == [0]


def test_results_without_a_backup_are_never_overwritten(run_copy, capsys):
  """A directory with a best.keras and a log but nothing to resume from
  (e.g. left by an older version after a failed export) is not retrained
  over."""
  shutil.rmtree(os.path.join(run_copy, "backup"))
  best = os.path.join(run_copy, "checkpoints", "best.keras")
  digest = sha256(best)
  assert train_main(_flags(run_copy, "--epochs", "3")) == 2
  err = capsys.readouterr().err
  assert (f"{run_copy} holds checkpoints/best.keras and training_log.csv of "
          f"an earlier run but no backup/") in err
  assert sha256(best) == digest and csv_epochs(run_copy) == [0, 1]


def test_a_failed_export_loses_no_training_and_the_rerun_only_exports(
    run_copy, tmp_path, capsys):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory\n")
  bad_dir, good_dir = str(blocker / "models"), str(tmp_path / "models")
  capsys.readouterr()
  code = train_main(_flags(run_copy, "--epochs", "3", "--export", "true",
                           "--export_dir", bad_dir))
  assert code == 2
  err = capsys.readouterr().err
  assert f"the TF Serving export to {bad_dir!r} failed" in err
  assert "Nothing is lost" in err
  assert csv_epochs(run_copy) == [0, 1, 2]
  assert os.path.exists(os.path.join(run_copy, "training_done.json"))
  assert os.path.isdir(os.path.join(run_copy, "backup"))
  best = os.path.join(run_copy, "checkpoints", "best.keras")
  digest = sha256(best)

  # The rerun (export_dir may change) evaluates and exports only.
  assert train_main(_flags(run_copy, "--epochs", "3", "--export", "true",
                           "--export_dir", good_dir)) == 0
  assert "evaluating and exporting only" in capsys.readouterr().out
  assert csv_epochs(run_copy) == [0, 1, 2]  # no epoch trained twice
  assert sha256(best) == digest
  metrics = _metrics(run_copy)
  assert metrics["epochs_run_in_this_process"] == 0
  assert metrics["last_epoch"] == 3
  assert metrics["export"] == os.path.join(good_dir, "digits", "1")
  assert os.path.exists(os.path.join(good_dir, "digits", "1",
                                     "saved_model.pb"))
  for leftover in ("backup", "training_done.json"):
    assert not os.path.exists(os.path.join(run_copy, leftover))
  # Rerunning the finished run does nothing (no new version, no training).
  assert train_main(_flags(run_copy, "--epochs", "3", "--export", "true",
                           "--export_dir", good_dir)) == 0
  assert "already finished" in capsys.readouterr().out
  assert os.listdir(os.path.join(good_dir, "digits")) == ["1"]
  assert csv_epochs(run_copy) == [0, 1, 2]


@pytest.mark.parametrize("source", ["best.json", "training_log.csv"])
def test_a_resumed_run_keeps_a_better_best_checkpoint(run_copy, source):
  """The best value so far comes from checkpoints/best.json (or, for runs
  from before it existed, the CSV log); here it is better than anything the
  resumed epoch reaches, so best.keras must stay."""
  best = os.path.join(run_copy, "checkpoints", "best.keras")
  state = os.path.join(run_copy, "checkpoints", "best.json")
  digest = sha256(best)
  if source == "best.json":
    with open(state) as f:
      saved = json.load(f)
    saved["best"] = 0.5
    with open(state, "w") as f:
      json.dump(saved, f)
  else:
    os.remove(state)
    log = os.path.join(run_copy, "training_log.csv")
    with open(log, newline="") as f:
      reader = csv.DictReader(f)
      header, rows = reader.fieldnames, list(reader)
    rows[1]["val_bits_per_dim"] = "0.5"
    with open(log, "w", newline="") as f:
      writer = csv.DictWriter(f, header)
      writer.writeheader()
      writer.writerows(rows)
  assert train_main(_flags(run_copy, "--epochs", "3")) == 0
  assert csv_epochs(run_copy) == [0, 1, 2]
  assert sha256(best) == digest
  assert _metrics(run_copy)["best_val_bits_per_dim"] == 0.5


def _truncate(path):
  with open(path, "rb") as f:
    content = f.read()
  with open(path, "wb") as f:
    f.write(content[:len(content) // 2])


@pytest.mark.parametrize("damage", ["keras_weights_no_bkp", "metadata",
                                    "weights_with_bkp"])
def test_a_damaged_backup_falls_back_and_says_what_is_lost(run_copy, damage,
                                                           capsys):
  backup = os.path.join(run_copy, "backup")
  weights = os.path.join(backup, "latest.weights.h5")
  metadata = os.path.join(backup, "training_metadata.json")
  if damage == "keras_weights_no_bkp":
    # As plain keras.callbacks.BackupAndRestore leaves it after a crash
    # mid-write: no checksum, no previous state, a truncated weights file.
    for name in os.listdir(backup):
      if name.endswith(".bkp"):
        os.remove(os.path.join(backup, name))
    with open(metadata, "w") as f:
      json.dump({"epoch": 2, "batch": 0}, f)
    _truncate(weights)
    expected = [weights, "is not a readable Keras weights file",
                "training starts again from epoch 1",
                "epochs 1 to 2 are lost"]
    resumed_epochs, dropped = 3, [0, 1]
  elif damage == "metadata":
    _truncate(metadata)
    expected = [metadata, "is not valid JSON",
                "Resuming from the previous backup",
                "after epoch 1"]
    resumed_epochs, dropped = 2, [1]
  else:
    _truncate(weights)
    expected = [weights, "SHA-256 differs",
                "Resuming from the previous backup",
                "epoch 2 is lost and trained again"]
    resumed_epochs, dropped = 2, [1]
  capsys.readouterr()
  assert train_main(_flags(run_copy, "--epochs", "3")) == 0
  err = capsys.readouterr().err
  for text in expected:
    assert text in err, (text, err[-3000:])
  assert csv_epochs(run_copy) == [0, 1, 2]  # no duplicated epoch rows
  # The log rows of the lost epochs are kept aside, not deleted.
  with open(os.path.join(run_copy, "training_log.discarded.csv"),
            newline="") as f:
    assert [int(r["epoch"]) for r in csv.DictReader(f)] == dropped
  assert _metrics(run_copy)["epochs_run_in_this_process"] == resumed_epochs


def test_a_training_split_smaller_than_a_batch_still_trains(tmp_path,
                                                           capsys):
  steps = []

  class CountSteps(keras.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
      steps.append(batch)

  run_dir = tmp_path / "run"
  code = train_main(["--config", "digits", "--output_dir", str(run_dir),
                     "--epochs", "2", "--batch_size", "5000"] + TINY,
                    callbacks=[CountSteps()])
  assert code == 0
  assert steps == [0, 0]  # one (partial) batch per epoch, not none
  assert "larger than the 1258 training images" in capsys.readouterr().err
  assert csv_epochs(run_dir) == [0, 1]


def test_an_epoch_without_a_training_step_is_an_error():
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, num_res_blocks=1,
                              num_filters=8)
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  empty = tf.data.Dataset.from_tensor_slices(
      np.zeros((0, 8, 8, 1), np.float32)).batch(4)
  with pytest.raises(ValueError, match="epoch 1 ran no training step"):
    model.fit(empty, epochs=2, verbose=0,
              callbacks=[callbacks_lib.EmptyEpochGuard()])
