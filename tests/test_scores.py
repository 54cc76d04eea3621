"""Out-of-distribution scores (issue 18): the three kinds against their
formulas, the typicality reference (set by fit, saved, exported, refused
when stale), the `score` serving signature through the C-API loader, AUROC,
and `realnvp-score` on runs, exports and folders."""

import csv
import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn import metrics as sk_metrics

import tfp_realnvp
from conftest import perturb_weights
from test_training import TINY
from tfp_realnvp import export, scores
from tfp_realnvp.testing import capi
from training import checkpoints
from training import data
from training import score as score_cli
from training import train as train_cli

SMALL = dict(image_shape=(8, 8, 1), num_scales=2, num_res_blocks=1,
             num_filters=8)


def _model(seed=0, **kwargs):
  model = tfp_realnvp.RealNVP(**dict(SMALL, **kwargs))
  perturb_weights([model], seed=seed, scale=0.1)
  return model


def _levels(n, seed=0, shape=(8, 8, 1)):
  return np.random.default_rng(seed).integers(0, 256, (n,) + shape).astype(
      np.uint8)


def _bpd_by_hand(model, levels, labels=None):
  lp = model.log_prob(levels.astype(np.float32) + 0.5, labels=labels).numpy()
  return -lp / (model.event_size * math.log(2.0))


def test_png_bits_per_dim_is_the_png_size():
  levels = np.concatenate([_levels(3), np.full((2, 8, 8, 1), 7, np.uint8)])
  got = scores.png_bits_per_dim(levels).numpy()
  for i, image in enumerate(levels):
    size = len(tf.io.encode_png(image, compression=9).numpy())
    assert got[i] == pytest.approx(8.0 * size / 64)
  assert got[3] < got[0]  # a constant image compresses far better
  with pytest.raises(TypeError, match="uint8"):
    scores.png_bits_per_dim(levels.astype(np.float32))


def test_score_kinds_follow_their_formulas(rng):
  model = _model()
  levels = _levels(5)
  bpd = _bpd_by_hand(model, levels)
  np.testing.assert_allclose(model.score(levels, "bpd").numpy(), bpd,
                             rtol=1e-5)
  # Floats are floored: dequantized pixels score like their levels.
  noisy = levels.astype(np.float32) + rng.uniform(0, 0.999, levels.shape)
  np.testing.assert_allclose(model.score(noisy, "bpd").numpy(), bpd,
                             rtol=1e-5)
  png = scores.png_bits_per_dim(levels).numpy()
  np.testing.assert_allclose(model.score(levels, "complexity").numpy(),
                             bpd - png, rtol=1e-5, atol=1e-5)
  model.compute_score_statistics(_levels(40, seed=1), batch_size=16)
  mean = float(model.score_statistics.mean.numpy())
  np.testing.assert_allclose(model.score(levels, "typicality").numpy(),
                             np.abs(bpd - mean), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="unknown score kind 'nll'"):
    model.score(levels, "nll")
  with pytest.raises(tf.errors.InvalidArgumentError, match="above 256"):
    model.score(np.full((1, 8, 8, 1), 300.0, np.float32))
  with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                     match=r"8, 8, 1"):
    model.score(np.zeros((1, 4, 4, 1), np.uint8))


def test_conditional_model_scores_the_class_marginal():
  model = _model(seed=3, num_classes=3)
  levels = _levels(4, seed=2)
  per_class = np.stack([
      model.log_prob(levels.astype(np.float32) + 0.5,
                     labels=np.full([4], c, np.int32)).numpy()
      for c in range(3)])
  log_p = np.logaddexp.reduce(per_class.astype(np.float64), axis=0) - \
      math.log(3)
  np.testing.assert_allclose(model.score(levels, "bpd").numpy(),
                             -log_p / (64 * math.log(2.0)), rtol=1e-5)


def test_fit_sets_the_reference_and_stale_weights_are_refused():
  model = tfp_realnvp.RealNVP(**SMALL)
  with pytest.raises(ValueError, match="does not have"):
    model.score(_levels(2), "typicality")
  x = _levels(48, seed=4).astype(np.float32) + 0.5
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  model.fit(x, epochs=1, batch_size=16, verbose=0)
  stats = model.score_statistics.as_dict()
  bpd = model.score(x, "bpd").numpy().astype(np.float64)
  assert stats["train_images"] == 48
  assert stats["train_bpd_mean"] == pytest.approx(bpd.mean(), rel=1e-5)
  assert stats["train_bpd_std"] == pytest.approx(bpd.std(), rel=1e-3)
  assert np.all(np.isfinite(model.score(x[:4], "typicality").numpy()))
  # Any weight change makes the reference stale: refused, not served.
  v = model.trainable_weights[0]
  v.assign(v + 0.01)
  with pytest.raises(ValueError, match="other weights"):
    model.score(x[:4], "typicality")
  model.compute_score_statistics(x, batch_size=16)
  model.score(x[:4], "typicality")
  # A dataset, with steps; the parameter count ignores the statistics.
  ds = tf.data.Dataset.from_tensor_slices(x).batch(8).repeat()
  assert model.compute_score_statistics(ds, steps=2)["train_images"] == 16
  with pytest.raises(ValueError, match="infinite"):
    model.compute_score_statistics(ds)
  statistics = sum(int(np.prod(w.shape))
                   for w in model.score_statistics.weights)
  assert statistics == 5  # mean, std, count, digest[2]
  assert model.count_params() == sum(
      int(np.prod(w.shape)) for w in model.weights) - statistics
  fresh = tfp_realnvp.RealNVP(**SMALL)
  assert fresh.count_params() == model.count_params()


