"""After training: what a trained run produces (`training/train.py`'s last
phases but the metrics).

- `final_model`: the checkpoint with the best validation bits/dim and its
  typicality reference (`score_reference`, beside the checkpoint).
- `evaluate_test`: the test split's single-draw bits/dim (always the whole
  split, or `test_steps` batches of it).
- `importance_weighted`: the importance-weighted bound (`test_iw_samples`
  draws per image), on a seeded random subset of `test_iw_images` of the
  images `evaluate_test` scored.
- `figures_and_export`: samples.png and interpolation.png
  (`write_figures`), and the TF Serving export (`export`; `ExportError`
  when it fails: nothing is lost, the rerun only evaluates and exports).

With `max_train_minutes` the two passes that grow with the data run on
fixed-size subsets unless the config says otherwise
(`configs.evaluation_subset`): the typicality reference on the first 2,048
images of the shuffled training pipeline instead of a whole epoch, and the
importance-weighted figure on 500 test images instead of all (K draws
each), so the whole command ends soon after its budget. Each phase shows a
progress bar (with `verbose` > 0; one line every 10 s when stdout is not a
terminal) and `phase_seconds` in metrics.json records its wall time.
"""

import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from training import builders
from training import checkpoints
from training import configs
from training import console
from training import evaluate as evaluate_cli
from training import export as export_cli
from training import figures
from training import rundir


class ExportError(RuntimeError):
  """Training finished but the TF Serving export failed (nothing is lost)."""


def progress_bar(target, verbose, unit_name="batch"):
  """A Keras progress bar for a post-training phase: live on a terminal,
  one line every 10 s otherwise (logs), none with `verbose` 0."""
  interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
  return keras.utils.Progbar(target, verbose=1 if verbose else 0,
                             interval=0.05 if interactive else 10.0,
                             unit_name=unit_name)


class _Counted:
  """A pipeline that counts the images it yields and advances a progress
  bar per batch (a `tf.py_function` after the last stage: counts what the
  consumer pulls, in order)."""

  def __init__(self, ds, bar):
    self.images = 0
    self.batches = 0
    self.bar = bar

    def tick(size):
      self.images += int(size)
      self.batches += 1
      self.bar.update(self.batches)
      return np.int32(0)

    @tf.autograph.experimental.do_not_convert
    def count(*element):
      structure = element if isinstance(ds.element_spec, tuple) else (
          element[0])
      first = tf.nest.flatten(structure)[0]
      done = tf.py_function(tick, [tf.shape(first)[0]], tf.int32)
      with tf.control_dependencies([done]):
        out = tf.nest.map_structure(tf.identity, structure)
      return out
    self.ds = ds.map(count)

  def finish(self):
    """Ends the bar on the count reached (its target may have been an
    estimate) and returns the images counted."""
    if self.bar.target is None or self.batches < self.bar.target:
      self.bar.target = self.batches
      self.bar.update(self.batches, finalize=True)
    return self.images


