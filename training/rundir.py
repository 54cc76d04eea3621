"""The files of a run directory (the list is `training/train.py`'s docstring).

- Where a run goes: `resolve_run_dir` (given, an unfinished one to resume,
  or a new one), `run_state` (finished, trained, resumable or new) and
  `check_run_dir` (may this config (re)enter it; `config_differences`).
- The bookkeeping around training: config.json, training_done.json,
  metrics.json, a worker's result.json, the best value of
  checkpoints/best.keras (`best_so_far`), training_log.csv rows of epochs
  the restored state does not contain (`trim_training_log`), and removing
  the training state when the run is done (`finish`).

Every JSON file is written atomically (`write_json`). The backed-up training
state itself (backup/) is `training/backup.py`'s.
"""

import csv
import glob
import json
import math
import os
import shutil
import time

from tfp_realnvp import atomic
from training import configs
from training import console

CONFIG_FILE = "config.json"
BACKUP_DIR = "backup"
DONE_FILE = "training_done.json"
METRICS_FILE = "metrics.json"
RESULT_FILE = "result.json"  # a non-chief worker's, in its own directory
LOG_FILE = "training_log.csv"
DISCARDED_LOG_FILE = "training_log.discarded.csv"
BEST_MODEL = os.path.join("checkpoints", "best.keras")
BEST_STATE = os.path.join("checkpoints", "best.json")
MONITOR = "val_bits_per_dim"  # a variational dequantizer's: val_variational_...


def monitor_of(config):
  """The validation figure that picks the best checkpoint: `val_` + the
  model's `bits_per_dim_name` (a variational dequantizer reports its bound
  as variational_bits_per_dim)."""
  from tfp_realnvp import dequantization  # pylint: disable=import-outside-toplevel
  name = config.get("dequantizer", "none")
  if name in dequantization.DEQUANTIZERS:
    return "val_" + dequantization.DEQUANTIZERS[name].metric_name
  return MONITOR


# --- JSON files --------------------------------------------------------------


def write_json(obj, path):
  """Atomic JSON write (temp file + rename)."""
  with atomic.atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")


def read_json(path, what="file"):
  """Parsed JSON of `path`; a ValueError naming the file if it is not."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{what} {path} is not valid JSON ({e.msg}: line "
                     f"{e.lineno} column {e.colno}); it is damaged "
                     f"(truncated?)") from None


def write_config(run_dir, config, num_parameters, num_replicas):
  """config.json: the run's full config, its model size and replica count."""
  write_json(dict(config, num_parameters=num_parameters,
                  num_replicas=num_replicas),
             os.path.join(run_dir, CONFIG_FILE))


def read_done(run_dir):
  """The training summary training_done.json (training ended, evaluation
  or export did not)."""
  return read_json(os.path.join(run_dir, DONE_FILE), "the training summary")


def write_done(run_dir, done):
  """Writes training_done.json: from here on a failure (evaluation,
  figures, export) loses nothing, the rerun does not train again."""
  write_json(done, os.path.join(run_dir, DONE_FILE))


def read_metrics(run_dir):
  """The metrics.json of a finished run."""
  return read_json(os.path.join(run_dir, METRICS_FILE))


def write_metrics(run_dir, metrics):
  write_json(metrics, os.path.join(run_dir, METRICS_FILE))


def result_path(own_dir):
  """A non-chief worker's result.json, in the directory it writes to."""
  return os.path.join(own_dir, RESULT_FILE)


def backup_dir(own_dir):
  """The backed-up training state of the process writing to `own_dir`."""
  return os.path.join(own_dir, BACKUP_DIR)


def finish_worker(own_dir, result):
  """A non-chief worker is done: its result.json, and no backup/ any more."""
  write_json(result, result_path(own_dir))
  shutil.rmtree(backup_dir(own_dir), ignore_errors=True)


def finish(run_dir, backup):
  """The run is done: its training state (the `backup` directory and
  training_done.json) is no longer needed."""
  shutil.rmtree(backup, ignore_errors=True)
  done_path = os.path.join(run_dir, DONE_FILE)
  if os.path.exists(done_path):
    os.remove(done_path)


# --- where a run goes, and whether a config may enter it ---------------------