def test_use_ema_switch_makes_the_reference_stale():
  model = _model(ema_decay=0.9)
  model.compute_score_statistics(_levels(16), batch_size=8)
  model.score(_levels(2), "typicality")
  model.use_ema = False
  with pytest.raises(ValueError, match="use_ema"):
    model.score(_levels(2), "typicality")


def test_reference_is_saved_and_old_files_load_without_it(tmp_path):
  model = _model(seed=5)
  model.compute_score_statistics(_levels(32, seed=6), batch_size=16)
  path = str(tmp_path / "m.keras")
  model.save(path)
  back = keras.saving.load_model(path)
  assert back.score_statistics.as_dict() == model.score_statistics.as_dict()
  np.testing.assert_allclose(back.score(_levels(3), "typicality").numpy(),
                             model.score(_levels(3), "typicality").numpy(),
                             rtol=1e-6)
  old = keras.saving.load_model(os.path.join(
      os.path.dirname(__file__), "data", "pre_issue14_conditional.keras"))
  assert not old.score_statistics.is_set()
  with pytest.raises(ValueError, match="does not have"):
    old.score(_levels(1, shape=tuple(old.image_shape)), "typicality")


def test_auroc_matches_sklearn_with_ties():
  rng = np.random.default_rng(0)
  a = np.round(rng.normal(0, 1, 300), 1)
  b = np.round(rng.normal(0.7, 1, 200), 1)
  expected = sk_metrics.roc_auc_score(
      np.r_[np.zeros(300), np.ones(200)], np.r_[a, b])
  assert scores.auroc(a, b) == pytest.approx(expected, abs=1e-12)
  assert scores.auroc([0, 1], [2, 3]) == 1.0
  assert scores.auroc([2, 3], [0, 1]) == 0.0
  assert scores.auroc([1, 1], [1]) == 0.5
  with pytest.raises(ValueError, match="non-finite outlier"):
    scores.auroc([1.0], [np.nan])
  with pytest.raises(ValueError, match="no inlier"):
    scores.auroc([], [1.0])


