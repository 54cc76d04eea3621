"""After training: what a trained run produces (`training/train.py`'s last
phases but the metrics).

- `final_model`: the checkpoint with the best validation bits/dim and its
  typicality reference (`score_reference`, beside the checkpoint).
- `evaluate_test`: the test split's bits/dim (and the importance-weighted
  bound).
- `figures_and_export`: samples.png and interpolation.png
  (`write_figures`), and the TF Serving export (`ExportError` when it
  fails: nothing is lost, the rerun only evaluates and exports).
"""

import os
import time

import numpy as np

from training import builders
from training import checkpoints
from training import console
from training import evaluate as evaluate_cli
from training import export as export_cli
from training import figures
from training import rundir


class ExportError(RuntimeError):
  """Training finished but the TF Serving export failed (nothing is lost)."""


def final_model(model, run_dir, config, datasets, multi_worker):
  """Final model: the checkpoint with the best validation bits/dim (else
  the trained model) and its typicality reference, written beside the
  checkpoint. Returns `(model, reference)`."""
  best_path = os.path.join(run_dir, rundir.BEST_MODEL)
  if os.path.exists(best_path):
    model = checkpoints.load_model(best_path)
  elif multi_worker:
    # Evaluating the distributed model would be a collective; the chief
    # scores a local copy of the (synchronized) weights alone.
    local = builders.build_model(config, datasets.image_shape,
                                 datasets.num_classes)
    local.set_weights(model.get_weights())
    model = local
    model.compile()
  reference = score_reference(model, datasets.train,
                              config["steps_per_epoch"] or None,
                              best_path if os.path.exists(best_path) else None)
  return model, reference


def score_reference(model, train, steps, checkpoint=None):
  """Computes the model's typicality reference on the training split (one
  inference pass; `steps` batches if given) and, when `checkpoint` is
  given, writes it beside it (`checkpoints.reference_path`, atomically):
  best.keras itself is never rewritten, and `checkpoints.load_model` applies
  the reference when its weight digest matches. Returns `{"train_bpd_mean",
  "train_bpd_std", "train_images", "score_statistics_seconds"}` for
  metrics.json."""
  started = time.perf_counter()
  try:
    reference = model.compute_score_statistics(train, steps=steps)
  except ValueError as e:  # e.g. non-finite densities: report, go on
    console.warn(f"no typicality reference for realnvp-score: {e}")
    return {}
  if checkpoint is not None:
    checkpoints.write_reference(model, checkpoint)
  return dict(reference,
              score_statistics_seconds=time.perf_counter() - started)


def evaluate_test(model, datasets, config, data_dir=None, manual_dir=None,
                  download=True):
  """Evaluation: the test split's bits/dim and, with `test_iw_samples`,
  the importance-weighted bound. Returns `(test_bpd, iw)`, `iw` being the
  metrics.json entries of the bound (empty without it)."""
  result = model.evaluate(datasets.test, steps=config["test_steps"] or None,
                          verbose=0, return_dict=True)
  test_bpd = float(result[model.bits_per_dim_name])
  iw = {}
  if config["test_iw_samples"]:
    k = config["test_iw_samples"]
    test = datasets.test
    if model.dequantizer is None:  # K dequantized copies of every image
      test = builders.load_datasets(dict(config, shuffle_buffer=1),
                                    data_dir, manual_dir, download,
                                    noise_draws=k).test
    iw = {"test_" + evaluate_cli.IW_KEY:
          evaluate_cli.importance_weighted_bits_per_dim(
              model, test, k, steps=config["test_steps"] or None),
          "test_iw_samples": k}
  return test_bpd, iw


def write_figures(model, datasets, run_dir, config):
  """samples.png (one grid per temperature) and interpolation.png."""
  up = figures.upscale_for(model.image_shape)
  grids = [figures.captioned(figures.upscaled(figures.sample_grid(
      model, config["num_samples"], t, seed=(config["seed"], 12345)), up),
                             figures.temperature_caption(t))
           for t in config["temperatures"]]
  gap = np.full((grids[0].shape[0], 8 * up, grids[0].shape[2]), 255,
                np.uint8)
  row = np.concatenate(sum(([g, gap] for g in grids), [])[:-1], axis=1)
  figures.save_png(row, os.path.join(run_dir, "samples.png"))

  batch = next(iter(datasets.test.unbatch().batch(4).take(1)))
  if model.num_classes:  # elements are ((images, labels),)
    four, labels = batch[0]
    label = int(labels[0])
  else:
    four, label = batch, None
  if four.shape[0] == 4:
    manifold = model.interpolate(four, steps=config["interpolation_steps"],
                                 labels=label)
    figures.save_png(figures.grid(manifold.numpy()),
                     os.path.join(run_dir, "interpolation.png"), upscale=up)


def figures_and_export(model, datasets, run_dir, config, last_epoch):
  """Figures and export: samples.png, interpolation.png and (with
  `export`) the TF Serving export; returns the export's path or None.
  Raises ExportError when the export fails."""
  write_figures(model, datasets, run_dir, config)
  if not config["export"]:
    return None
  try:
    export_path = export_cli.export_model(model, config["export_dir"],
                                          name=config["config_name"])
  except (OSError, ValueError) as e:
    raise ExportError(
        f"training finished ({last_epoch} epochs, {run_dir}) but "
        f"the TF Serving export to {config['export_dir']!r} failed: "
        f"{type(e).__name__}: {e}. Nothing is lost: fix it (e.g. "
        f"--export_dir) and rerun the same command to evaluate and export "
        f"without training again") from e
  print(f"exported for TF Serving: {export_path}", flush=True)
  return export_path
