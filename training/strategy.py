"""`tf.distribute` strategies for `realnvp-train --strategy ...`.

    default        one device (whatever TF picks: a GPU if there is one)
    mirrored       all local GPUs (or `--devices /gpu:0,/gpu:1`), one process
    multi_worker   MultiWorkerMirroredStrategy; the cluster comes from the
                   TF_CONFIG environment variable of each process
    tpu            TPUStrategy on `--tpu` (a name or grpc:// address; "" for
                   the TPU VM's local TPU)

The model, its optimizer and metrics are created inside `strategy.scope()`;
Keras `fit` splits each global batch (`--batch_size`) across replicas and
all-reduces the gradients. Which process writes what:

- the chief (task `chief`, or `worker` 0 when there is no chief; the only
  process for the other strategies) writes the run directory: best
  checkpoint, logs, figures, metrics and the TF Serving export;
- every other worker writes only its own training state, under
  `<run_dir>/workertemp_<task_type>_<task_id>/` (e.g. `workertemp_worker_1`:
  its `backup/` while training, then `result.json`; each worker must be able
  to restore itself after a restart, even without a shared filesystem).

`MultiWorkerMirroredStrategy` must exist before TensorFlow runs any op, so
`training.train.run` calls `make` before any (only pure-Python checks of the
config and the run directory come first).
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make(name="default", devices=None, tpu=None):
  """The `tf.distribute.Strategy` called `name` (see module docstring)."""
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy(devices=devices or None)
  if name == "multi_worker":
    if not os.environ.get("TF_CONFIG"):
      raise ValueError(
          "--strategy multi_worker reads the cluster from the TF_CONFIG "
          "environment variable, which is not set. Each process needs e.g. "
          "TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", "
          "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'")
    try:
      json.loads(os.environ["TF_CONFIG"])
    except ValueError as e:
      raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"unknown strategy {name!r}; expected one of "
                   f"{', '.join(STRATEGIES)}")


def is_multi_worker(strategy):
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
      strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def task(strategy):
  """`(task_type, task_id)` of this process; `(None, None)` if single."""
  if not is_multi_worker(strategy):
    return None, None
  resolver = strategy.cluster_resolver
  return resolver.task_type, resolver.task_id


def is_chief(strategy):
  """True for the one process that writes the run's artifacts."""
  task_type, task_id = task(strategy)
  if task_type is None:
    return True
  if task_type == "chief":
    return True
  cluster = strategy.cluster_resolver.cluster_spec().as_dict()
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def write_dir(run_dir, strategy):
  """Where this process writes: the run dir (chief) or its own temp dir."""
  if is_chief(strategy):
    return run_dir
  task_type, task_id = task(strategy)
  return os.path.join(run_dir, f"workertemp_{task_type}_{task_id}")


def num_workers(strategy):
  task_type, _ = task(strategy)
  if task_type is None:
    return 1
  cluster = strategy.cluster_resolver.cluster_spec().as_dict()
  return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def any_worker(strategy, flag):
  """True on every worker if `flag` is True on any of them (a collective:
  all workers must call it at the same point, e.g. at an epoch end)."""
  if num_workers(strategy) == 1:
    return bool(flag)
  value = tf.constant(1.0 if flag else 0.0)
  per_replica = strategy.run(lambda: tf.identity(value))
  return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                              axis=None).numpy() > 0)


def barrier(strategy):
  """Returns on each worker once every worker has called it (a collective;
  nothing under one worker)."""
  any_worker(strategy, False)


def max_over_workers(strategy, value):
  """The largest of every worker's float `value` (a collective, like
  `any_worker`)."""
  if num_workers(strategy) == 1:
    return float(value)
  tensor = tf.constant(float(value), tf.float32)
  per_replica = strategy.run(lambda: tf.identity(tensor))
  return float(strategy.reduce(tf.distribute.ReduceOp.MAX, per_replica,
                               axis=None).numpy())
