"""`realnvp-train --strategy multi_worker`: two real worker processes on
127.0.0.1 (TF_CONFIG), MultiWorkerMirroredStrategy over gRPC, on digits."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A short run: 2 epochs of 6 global batches of 32 (16 per worker).
TRAIN_FLAGS = ["--config", "digits", "--strategy", "multi_worker",
               "--num_filters", "8", "--num_res_blocks", "1",
               "--batch_size", "32", "--steps_per_epoch", "6",
               "--validation_steps", "2", "--test_steps", "2",
               "--num_samples", "4", "--interpolation_steps", "3",
               "--verbose", "0", "--num_scales", "1"]


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _start_workers(tmp_path, ports, epochs, extra_flags=()):
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = []
  for index in range(len(ports)):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               TF_CONFIG=json.dumps({"cluster": cluster,
                                     "task": {"type": "worker",
                                              "index": index}}))
    log = open(tmp_path / f"worker{index}.log", "ab")  # pylint: disable=consider-using-with
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "training.train", *TRAIN_FLAGS,
         "--epochs", str(epochs), "--output_dir", str(tmp_path / "run"),
         "--export_dir", str(tmp_path / "saved_models"), *extra_flags],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
  return procs


def _wait(procs, tmp_path, timeout=600):
  deadline = time.time() + timeout
  codes = []
  for proc in procs:
    try:
      codes.append(proc.wait(timeout=max(1, deadline - time.time())))
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      pytest.fail("workers did not finish:\n" + _logs(tmp_path))
  return codes


def _logs(tmp_path):
  return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
                   for p in sorted(tmp_path.glob("worker*.log")))


def _worker_result(tmp_path, index):
  path = tmp_path / "run" / f"workertemp_worker_{index}" / "result.json"
  return json.loads(path.read_text())


# One two-worker run serves both multi-worker tests below (each run starts
# two TF processes twice: most of its cost): a run with Glow's actnorm that
# loses a worker after its first backed-up epoch and is restarted, as a
# cluster manager would, with the same command.
EPOCHS = 4


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
  """The directory of a finished two-worker run that was SIGKILLed (both
  workers) after epoch 1 was backed up, then restarted and finished; the
  kill happens here, its checks are in test_killed_worker_resumes_from_backup.
  Returns (tmp_path, return codes of the restarted workers)."""
  tmp_path = tmp_path_factory.mktemp("two_workers")
  ports = _free_ports(2)
  # With Glow's actnorm: each worker initialises it from its own first
  # batch, then the workers agree (the final weights are equal).
  flags = ["--actnorm", "true"]
  procs = _start_workers(tmp_path, ports, epochs=EPOCHS, extra_flags=flags)
  metadata = (tmp_path / "run" / "backup" / "training_metadata.json")
  deadline = time.time() + 600
  while time.time() < deadline:
    if metadata.is_file() and json.loads(metadata.read_text())["epoch"] >= 1:
      break
    if any(p.poll() is not None for p in procs):
      pytest.fail("a worker exited early:\n" + _logs(tmp_path))
    time.sleep(0.1)
  else:
    pytest.fail("no backup after 600 s:\n" + _logs(tmp_path))
  procs[1].send_signal(signal.SIGKILL)  # a worker dies mid-run
  procs[1].wait()
  # The chief cannot continue alone (its collectives have no peer); the
  # cluster manager restarts the whole job with the same command.
  procs[0].send_signal(signal.SIGKILL)
  procs[0].wait()
  metrics_after_kill = (tmp_path / "run" / "metrics.json").exists()
  procs = _start_workers(tmp_path, ports, epochs=EPOCHS, extra_flags=flags)
  codes = _wait(procs, tmp_path)
  return tmp_path, codes, metrics_after_kill


def test_two_workers_train_and_only_the_chief_writes(killed_and_resumed):
  tmp_path, codes, _ = killed_and_resumed
  assert codes == [0, 0], _logs(tmp_path)
  run = tmp_path / "run"
  metrics = json.loads((run / "metrics.json").read_text())
  assert metrics["num_replicas"] == 2
  assert metrics["last_epoch"] == EPOCHS
  assert metrics["config"]["actnorm"] is True
  assert metrics["test_bits_per_dim"] > 0
  assert (run / "checkpoints" / "best.keras").is_file()
  versions = list((tmp_path / "saved_models" / "digits").iterdir())
  assert [v.name for v in versions if v.is_dir()] == ["1"]
  # The worker wrote nothing but its own (now finished) backup and result.
  worker_dir = run / "workertemp_worker_1"
  assert sorted(p.name for p in worker_dir.iterdir()) == ["result.json"]
  worker = _worker_result(tmp_path, 1)
  assert worker["last_epoch"] == EPOCHS
  # Same synchronized weights on both workers at the end of training.
  assert worker["final_weights_sha256"] == metrics["final_weights_sha256"]


def test_killed_worker_resumes_from_backup(killed_and_resumed):
  tmp_path, codes, metrics_after_kill = killed_and_resumed
  assert not metrics_after_kill  # killed before the run could finish
  assert codes == [0, 0], _logs(tmp_path)
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["resumed"] is True
  assert metrics["last_epoch"] == EPOCHS
  # Resumed from the backup, not from scratch: fewer than EPOCHS epochs ran
  # now.
  assert 1 <= metrics["epochs_run_in_this_process"] <= EPOCHS - 1
  worker = _worker_result(tmp_path, 1)
  assert worker["resumed"] is True
  assert worker["epochs_run_in_this_process"] == metrics[
      "epochs_run_in_this_process"]
  assert worker["final_weights_sha256"] == metrics["final_weights_sha256"]


def test_relaunch_after_training_ended_but_before_a_worker_result(
    killed_and_resumed, tmp_path):
  """The job killed after the chief wrote training_done.json and before the
  worker wrote its result.json (issue 13's open case), then relaunched with
  the same command: the chief evaluates and exports, the worker writes its
  result without training or waiting; both exit 0 (the worker used to
  train again alone and fail, exit 1, when its collectives lost their peer)."""
  import shutil  # pylint: disable=import-outside-toplevel
  source, _, _ = killed_and_resumed
  shutil.copytree(source / "run", tmp_path / "run")
  shutil.copytree(source / "saved_models", tmp_path / "saved_models")
  run = tmp_path / "run"
  metrics = json.loads((run / "metrics.json").read_text())
  # The state that kill leaves: the chief's training summary, no metrics,
  # no worker result (and no worker backup that would end training).
  done_keys = ("last_epoch", "epochs_run_in_this_process", "resumed",
               "train_images_per_second", "train_seconds", "train_steps",
               "final_weights_sha256")
  (run / "training_done.json").write_text(json.dumps(
      {k: v for k, v in metrics.items()
       if k in done_keys or k.startswith("best_")}))
  (run / "metrics.json").unlink()
  (run / "workertemp_worker_1" / "result.json").unlink()
  codes = _wait(_start_workers(tmp_path, _free_ports(2), epochs=EPOCHS,
                               extra_flags=["--actnorm", "true"]),
                tmp_path, timeout=240)
  assert codes == [0, 0], _logs(tmp_path)
  again = json.loads((run / "metrics.json").read_text())
  assert again["last_epoch"] == EPOCHS
  assert again["final_weights_sha256"] == metrics["final_weights_sha256"]
  assert again["test_bits_per_dim"] == pytest.approx(
      metrics["test_bits_per_dim"], abs=1e-4)
  worker = _worker_result(tmp_path, 1)
  assert worker["training_ended_before_this_launch"] is True
  assert worker["worker"] == ["worker", 1]
  assert "ended in an earlier launch" in (tmp_path / "worker1.log").read_text()
  assert not (run / "training_done.json").exists()


def test_mirrored_strategy_from_the_command_line(tmp_path):
  """`--strategy mirrored --devices ...` trains under MirroredStrategy (one
  CPU replica here; the two-replica numerics are tests/test_fit.py's)."""
  proc = subprocess.run(
      [sys.executable, "-m", "training.train", *TRAIN_FLAGS[:2],
       "--strategy", "mirrored", "--devices", "/cpu:0",
       *TRAIN_FLAGS[4:], "--epochs", "1", "--export", "false",
       "--output_dir", str(tmp_path / "run")],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["num_replicas"] == 1
  assert metrics["last_epoch"] == 1


def test_strategy_errors_are_clear(monkeypatch):
  from training import strategy as strategy_lib
  import tensorflow as tf
  assert strategy_lib.make("default") is tf.distribute.get_strategy()
  assert strategy_lib.is_chief(tf.distribute.get_strategy())
  assert strategy_lib.num_workers(tf.distribute.get_strategy()) == 1
  with pytest.raises(ValueError, match="unknown strategy 'horovod'"):
    strategy_lib.make("horovod")
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(ValueError, match="TF_CONFIG"):
    strategy_lib.make("multi_worker")
  monkeypatch.setenv("TF_CONFIG", "{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    strategy_lib.make("multi_worker")


def test_multi_worker_needs_a_shared_output_dir(tmp_path):
  ports = _free_ports(2)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
      {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
       "task": {"type": "worker", "index": 0}}))
  proc = subprocess.run(
      [sys.executable, "-m", "training.train", *TRAIN_FLAGS],
      cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 2
  assert "--output_dir" in proc.stderr