def test_score_signature_serves_through_the_c_api(tmp_path):
  model = _model(seed=7)
  with pytest.warns(UserWarning, match="no typicality output"):
    bare = export.export_for_serving(model, str(tmp_path / "a"),
                                     warmup_requests=0)
  with capi.CApiSession(bare) as session:
    assert sorted(session.signatures["score"]["outputs"]) == [
        "bits_per_dim", "complexity", "png_bits_per_dim"]
  model.compute_score_statistics(_levels(32, seed=8), batch_size=16)
  path = export.export_for_serving(model, str(tmp_path / "b"))
  description = export.read_description(path)
  assert description["image_shape"] == [8, 8, 1]
  assert description["score_statistics"] == model.score_statistics.as_dict()
  levels = _levels(5, seed=9)
  with capi.CApiSession(path) as session:
    assert "labels" not in session.signatures["score"]["inputs"]
    out = session.run("score", {"images": levels})
  for kind, key in (("bpd", "bits_per_dim"), ("typicality", "typicality"),
                    ("complexity", "complexity")):
    np.testing.assert_allclose(out[key], model.score(levels, kind).numpy(),
                               rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(out["png_bits_per_dim"],
                             scores.png_bits_per_dim(levels).numpy())


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("score_run")
  run_dir = str(root / "run")
  export_dir = str(root / "saved_models")
  assert train_cli.main(["--config", "digits", "--output_dir", run_dir,
                         "--epochs", "1"] + TINY[:-2] +
                        ["--export_dir", export_dir]) == 0
  return run_dir, os.path.join(export_dir, "digits")


def _read_csv(path):
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  return rows[0], [(r[0], float(r[1])) for r in rows[1:]]


def test_training_run_stores_the_reference(digits_run):
  run_dir, export_dir = digits_run
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  model = checkpoints.load_model(os.path.join(run_dir, "checkpoints",
                                              "best.keras"))
  # best.keras stays as the checkpoint callback wrote it; the reference is
  # beside it and applied on loading (its digest matches the weights).
  assert os.path.exists(os.path.join(run_dir, "checkpoints",
                                     "best.score_reference.json"))
  assert not keras.saving.load_model(os.path.join(
      run_dir, "checkpoints", "best.keras")).score_statistics.is_set()
  model.check_score_statistics()  # current for the best weights
  stats = model.score_statistics.as_dict()
  # One training epoch (its last partial batch dropped, as in training).
  train_size = len(data.digits_arrays()["train"][0])
  assert metrics["train_images"] == stats["train_images"]
  assert train_size - 64 < stats["train_images"] <= train_size
  assert metrics["train_bpd_mean"] == pytest.approx(stats["train_bpd_mean"])
  assert "typicality" in export.read_description(
      os.path.join(export_dir, "1"))["score_outputs"]


def test_score_cli_on_a_run_and_on_its_export(digits_run, tmp_path, capsys):
  run_dir, export_dir = digits_run
  test_levels = data.digits_arrays()["test"][0].astype(np.uint8)
  model = checkpoints.load_model(os.path.join(run_dir, "checkpoints",
                                              "best.keras"))
  expected = model.score(test_levels, "typicality").numpy()
  for source in (run_dir, export_dir):
    out = str(tmp_path / f"s{len(source)}.csv")
    assert score_cli.main(["--model", source, "--data", "digits", "--kind",
                           "typicality", "--output", out, "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    header, rows = _read_csv(out)
    assert header == ["file", "score"]
    assert [name for name, _ in rows][:2] == ["digits:test:0",
                                              "digits:test:1"]
    np.testing.assert_allclose([v for _, v in rows], expected, rtol=1e-4,
                               atol=1e-4)
    assert report["count"] == len(test_levels)
    histogram = np.asarray(Image.open(report["histogram"]))
    assert histogram.shape[:2] == (400, 640) and histogram.std() > 10


def test_score_cli_on_a_folder(digits_run, tmp_path, capsys):
  run_dir, export_dir = digits_run
  folder = tmp_path / "images"
  (folder / "nested").mkdir(parents=True)
  levels = _levels(3, seed=11)
  paths = [str(folder / "a.png"), str(folder / "nested" / "b.PNG"),
           str(folder / "nested" / "c.png")]
  for image, path in zip(levels, paths):
    Image.fromarray(image[..., 0]).save(path, format="PNG")
  (folder / "broken.png").write_bytes(b"not a png")
  (folder / "notes.txt").write_text("ignored")
  out = str(tmp_path / "folder.csv")
  assert score_cli.main(["--model", export_dir, "--data", f"folder:{folder}",
                         "--kind", "complexity", "--output", out,
                         "--quiet"]) == 0
  err = capsys.readouterr().err
  assert "broken.png" in err and "skipping 1 of 4" in err
  _, rows = _read_csv(out)
  assert [name for name, _ in rows] == paths
  model = checkpoints.load_model(os.path.join(run_dir, "checkpoints",
                                              "best.keras"))
  np.testing.assert_allclose([v for _, v in rows],
                             model.score(levels, "complexity").numpy(),
                             rtol=1e-4, atol=1e-4)
  # Another size: refused by name unless --resize.
  Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "big.png")
  assert score_cli.main(["--model", run_dir, "--data", f"folder:{folder}",
                         "--output", out, "--quiet"]) == 2
  assert "big.png is 16x16 pixels; the model takes 8x8" in (
      capsys.readouterr().err)
  assert score_cli.main(["--model", run_dir, "--data", f"folder:{folder}",
                         "--output", out, "--quiet", "--resize"]) == 0
  _, rows = _read_csv(out)
  assert len(rows) == 4


def test_score_cli_errors(digits_run, tmp_path, capsys):
  run_dir, _ = digits_run
  bare = str(tmp_path / "bare.keras")
  model = tfp_realnvp.RealNVP(**SMALL)
  model.save(bare)
  assert score_cli.main(["--model", bare, "--data", "digits", "--kind",
                         "typicality", "--output",
                         str(tmp_path / "x.csv")]) == 2
  assert "compute_score_statistics" in capsys.readouterr().err
  assert score_cli.main(["--model", run_dir, "--data", "digits", "--output",
                         str(tmp_path / "x.txt")]) == 2
  assert ".csv" in capsys.readouterr().err
  assert score_cli.main(["--model", run_dir, "--data", "digits", "--output",
                         str(tmp_path / "x.csv"), "--batch_size", "0"]) == 2
  assert "--batch_size must be >= 1" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "x.csv")


def test_score_cli_finds_the_model_under_an_export_base(digits_run, tmp_path,
                                                        capsys):
  """`--model` given the run's `--export_dir` (which holds
  `<model name>/<version>/`) scores with its one model; a base of several
  models, or a directory that is none of the forms, is an error that says
  what to give."""
  import shutil  # pylint: disable=import-outside-toplevel
  _, model_dir = digits_run
  base = os.path.dirname(model_dir)
  out = str(tmp_path / "base.csv")
  assert score_cli.main(["--model", base, "--data", "digits", "--output",
                         out, "--quiet"]) == 0
  capsys.readouterr()
  two = tmp_path / "two_models"
  for name in ("digits", "other"):
    shutil.copytree(model_dir, two / name)
  assert score_cli.main(["--model", str(two), "--data", "digits", "--output",
                         out, "--quiet"]) == 2
  err = capsys.readouterr().err
  assert "export base holding the models digits, other" in err
  (tmp_path / "empty").mkdir()
  assert score_cli.main(["--model", str(tmp_path / "empty"), "--data",
                         "digits", "--output", out, "--quiet"]) == 2
  assert "none of the forms realnvp-score reads" in capsys.readouterr().err
