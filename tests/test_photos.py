"""Colour data without a download (issue 29): `bench.photos` patches from
disjoint regions of scikit-image's photos, their PNG folder read by
`--dataset folder:PATH` with the noise the peers' array pipelines use;
`cifar10_fast` at normflows Glow's parameter count and running unchanged on
that folder; `bench.quality --data photos` plumbing (time-keyed rows, the
bits/dim-against-minutes curve, its CSV and plot)."""

import glob
import json
import os

import numpy as np
import pytest

pytest.importorskip("skimage")

from bench import photos  # noqa: E402
from bench import quality  # noqa: E402
from bench import quality_contestants as contestants  # noqa: E402
from training import configs  # noqa: E402
from training import data  # noqa: E402
from training import train as train_cli  # noqa: E402

SMALL = {"train": 180, "validation": 18, "test": 45}


@pytest.fixture(scope="module")
def small():
  """Patch arrays with `SMALL` counts from the real photos."""
  return photos.patches(counts=SMALL)


def test_the_photos_that_load_offline_and_fixed_patches(small):
  names = [name for name, _ in photos.load_photos()]
  # All nine load from the wheel with scikit-image 0.26 (no pooch).
  assert names == [name for name, _, _ in photos.PHOTOS]
  assert small["photos"] == names
  for split, n in SMALL.items():
    assert small[split].shape == (n, 32, 32, 3)
    assert small[split].dtype == np.uint8
  again = photos.patches(counts=SMALL)
  for split in SMALL:
    np.testing.assert_array_equal(again[split], small[split])
  assert photos.digest(again) == photos.digest(small)
  other = photos.patches(seed=1, counts=SMALL)
  assert photos.digest(other) != photos.digest(small)
  assert photos.COUNTS == {"train": 20000, "validation": 1000, "test": 5000}


def test_training_and_test_patches_share_no_pixel():
  # A photo whose red channel says where a pixel is: 0 in the training
  # rows, 128 in the gap, 255 in the test rows.
  height, width = 300, 451  # chelsea's size: the smallest photo
  cut = photos.regions(height)
  assert cut["train"][1] + photos.GAP == cut["test"][0]
  assert cut["test"] == (height - 128, height)
  image = np.random.default_rng(0).integers(0, 256, (height, width, 3),
                                            dtype=np.uint8)
  image[:, :, 0] = 128
  image[slice(*cut["train"]), :, 0] = 0
  image[slice(*cut["test"]), :, 0] = 255
  arrays = photos.patches(counts={"train": 300, "validation": 30,
                                  "test": 100}, photos=[("marked", image)])
  for split in ("train", "validation"):
    assert np.all(arrays[split][..., 0] == 0), split
  assert np.all(arrays["test"][..., 0] == 255)
  for photo_height in (300, 400, 427, 500, 512, 872, 1411):
    rows = photos.regions(photo_height)
    assert rows["train"][1] + photos.GAP <= rows["test"][0]
    assert rows["test"][1] - rows["test"][0] >= 32 * max(photos.FACTORS)


def test_png_folder_is_the_arrays_with_the_same_noise(small, tmp_path):
  path = photos.write_folder(small, str(tmp_path))
  assert os.path.basename(path) == f"photos-{photos.digest(small)}"
  with open(os.path.join(path, photos.MANIFEST)) as f:
    assert json.load(f)["counts"] == SMALL
  stamp = os.path.getmtime(os.path.join(path, "test", "000000.png"))
  assert photos.write_folder(small, str(tmp_path)) == path  # cached
  assert os.path.getmtime(os.path.join(path, "test", "000000.png")) == stamp
  folder = data.load(f"folder:{path}", batch_size=16, image_size=(32, 32, 3))
  arrays = photos.datasets(small, batch_size=16)
  assert folder.train_size == arrays.train_size == SMALL["train"]
  for split in ("validation", "test"):
    a = np.concatenate([b.numpy() for b in getattr(folder, split)])
    b = np.concatenate([b.numpy() for b in getattr(arrays, split)])
    assert a.shape == (SMALL[split], 32, 32, 3)
    np.testing.assert_array_equal(a, b)  # pixels and evaluation noise
    np.testing.assert_array_equal(np.floor(a), small[split])


def test_cifar10_fast_matches_normflows_glow_parameters():
  pytest.importorskip("normflows")
  from bench import torch_peers  # pylint: disable=import-outside-toplevel
  config = configs.validate(configs.load("cifar10_fast"))
  assert config["dataset"] == "cifar10" and config["max_train_minutes"] == 10
  assert config["checkerboard"] == "squeezed"
  assert configs.time_keyed_schedule(config)
  ours = quality.config_parameters("cifar10_fast", shape=photos.SHAPE)
  _, theirs, hidden = torch_peers.build_flow("nf_glow", photos.SHAPE, ours)
  assert abs(ours - theirs) <= 0.10 * theirs, (ours, theirs, hidden)
  # mnist_fast stays step-keyed (the choice is measured later).
  assert not configs.time_keyed_schedule(configs.load("mnist_fast"))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
    "configs", "*.json"))), ids=os.path.basename)
def test_bench_config_variants_validate_at_equal_parameters(path):
  """Each `bench/configs/<base>_<variant>.json` (a candidate compared with
  `python -m bench.quality --configs <base>,<path>`) is a valid config whose
  model has the parameters of the shipped `<base>` within 10%."""
  bases = [name for name in configs.available()
           if os.path.basename(path).startswith(name + "_")]
  assert bases, f"{path} names no shipped config as <base>_<variant>.json"
  base = max(bases, key=len)
  configs.validate(configs.load(path))
  # Colour configs are counted on the photo patches' shape, others on MNIST.
  shape = (photos.SHAPE if configs.load(base)["dataset"] == "cifar10"
           else None)
  ours = quality.config_parameters(path, shape=shape)
  theirs = quality.config_parameters(base, shape=shape)
  assert abs(ours - theirs) <= 0.10 * theirs, (ours, theirs)


