"""The checks of single config values (`training.configs.validate` runs
them): each returns an error text, or None when the value is valid. Moved
from `training/configs/__init__.py`, which imports them back.
"""

import math

import numpy as np


def _is_int(value):
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value):
  return (isinstance(value, (int, float, np.integer, np.floating)) and
          not isinstance(value, bool) and math.isfinite(value))


def _integer(value, low, high=None):
  """An error text, or None when `value` is an integer in [low, high]."""
  if _is_int(value) and value >= low and (high is None or value <= high):
    return None
  bound = f">= {low}" if high is None else f"in [{low}, {high}]"
  return f"must be an integer {bound}, got {value!r}"


def _number(value, low=None, high=None, low_open=False, high_open=False):
  """An error text, or None when `value` is a finite number in range."""
  ok = _is_number(value)
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  if ok:
    return None
  if low is not None and high is not None:
    bound = (f" in {'(' if low_open else '['}{low:g}, {high:g}"
             f"{')' if high_open else ']'}")
  elif low is not None:
    bound = f" {'>' if low_open else '>='} {low:g}"
  else:
    bound = ""
  return f"must be a finite number{bound}, got {value!r}"


def _boolean(value):
  return None if isinstance(value, bool) else (
      f"must be true or false, got {value!r}")


def _one_of(value, choices):
  if isinstance(value, str) and value in choices:
    return None
  return f"must be one of {', '.join(choices)}, got {value!r}"


def _check_dataset(value):
  from training import data  # pylint: disable=import-outside-toplevel
  if not isinstance(value, str):
    return f"must be a dataset name, got {value!r}"
  if value.startswith("folder:"):
    return None if value[len("folder:"):] else (
        "folder: needs a path (folder:<path>)")
  if value in data.TFDS_SPECS or value == "digits":
    return None
  return f"must be one of {', '.join(data.DATASETS)}, got {value!r}"


def _check_image_size(value, dataset):
  if value is None:
    if isinstance(dataset, str) and dataset.startswith("folder:"):
      return "is required for a folder: dataset (H,W,C, e.g. 64,64,3)"
    return None
  if (not isinstance(value, (list, tuple)) or len(value) != 3 or
      not all(_is_int(d) and d >= 1 for d in value)):
    return f"must be three positive integers H,W,C, got {value!r}"
  if value[2] not in (1, 3):
    return f"must have 1 or 3 channels (H,W,C), got {value!r}"
  return None


def _check_num_filters(value, num_scales):
  if _is_int(value):
    return _integer(value, 1)
  if (isinstance(value, (list, tuple)) and value and
      all(_is_int(w) and w >= 1 for w in value)):
    if _is_int(num_scales) and len(value) != num_scales:
      return (f"has {len(value)} widths but num_scales={num_scales}; give "
              f"one per scale or a single integer")
    return None
  return (f"must be an integer >= 1 or a list of them (one per scale), got "
          f"{value!r}")


def _check_ints(value):
  if (isinstance(value, (list, tuple)) and value and
      all(_is_int(u) and u >= 1 for u in value)):
    return None
  return (f"must be a non-empty list of integers >= 1 (e.g. 512,512), got "
          f"{value!r}")


def _check_temperatures(value):
  if (isinstance(value, (list, tuple)) and value and
      all(_number(t, 0, low_open=True) is None for t in value)):
    return None
  return (f"must be a non-empty list of finite numbers > 0 (e.g. 1.0,0.7), "
          f"got {value!r}")


def _check_jit_compile(value):
  if isinstance(value, bool) or (
      isinstance(value, str) and value.lower() in ("auto", "true", "false")):
    return None
  return f"must be auto, true or false, got {value!r}"


def _optional_count(value):
  if value is None:
    return None
  return _integer(value, 0)
