"""Maintainers' tool: publish a finished run as a shipped pretrained model.

    python -m training.pretrained RUN_DIR --name mnist \\
        --command "realnvp-train --config mnist_fast --max_train_minutes 10 ..."

Loads the run's best checkpoint, makes sure its typicality reference belongs
to its weights (computing it on the run's training split if not), evaluates
the test split as `realnvp-evaluate` does (the run's seed), and writes
`tfp_realnvp/weights/NAME.keras` (weights only, no optimizer state) and its
`catalogue.json` entry: file, SHA-256, test bits/dim, parameters, the
command that trained it, machine and date. An existing name is refused
unless `--replace`.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import zipfile

import keras

from tfp_realnvp import _pretrained
from tfp_realnvp import atomic
from tfp_realnvp import digests
from training import builders
from training import checkpoints
from training import evaluate as evaluate_cli


def _deflate(path):
  """Rewrites a `.keras` zip with DEFLATE (Keras stores it uncompressed; the
  HDF5 file's per-variable padding is most of its size). Keras reads both."""
  with zipfile.ZipFile(path) as source:
    members = [(info, source.read(info)) for info in source.infolist()]
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED,
                       compresslevel=9) as target:
    for info, payload in members:
      target.writestr(info.filename, payload)


def publish(run_dir, name, command, machine, data_dir=None, replace=False,
            weights_dir=_pretrained.WEIGHTS_DIR):
  """Writes `weights_dir/name.keras` and its catalogue entry; returns it."""
  catalogue_path = os.path.join(weights_dir, "catalogue.json")
  catalogue = {}
  if os.path.exists(catalogue_path):
    with open(catalogue_path, encoding="utf-8") as f:
      catalogue = json.load(f)
  if name in catalogue and not replace:
    raise ValueError(f"{name!r} is already published (pass --replace)")
  path, config = checkpoints.locate(run_dir)
  if config is None:
    raise ValueError("publish a run directory (its config names the data)")
  model = checkpoints.load_model(path)
  try:
    model.check_score_statistics()
  except ValueError:
    datasets = builders.load_datasets(dict(config, shuffle_buffer=1),
                                      data_dir, None, False)
    model.compute_score_statistics(datasets.train)
  report = evaluate_cli.evaluate_report(run_dir, data_dir=data_dir,
                                        download=False)
  target = os.path.join(weights_dir, f"{name}.keras")
  with atomic.atomic_path(target, suffix=".keras") as tmp:
    model.save(tmp, overwrite=True)
    _deflate(tmp)
  with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
    metrics = json.load(f)
  entry = {
      "file": f"{name}.keras",
      "sha256": digests.sha256_file(target),
      "config": config.get("config_name"),
      "dataset": config["dataset"],
      "seed": int(config.get("seed", 0)),
      "image_shape": [int(d) for d in model.image_shape],
      "parameters": int(model.count_params()),
      "test_" + model.bits_per_dim_name: report[model.bits_per_dim_name],
      "train_steps": metrics.get("train_steps"),
      "train_seconds": metrics.get("train_seconds"),
      "score_statistics": model.score_statistics.as_dict(),
      "command": command,
      "machine": machine,
      "date": datetime.date.today().isoformat(),
      "keras": keras.__version__,
      "python": platform.python_version(),
  }
  catalogue[name] = entry
  with atomic.atomic_path(catalogue_path, suffix=".json") as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(catalogue, f, indent=2, sort_keys=True)
      f.write("\n")
  return entry


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("run_dir")
  p.add_argument("--name", required=True)
  p.add_argument("--command", required=True,
                 help="the command that trained the run (documented)")
  p.add_argument("--machine", default="2 cores of an AMD EPYC, 24 GB, no GPU")
  p.add_argument("--data_dir")
  p.add_argument("--replace", action="store_true")
  args = p.parse_args(argv)
  try:
    entry = publish(args.run_dir, args.name, args.command, args.machine,
                    args.data_dir, args.replace)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(entry, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