def test_cifar10_fast_runs_unchanged_on_a_photo_folder(small, tmp_path):
  path = photos.write_folder(small, str(tmp_path / "cache"))
  run_dir = str(tmp_path / "run")
  assert train_cli.main(
      ["--config", "cifar10_fast", "--dataset", f"folder:{path}",
       "--image_size", "32,32,3", "--output_dir", run_dir,
       "--max_train_minutes", "0.05", "--export", "false",
       "--verbose", "0"]) == 0
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics["dataset"] == f"folder:{path}"
  assert metrics["test_images"] == SMALL["test"]
  assert np.isfinite(metrics["test_bits_per_dim"])
  assert metrics["test_iw_subset"]["images"] == SMALL["test"]  # < 256
  assert metrics["lr_schedule"]["final_progress"] == 1.0


def test_quality_runs_time_keyed_rows_and_photo_shapes():
  p = quality._parser()  # pylint: disable=protected-access
  args = p.parse_args(["--configs", "mnist_fast,cifar10_fast",
                       "--time_keyed", "--impls", "nf_glow", "--data",
                       "photos"])
  runs = quality._runs(p, args)  # pylint: disable=protected-access
  labels = [run[1] for run in runs]
  assert labels[:2] == ["realnvp-train --config mnist_fast",
                        "realnvp-train --config cifar10_fast"]
  assert runs[2][2] == "mnist_fast" and runs[2][3] == quality.TIME_KEYED
  assert len(runs) == 4 and runs[3] == ("nf_glow", None, None)
  # Peers sized to the first config on 32x32x3.
  assert args.params == quality.config_parameters("mnist_fast",
                                                  shape=photos.SHAPE)
  time_keyed = dict(configs.load("mnist_fast"), **quality.TIME_KEYED)
  assert configs.validate(time_keyed)["lr_decay_rate"] == 0.05
  assert contestants.config_data("mnist") == {}


def test_curve_marks_copies_and_scores_them():
  curve = contestants.Curve(minutes=1.0, images=3)
  curve.start(100.0)
  taken = []
  for now in (130.0, 161.0, 170.0, 290.0):
    curve.maybe(now, int(now), lambda n=now: taken.append(n) or n)
  curve.final(300.0, 300, lambda: "last")
  assert [s[:2] for s in curve.snapshots] == [(61.0, 161), (190.0, 290),
                                              (200.0, 300)]
  restored = []
  points = curve.score(restored.append,
                       lambda subset: (float(len(restored)), 3),
                       __import__("tensorflow").data.Dataset.range(10)
                       .batch(2))
  assert restored == [161.0, 290.0, "last"]
  assert [p["bits_per_dim"] for p in points] == [1.0, 2.0, 3.0]
  assert contestants.Curve().every == 0  # off by default
  off = contestants.Curve()
  off.start(0.0)
  off.maybe(1e6, 1, lambda: 1 / 0)
  off.final(1e6, 1, lambda: 1 / 0)
  assert not off.snapshots


def test_peer_on_photos_with_a_curve_then_csv_and_plot(monkeypatch,
                                                       tmp_path):
  pytest.importorskip("normflows")
  monkeypatch.setattr(photos, "COUNTS", dict(SMALL))
  row = contestants.run_one("nf_glow", minutes=0.02, data_dir=None,
                            target=60000, data="photos",
                            photos_root=str(tmp_path),
                            curve=contestants.Curve(0.005, images=20))
  assert row["data"] == "photos" and row["test_images"] == SMALL["test"]
  assert row["steps"] >= 1 and np.isfinite(row["test_bits_per_dim"])
  curve = row["curve"]
  assert curve and all(p["images"] == 20 for p in curve)
  assert [p["minutes"] for p in curve] == sorted(p["minutes"] for p in curve)
  rows = [dict(row, label="normflows Glow"),
          {"label": "ours", "curve": [
              {"minutes": 0.5, "steps": 10, "bits_per_dim": 6.0,
               "images": 20},
              {"minutes": 1.0, "steps": 20, "bits_per_dim": 5.0,
               "images": 20}]}]
  quality.write_curve_csv(rows, str(tmp_path / "curve.csv"))
  lines = (tmp_path / "curve.csv").read_text().splitlines()
  assert lines[0] == "contestant,minutes,steps,bits_per_dim,images"
  assert len(lines) == 1 + len(curve) + 2
  quality.plot_curves(rows, str(tmp_path / "curve.png"))
  from PIL import Image  # pylint: disable=import-outside-toplevel
  assert Image.open(tmp_path / "curve.png").size == (900, 560)


def test_config_contestant_curve_loads_its_copies_into_the_config_model(
    tmp_path):
  tiny = {"num_scales": 1, "num_res_blocks": 0, "num_filters": 4,
          "epochs": 50, "steps_per_epoch": 5, "validation_steps": 1,
          "num_samples": 4, "interpolation_steps": 2}
  row = quality.run_config("digits", tiny, minutes=0.1, data_dir=None,
                           keep_dir=str(tmp_path / "kept"),
                           curve=contestants.Curve(0.02, images=100))
  curve = row["curve"]
  assert len(curve) >= 2 and all(p["images"] == 100 for p in curve)
  assert curve[-1]["steps"] == row["steps"]
  assert all(np.isfinite(p["bits_per_dim"]) for p in curve)
  assert row["process_seconds"] >= row["phase_seconds"]["total"]