def resolve_run_dir(config_name, output_dir=None, fresh=False, root="runs"):
  """The run directory: given, an unfinished one to resume, or a new one."""
  if output_dir:
    return output_dir, os.path.isdir(os.path.join(output_dir, BACKUP_DIR))
  if not fresh:
    unfinished = sorted(
        d for d in glob.glob(os.path.join(root, f"{config_name}-*"))
        if os.path.isdir(os.path.join(d, BACKUP_DIR)) and
        not os.path.exists(os.path.join(d, METRICS_FILE)))
    if unfinished:
      return unfinished[-1], True
  base = os.path.join(root, f"{config_name}-{time.strftime('%Y%m%d-%H%M%S')}")
  path, n = base, 1
  while os.path.exists(path):  # two runs started in the same second
    n += 1
    path = f"{base}-{n}"
  return path, False


def run_state(run_dir):
  """'finished' (metrics.json), 'trained' (training ended; evaluation or
  export did not), 'resumable' (a backup/), or 'new'."""
  if os.path.exists(os.path.join(run_dir, METRICS_FILE)):
    return "finished"
  if os.path.exists(os.path.join(run_dir, DONE_FILE)):
    return "trained"
  if os.path.isdir(os.path.join(run_dir, BACKUP_DIR)):
    return "resumable"
  return "new"


def _normalized(value):
  return [_normalized(v) for v in value] if isinstance(
      value, (list, tuple)) else value


def config_differences(saved, config, ignore=()):
  """`["key old -> new", ...]` for the keys of `config` that differ from
  the `saved` config.json (keys it lacks take their defaults)."""
  keys = sorted((set(configs.FIELDS) | {"config_name", "num_classes"}) -
                set(ignore))
  out = []
  for key in keys:
    default = configs.FIELDS[key][0] if key in configs.FIELDS else None
    old = _normalized(saved.get(key, default))
    new = _normalized(config.get(key, default))
    if old != new:
      out.append(f"{key} {json.dumps(old)} -> {json.dumps(new)}")
  return out


def _refuse_leftovers(run_dir):
  """A ValueError if a 'new' `run_dir` holds a best model or log rows."""
  # (A run killed in its first epoch leaves an empty log: not a leftover.)
  leftovers = ([BEST_MODEL] if os.path.exists(os.path.join(
      run_dir, BEST_MODEL)) else []) + ([LOG_FILE] if read_log(run_dir)[1]
                                        else [])
  if leftovers:
    raise ValueError(
        f"{run_dir} holds {' and '.join(leftovers)} of an earlier run but "
        f"no backup/ to resume it from and no metrics.json; refusing to "
        f"overwrite them. Choose another --output_dir (realnvp-evaluate "
        f"and realnvp-export work on this one as it is)")


def check_writable(run_dir):
  """A ValueError naming `run_dir` unless it is (or can be created as) a
  writable directory."""
  if os.path.exists(run_dir) and not os.path.isdir(run_dir):
    raise ValueError(f"--output_dir {run_dir!r} is a file, not a directory; "
                     f"choose a directory (it is created if missing)")
  existing = os.path.abspath(run_dir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f"--output_dir {run_dir!r} cannot be created: "
                     f"{existing!r} is a file")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ValueError(f"--output_dir {run_dir!r} is not writable "
                     f"({existing!r} does not allow writing)")


def check_run_dir(run_dir, config, fresh=False, explicit=False):
  """Returns `run_state(run_dir)` if `config` may (re)enter it; raises a
  ValueError naming the differing keys (or the leftover files, or a path
  that cannot be written) otherwise."""
  check_writable(run_dir)
  state = run_state(run_dir)
  if state == "new":
    _refuse_leftovers(run_dir)
    return state
  if fresh:
    raise ValueError(f"--fresh: {run_dir} already holds a run ({state}); "
                     f"choose another --output_dir (nothing is deleted)")
  config_path = os.path.join(run_dir, CONFIG_FILE)
  if not os.path.exists(config_path):
    console.warn(f"{config_path} is missing: cannot check that the run in "
                 f"{run_dir} was started with this config")
    return state
  saved = read_json(config_path, "the run's config")
  if state == "finished":
    diffs = config_differences(saved, config)
    if diffs:
      raise ValueError(
          f"{run_dir} holds a finished run (metrics.json) started with a "
          f"different config: {', '.join(diffs)}. A finished run is not "
          f"trained again: choose another --output_dir (realnvp-evaluate "
          f"and realnvp-export work on the finished run)")
    return state
  diffs = config_differences(saved, config, configs.MAY_CHANGE_ON_RESUME)
  if diffs:
    how = ("choose another --output_dir" if explicit else
           "pass --fresh to start a new run")
    raise ValueError(
        f"the unfinished run in {run_dir} was started with a different "
        f"config: {', '.join(diffs)}. Rerun with the original values to "
        f"resume it, or {how} (only "
        f"{', '.join(configs.MAY_CHANGE_ON_RESUME)} may change on resume)")
  return state