def final_model(model, run_dir, config, datasets, multi_worker, verbose=0):
  """Final model: the checkpoint with the best validation bits/dim (else
  the trained model) and its typicality reference, written beside the
  checkpoint. Returns `(model, reference)`; `reference` also says which
  training images it used (`score_reference_subset`)."""
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
  batch = config["batch_size"]
  # Images in a training epoch: full batches only (one partial batch when
  # the split is smaller than a batch).
  epoch = datasets.train_size and (
      datasets.train_size // batch * batch or datasets.train_size)
  if datasets.train_size:
    batch = min(batch, datasets.train_size)
  subset = configs.evaluation_subset(config, "score_reference_images")
  if subset:
    # The first `subset` images of a new pass over the shuffled pipeline,
    # not a whole epoch (the pass fills the shuffle buffer first: up to
    # `shuffle_buffer` more images are read, not scored).
    train = datasets.train.unbatch().take(subset).batch(batch)
    steps = None
    target = math.ceil(min(subset, epoch or subset) / batch)
  else:
    train = datasets.train
    steps = config["steps_per_epoch"] or None
    target = steps or (math.ceil(epoch / batch) if epoch else None)
  _phase(verbose, "typicality reference on "
         + (f"the first {subset:,} images of the shuffled training pipeline"
            if subset else "a training epoch"))
  counted = _Counted(train, progress_bar(target, verbose))
  reference = score_reference(model, counted.ds, steps,
                              best_path if os.path.exists(best_path) else None)
  counted.finish()
  if reference:
    reference["score_reference_subset"] = {
        "images": counted.images,
        "requested": subset or None,
        "of": ("a training epoch" if not subset else
               "the shuffled training pipeline"),
        "train_images": datasets.train_size,
        "selection": ("the whole epoch" if not subset else
                      f"the first images of a new pass over the training "
                      f"pipeline (shuffle buffer "
                      f"{config['shuffle_buffer']:,}, seed "
                      f"{config['seed']}; which images depends on the "
                      f"passes drawn before, and dequantization noise is "
                      f"the training noise)"),
        "seed": config["seed"]}
  return model, reference


def _phase(verbose, text):
  if verbose:
    print(f"after training: {text}", flush=True)


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


def evaluate_test(model, datasets, config, verbose=0):
  """Evaluation: the test split's single-draw bits/dim (all of it, or
  `test_steps` batches). Returns `(test_bpd, test_images)`."""
  steps = config["test_steps"] or None
  _phase(verbose, "test bits/dim (single draw) on "
         + (f"{steps} test batches" if steps else "the test split"))
  known = datasets.test.cardinality().numpy()
  target = steps or (int(known) if known >= 0 else None)
  counted = _Counted(datasets.test if steps is None else
                     datasets.test.take(steps), progress_bar(target, verbose))
  result = model.evaluate(counted.ds, verbose=0, return_dict=True)
  return float(result[model.bits_per_dim_name]), counted.finish()


def iw_subset(config, test_images):
  """The sorted test indices of the importance-weighted figure (a seeded
  random subset of `test_iw_images` of the first `test_images`), or None
  for all of them."""
  subset = configs.evaluation_subset(config, "test_iw_images")
  if not subset or subset >= test_images:
    return None
  rng = np.random.default_rng(config["seed"])
  return np.sort(rng.choice(test_images, size=subset, replace=False))


def importance_weighted(model, datasets, config, test_images, data_dir=None,
                        manual_dir=None, download=True, verbose=0):
  """Evaluation, importance-weighted: with `test_iw_samples` = K, the bound
  over the first `test_images` test images (the ones `evaluate_test`
  scored) or a seeded random subset of `test_iw_images` of them (`iw_subset`;
  each image keeps its evaluation noise as draw 0). Returns the
  metrics.json entries (empty without it)."""
  k = config["test_iw_samples"]
  if not k:
    return {}
  test = datasets.test
  if model.dequantizer is None:  # K dequantized copies of every image
    test = builders.load_datasets(dict(config, shuffle_buffer=1),
                                  data_dir, manual_dir, download,
                                  noise_draws=k).test
  chosen = iw_subset(config, test_images)
  batch = config["batch_size"]
  count = test_images if chosen is None else len(chosen)
  mask = np.zeros(test_images, bool)
  mask[np.arange(test_images) if chosen is None else chosen] = True
  mask = tf.constant(mask)
  last = test_images - 1

  @tf.autograph.experimental.do_not_convert
  def chosen_image(i, element):
    del element
    return tf.gather(mask, tf.minimum(i, last))

  @tf.autograph.experimental.do_not_convert
  def without_index(i, element):
    del i
    return element
  test = (test.unbatch().take(test_images).enumerate().filter(chosen_image)
          .map(without_index).batch(batch)
          .apply(tf.data.experimental.assert_cardinality(
              math.ceil(count / batch))))
  _phase(verbose, f"importance-weighted test bits/dim (K = {k}) on "
         + (f"all {count:,} test images" if chosen is None else
            f"a random subset of {count:,} of the {test_images:,} test "
            f"images (seed {config['seed']})"))
  return {"test_" + evaluate_cli.IW_KEY:
          evaluate_cli.importance_weighted_bits_per_dim(
              model, test, k, verbose=1 if verbose else 0),
          "test_iw_samples": k,
          "test_iw_subset": {
              "images": count, "of": test_images,
              "seed": None if chosen is None else config["seed"],
              "selection": ("all test images" if chosen is None else
                            "uniform without replacement: numpy "
                            "default_rng(seed).choice(of, images)")}}


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


def export(model, run_dir, config, last_epoch, verbose=0):
  """Export: (with `export`) the TF Serving export; returns its path or
  None. Raises ExportError when it fails."""
  if not config["export"]:
    return None
  _phase(verbose, f"exporting for TF Serving to {config['export_dir']}")
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


def figures_and_export(model, datasets, run_dir, config, last_epoch):
  """Figures and export: samples.png, interpolation.png and (with
  `export`) the TF Serving export; returns the export's path or None.
  Raises ExportError when the export fails."""
  write_figures(model, datasets, run_dir, config)
  return export(model, run_dir, config, last_epoch)
