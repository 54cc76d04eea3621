"""tf.data pipelines: shapes, dtypes, value range, flips, untouched test
splits, the tfds datasets (mocked) and the offline MNIST path."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import shared_path
from training import data


def test_digits_pipelines_shapes_range_and_labels():
  ds = data.load("digits", batch_size=32, seed=0)
  assert ds.image_shape == (8, 8, 1) and ds.num_classes == 10
  for split in (ds.train, ds.validation, ds.test):
    batch = next(iter(split))
    assert batch.dtype == tf.float32
    assert batch.shape[1:] == (8, 8, 1)
    values = batch.numpy()
    assert values.min() >= 0.0 and values.max() < 256.0
    # Dequantized: not integers.
    assert np.mean(values != np.floor(values)) > 0.9
  cond = data.load("digits", batch_size=16, conditional=True)
  (images, labels), = next(iter(cond.train))
  assert images.shape == (16, 8, 8, 1) and labels.dtype == tf.int32
  assert labels.numpy().min() >= 0 and labels.numpy().max() < 10


def test_digits_values_map_0_16_to_pixel_levels():
  arrays = data.digits_arrays()
  pixels = np.concatenate([arrays[s][0] for s in arrays])
  assert pixels.dtype == np.uint8 and len(pixels) == 1797
  assert set(np.unique(pixels)) <= {round(v * 255 / 16) for v in range(17)}
  assert pixels.max() == 255 and pixels.min() == 0
  assert [len(arrays[s][0]) for s in ("train", "validation", "test")] == [
      1258, 180, 359]


def test_test_split_is_untouched_and_repeatable():
  ds = data.load("digits", batch_size=50, seed=3)
  first = np.concatenate([b.numpy() for b in ds.test])
  second = np.concatenate([b.numpy() for b in ds.test])
  np.testing.assert_array_equal(first, second)  # same noise every pass
  pixels, _ = data.digits_arrays()["test"]
  # Same order as the source, no flips, noise within one level.
  np.testing.assert_array_equal(np.floor(first).astype(np.uint8), pixels)
  train_a = np.concatenate([b.numpy() for b in ds.train])
  train_b = np.concatenate([b.numpy() for b in ds.train])
  assert not np.array_equal(train_a, train_b)  # reshuffled, fresh noise


def _asymmetric(n):
  image = np.zeros((n, 4, 4, 1), np.uint8)
  image[:, :, 2:] = 255  # right half white
  return tf.data.Dataset.from_tensor_slices((image, np.zeros(n, np.int64)))


@pytest.mark.parametrize("training,flip,expect_flips", [
    (True, True, True), (True, False, False), (False, True, False)])
def test_flips_only_where_configured(training, flip, expect_flips):
  ds = data._finish(_asymmetric(64), training=training, batch_size=64, seed=0,
                    flip=flip and training, conditional=False, cache=False,
                    shuffle_buffer=64, deterministic=True)
  images = next(iter(ds)).numpy()
  flipped = images[:, 0, 0, 0] > 128
  assert flipped.any() == expect_flips
  if expect_flips:
    assert 0.2 < flipped.mean() < 0.8


# Source image shapes as tfds stores them (before any preprocessing).
_SOURCE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1),
                  "cifar10": (32, 32, 3), "celeb_a": (218, 178, 3),
                  "downsampled_imagenet/32x32": (32, 32, 3),
                  "downsampled_imagenet/64x64": (64, 64, 3),
                  "lsun/bedroom": (256, 342, 3), "lsun/tower": (256, 341, 3),
                  "lsun/church_outdoor": (342, 256, 3)}


@pytest.mark.parametrize("name,flipped", [
    # Paper §4.1: random horizontal flips for CIFAR-10, CelebA and LSUN
    # only; never for digits or downsampled ImageNet, never at evaluation.
    ("mnist", False), ("fashion_mnist", False), ("cifar10", True),
    ("celeb_a", True), ("downsampled_imagenet/32x32", False),
    ("downsampled_imagenet/64x64", False), ("lsun/bedroom", True),
    ("lsun/tower", True), ("lsun/church_outdoor", True)])
def test_paper_preprocessing_flips_what_it_should(name, flipped, tmp_path):
  """Runs `data.load(name)` on images whose brightness rises from left to
  right (any crop or resize keeps that) and counts the ones that come out
  of each pipeline mirrored."""
  h, w, c = _SOURCE_SHAPES[name]
  ramp = np.linspace(0, 255, w).round().astype(np.uint8)
  image = np.broadcast_to(ramp[None, :, None], (h, w, c)).copy()
  n = 64

  def as_dataset(self, *args, **kwargs):
    del args, kwargs
    example = {"image": image}
    if "label" in self.info.features:
      example["label"] = np.int64(3)
    return tf.data.Dataset.from_tensors(example).repeat(n)

  with tfds.testing.mock_data(as_dataset_fn=as_dataset,
                              data_dir=str(tmp_path)):
    ds = data.load(name, batch_size=n, data_dir=str(tmp_path),
                   download=False, seed=1)
    fractions = []
    for split in (ds.train, ds.validation, ds.test):
      images = next(iter(split)).numpy()
      assert images.shape[0] == n
      left, right = images[:, :, 0].mean(axis=(1, 2)), images[:, :, -1].mean(
          axis=(1, 2))
      assert np.all(np.abs(left - right) > 50)  # a ramp, one way or the other
      fractions.append(float(np.mean(left > right)))
  train, validation, test = fractions
  assert validation == 0.0 and test == 0.0
  if flipped:
    assert 0.2 < train < 0.8, train
  else:
    assert train == 0.0


def test_celeb_a_and_lsun_crops():
  rng = np.random.default_rng(0)
  face = tf.constant(rng.integers(0, 256, (218, 178, 3)), tf.uint8)
  out = data.TFDS_SPECS["celeb_a"].preprocess(face, False, 0)
  assert out.shape == (64, 64, 3) and out.dtype == tf.uint8
  # A constant central region survives the crop + area resize exactly.
  const = np.zeros((218, 178, 3), np.uint8)
  const[35:183, 15:163] = 200
  out = data.TFDS_SPECS["celeb_a"].preprocess(tf.constant(const), False, 0)
  assert np.all(out.numpy() == 200)
  room = tf.constant(rng.integers(0, 256, (300, 400, 3)), tf.uint8)
  prep = data.TFDS_SPECS["lsun/bedroom"].preprocess
  assert prep(room, True, 0).shape == (64, 64, 3)
  centre = prep(room, False, 0).numpy()
  np.testing.assert_array_equal(centre, prep(room, False, 1).numpy())


@pytest.mark.parametrize("name,shape", [
    ("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)),
    ("cifar10", (32, 32, 3)), ("celeb_a", (64, 64, 3)),
    ("downsampled_imagenet/32x32", (32, 32, 3)),
    ("downsampled_imagenet/64x64", (64, 64, 3)),
    ("lsun/bedroom", (64, 64, 3)), ("lsun/tower", (64, 64, 3)),
    ("lsun/church_outdoor", (64, 64, 3))])
def test_tfds_pipelines_on_mocked_data(name, shape, tmp_path):
  with tfds.testing.mock_data(num_examples=6, data_dir=str(tmp_path)):
    ds = data.load(name, batch_size=3, data_dir=str(tmp_path), download=False)
    assert ds.image_shape == shape
    for split in (ds.train, ds.validation, ds.test):
      batch = next(iter(split)).numpy()
      assert batch.shape == (3,) + shape and batch.dtype == np.float32
      assert batch.min() >= 0 and batch.max() < 256


def test_image_folder(tmp_path):
  from PIL import Image
  rng = np.random.default_rng(0)
  for cls in ("cats", "dogs"):
    os.makedirs(tmp_path / cls)
    for i in range(10):
      Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
          tmp_path / cls / f"{i}.png")
  ds = data.load(f"folder:{tmp_path}", batch_size=4, image_size=(16, 16, 3),
                 conditional=True)
  assert ds.num_classes == 2 and ds.train_size == 16
  (images, labels), = next(iter(ds.train))
  assert images.shape == (4, 16, 16, 3)
  assert images.numpy().min() >= 0 and images.numpy().max() < 256
  n_test = sum(int(b[0][0].shape[0]) for b in ds.test)
  n_val = sum(int(b[0][0].shape[0]) for b in ds.validation)
  assert (n_test, n_val) == (2, 2)
  with pytest.raises(ValueError, match="image_size"):
    data.load(f"folder:{tmp_path}")


def _image_folder(root, per_class=16, classes=("cats", "dogs")):
  from PIL import Image
  rng = np.random.default_rng(0)
  for cls in classes:
    os.makedirs(root / cls)
    for i in range(per_class):
      Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
          root / cls / f"{i:02d}.png")


def test_corrupt_images_in_a_folder_are_skipped_and_named(tmp_path, capsys):
  _image_folder(tmp_path)
  truncated = tmp_path / "cats" / "03.png"
  truncated.write_bytes(truncated.read_bytes()[:100])
  not_an_image = tmp_path / "dogs" / "05.png"
  not_an_image.write_bytes(b"this is not a PNG")
  ds = data.load(f"folder:{tmp_path}", batch_size=4, image_size=(16, 16, 3),
                 conditional=True)
  err = capsys.readouterr().err
  assert "skipping 2 of 32 files" in err
  assert str(truncated) in err and str(not_an_image) in err
  # 30 readable files: 3 test (every 10th), 3 validation, 24 training.
  assert ds.train_size == 24
  counts = [sum(int(b[0][0].shape[0]) for b in split)  # no decode error
            for split in (ds.train, ds.validation, ds.test)]
  assert counts == [24, 3, 3]
  assert not data.unreadable_images([str(tmp_path / "cats" / "00.png")], 3)


def test_a_split_smaller_than_a_batch_trains_on_one_partial_batch(tmp_path,
                                                                  capsys):
  # 32 images: 4 test, 4 validation, 24 training, at batch size 64.
  _image_folder(tmp_path)
  ds = data.load(f"folder:{tmp_path}", batch_size=64, image_size=(16, 16, 3))
  assert [int(b.shape[0]) for b in ds.train] == [24]
  assert "larger than the 24 training images" in capsys.readouterr().err
  digits = data.load("digits", batch_size=5000)
  assert [int(b.shape[0]) for b in digits.train] == [1258]
  # A split of at least one batch still drops its remainder (static shape).
  digits = data.load("digits", batch_size=500)
  assert [int(b.shape[0]) for b in digits.train] == [500, 500]


def test_unknown_dataset_and_unlabelled_conditional():
  with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
    data.load("imagenet")
  with pytest.raises(ValueError, match="no class labels"):
    data.load("celeb_a", conditional=True, download=False)


def test_offline_mnist_from_raw_files(tmp_path):
  raw = shared_path("data", "raw", "mnist")
  if not os.path.isdir(raw):
    pytest.skip(f"raw MNIST files not found at {raw} (../shared is absent in "
                f"a fresh clone)")
  ds = data.load("mnist", batch_size=8, data_dir=str(tmp_path / "tfds"),
                 manual_dir=raw)
  assert ds.train_size == 54000
  batch = next(iter(ds.test)).numpy()
  assert batch.shape == (8, 28, 28, 1)
  assert batch.min() >= 0 and batch.max() < 256
  assert os.path.isdir(tmp_path / "tfds" / "mnist" / "3.0.1")
  assert os.path.isdir(tmp_path / "tfds" / "extracted" / "mnist")