# --- the best checkpoint's value and the training log ------------------------


def best_so_far(run_dir, monitor=MONITOR):
  """The validation bits/dim of `checkpoints/best.keras`, or None.

  From `checkpoints/best.json`, else (runs from before it existed) the best
  `monitor` column (`val_bits_per_dim`) of training_log.csv.
  """
  if not os.path.exists(os.path.join(run_dir, BEST_MODEL)):
    return None
  state_path = os.path.join(run_dir, BEST_STATE)
  if os.path.exists(state_path):
    try:
      value = float(read_json(state_path)["best"])
      if math.isfinite(value):
        return value
      raise ValueError(f"best is {value}")
    except (ValueError, KeyError, TypeError) as e:
      console.warn(f"{state_path} is unreadable ({e}); taking the best "
                   f"validation figure from {LOG_FILE} instead")
  values = []
  for row in read_log(run_dir)[1]:
    try:
      values.append(float(row[monitor]))
    except (KeyError, TypeError, ValueError):
      pass
  values = [v for v in values if math.isfinite(v)]
  if values:
    return min(values)
  console.warn(f"the validation bits/dim of {os.path.join(run_dir, BEST_MODEL)}"
               f" is unknown (no {BEST_STATE}, no {LOG_FILE} rows); the next "
               f"epoch's model replaces it")
  return None


def read_log(run_dir):
  """`(header, rows)` of training_log.csv (`(None, [])` when absent)."""
  path = os.path.join(run_dir, LOG_FILE)
  if not os.path.exists(path):
    return None, []
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


def _epoch_numbers(rows):
  """The 1-based epoch numbers of log rows ('(broken row)' if none)."""
  numbers = []
  for row in rows:
    try:
      numbers.append(str(int(row["epoch"]) + 1))
    except (TypeError, ValueError):
      numbers.append("(broken row)")
  return numbers


def trim_training_log(run_dir, epochs_done):
  """Keeps the training_log.csv rows of the `epochs_done` epochs the
  restored state contains. Rows of later epochs (trained by a process whose
  state was not saved or was damaged; they are trained again) and broken
  rows move to training_log.discarded.csv, with a warning."""
  header, rows = read_log(run_dir)
  if not header or "epoch" not in header:
    return
  keep, drop = [], []
  for row in rows:
    try:
      ok = None not in row.values() and int(row["epoch"]) < epochs_done
    except (TypeError, ValueError):
      ok = False
    (keep if ok else drop).append(row)
  if not drop:
    return
  discarded = os.path.join(run_dir, DISCARDED_LOG_FILE)
  new_file = not os.path.exists(discarded)
  with open(discarded, "a", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, header, extrasaction="ignore")
    if new_file:
      writer.writeheader()
    writer.writerows({k: v for k, v in r.items() if k is not None}
                     for r in drop)
  path = os.path.join(run_dir, LOG_FILE)
  with atomic.atomic_path(path) as tmp:
    with open(tmp, "w", newline="", encoding="utf-8") as f:
      writer = csv.DictWriter(f, header)
      writer.writeheader()
      writer.writerows(keep)
  console.warn(f"{path}: the rows of epoch(s) "
               f"{', '.join(_epoch_numbers(drop))} describe "
               f"training that the restored state (after epoch "
               f"{epochs_done}) does not contain; moved them to {discarded} "
               f"(those epochs are trained again)")
