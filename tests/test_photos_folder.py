"""`folder:<path>` with given splits (issue 29): a folder holding `train/`
and `test/` (and optionally `validation/`) uses them as the splits, in file
order; class subfolders must agree between splits."""

import os

import numpy as np
import pytest
from PIL import Image

from training import data
from training import folder


def _write(directory, images):
  os.makedirs(directory, exist_ok=True)
  for i, image in enumerate(images):
    Image.fromarray(image).save(os.path.join(directory, f"{i:06d}.png"))


def _images(rng, n, value=None):
  images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
  if value is not None:
    images[..., 0] = value  # the split, readable from the red channel
  return images


def _levels(split_pipeline):
  """All images of an evaluation split, back to integer levels."""
  return np.floor(np.concatenate([b.numpy() for b in split_pipeline]))


def test_train_test_and_validation_folders_are_the_splits(tmp_path):
  rng = np.random.default_rng(0)
  splits = {"train": _images(rng, 30, 10), "validation": _images(rng, 7, 20),
            "test": _images(rng, 12, 30)}
  for split, images in splits.items():
    _write(tmp_path / split, images)
  assert set(folder.split_layout(str(tmp_path))) == set(splits)
  ds = data.load(f"folder:{tmp_path}", batch_size=4, image_size=(8, 8, 3))
  assert ds.train_size == 30 and ds.num_classes is None
  # Evaluation splits in file order, exactly the written pixels.
  np.testing.assert_array_equal(_levels(ds.test), splits["test"])
  np.testing.assert_array_equal(_levels(ds.validation), splits["validation"])
  train = np.floor(np.concatenate([b.numpy() for b in ds.train]))
  assert train.shape == (28, 8, 8, 3)  # drops the partial batch
  assert set(np.unique(train[..., 0])) == {10.0}


def test_without_validation_every_tenth_training_file_is_validation(tmp_path):
  rng = np.random.default_rng(1)
  train = _images(rng, 25, 10)
  _write(tmp_path / "train", train)
  _write(tmp_path / "test", _images(rng, 5, 30))
  ds = data.load(f"folder:{tmp_path}", batch_size=64, image_size=(8, 8, 3))
  assert ds.train_size == 22
  np.testing.assert_array_equal(_levels(ds.validation), train[[0, 10, 20]])
  assert len(_levels(ds.test)) == 5


def test_class_subfolders_in_each_split(tmp_path):
  rng = np.random.default_rng(2)
  for split in ("train", "test"):
    for cls in ("cats", "dogs"):
      _write(tmp_path / split / cls, _images(rng, 10))
  ds = data.load(f"folder:{tmp_path}", batch_size=4, image_size=(8, 8, 3),
                 conditional=True)
  assert ds.num_classes == 2 and ds.train_size == 18
  (images, labels), = next(iter(ds.test))
  assert images.shape == (4, 8, 8, 3) and set(labels.numpy()) == {0}
  _write(tmp_path / "test" / "birds", _images(rng, 2))
  with pytest.raises(ValueError, match="class subfolders differ"):
    data.load(f"folder:{tmp_path}", batch_size=4, image_size=(8, 8, 3))


def test_other_subfolders_are_classes_as_before(tmp_path):
  rng = np.random.default_rng(3)
  for cls in ("train", "test", "extra"):
    _write(tmp_path / cls, _images(rng, 10))
  assert folder.split_layout(str(tmp_path)) is None
  ds = data.load(f"folder:{tmp_path}", batch_size=4, image_size=(8, 8, 3))
  assert ds.num_classes == 3 and ds.train_size == 24
