"""Training configurations (paper §4.1) and their command-line overrides.

Each `<name>.json` next to this file sets some of the keys of `FIELDS`; the
rest take the defaults below. Every key is also a `realnvp-train` flag.
"""

import json
import os
import re

# The checks of single values: training/configs/checks.py.
from training.configs.checks import _boolean, _integer, _is_int, _is_number
from training.configs.checks import _number, _one_of, _optional_count
from training.configs.checks import _check_dataset, _check_image_size
from training.configs.checks import _check_ints, _check_jit_compile
from training.configs.checks import _check_num_filters
from training.configs.checks import _check_temperatures

HERE = os.path.dirname(os.path.abspath(__file__))

# key: (default, type, help)
FIELDS = {
    "dataset": ("digits", str, "dataset name (see training/data.py) or "
                "folder:<path>"),
    "image_size": (None, "shape", "H,W,C for folder: datasets"),
    "num_scales": (2, int, "multi-scale levels (a squeeze + factor-out each "
                   "but the last)"),
    "num_res_blocks": (2, int, "residual blocks per s/t network"),
    "num_filters": (32, "filters", "feature maps at the finest scale (doubled "
                    "per scale), or one width per scale: 16,32,56"),
    "coupling": ("affine", str, "affine (Real NVP), additive (NICE) or spline "
                 "(Neural Spline Flows: a rational-quadratic spline per "
                 "element)"),
    "spline_bins": (8, int, "bins K of every spline (coupling=spline)"),
    "spline_bound": (3.0, float, "each spline acts on [-B, B], the identity "
                     "outside (coupling=spline)"),
    "checkerboard": ("masked", str, "how checkerboard couplings are computed: "
                     "masked (full resolution on b*x) or squeezed (the same "
                     "partition on the 2x2-squeezed tensor, s/t networks at "
                     "half resolution)"),
    "dequantizer": ("none", str, "none (the input pipeline adds U[0,1) noise), "
                    "uniform (the pipeline feeds integer levels and the "
                    "model dequantizes them) or variational (Flow++: a "
                    "learned q(u|x); bits/dim is then the variational "
                    "bound, reported as variational_bits_per_dim)"),
    "prior": ("gaussian", str, "base distribution: gaussian (N(0, I), or "
              "per-class Gaussians when conditional), split (Glow's learned "
              "split prior) or made (an autoregressive MADE prior on the "
              "coarsest latent)"),
    "made_hidden_units": ([512, 512], "ints", "hidden widths of the MADE of "
                          "prior=made, e.g. 512,512"),
    "actnorm": (False, bool, "Glow's actnorm before every coupling "
                "(data-dependent initialisation on the first batch)"),
    "permutation": ("none", str, "channel permutation before every coupling: "
                    "none (Real NVP), reverse or conv1x1 (Glow's invertible "
                    "1x1 convolution, LU form)"),
    "use_batch_norm": (True, bool, "batch norm in s/t nets and as bijectors"),
    "conditional": (False, bool, "class-conditional model (labelled datasets)"),
    "alpha": (0.05, float, "logit preprocessing alpha"),
    "bn_momentum": (0.9, float, "batch-norm moving-average decay"),
    "log_scale_init": (1.0, float, "initial bound of |s| (scale*tanh)"),
    "l2_reg": (5e-5, float, "L2 penalty on s/t network weights (paper 5e-5)"),
    "learning_rate": (1e-3, float, "peak learning rate (paper: Adam 1e-3)"),
    "optimizer": ("adam", str, "adam (the paper's) or adamax"),
    "warmup_steps": (0, int, "linear learning-rate warmup steps (0 = off)"),
    "warmup_fraction": (0.0, float, "linear learning-rate warmup over this "
                        "fraction of the max_train_minutes budget, keyed "
                        "to elapsed time, in [0, 1) (0 = off; not with "
                        "warmup_steps)"),
    "lr_decay": ("none", str, "learning-rate decay after warmup: none, "
                 "cosine (to lr_decay_rate x learning_rate at decay_steps), "
                 "exponential (x lr_decay_rate every decay_steps) or "
                 "cosine_to_budget (to lr_decay_rate x learning_rate when "
                 "the max_train_minutes budget runs out, keyed to elapsed "
                 "time whatever the step rate)"),
    "decay_steps": (0, int, "steps of the lr_decay (> 0 when lr_decay is "
                    "not none)"),
    "lr_decay_rate": (0.0, float, "cosine: final fraction of the learning "
                      "rate; exponential: factor per decay_steps (in (0, 1])"),
    "clipnorm": (100.0, float, "global gradient-norm clip (0 = off)"),
    "ema_decay": (0.0, float, "Polyak averaging: exponential moving average "
                  "of the weights with this decay (e.g. 0.999), used by "
                  "evaluation, samples and the export (0 = off)"),
    "bn_lag": (0.0, float, "the paper's running-average batch norm (appendix "
               "E): weight of the running average in the training-mode "
               "statistics of the flow's batch-norm steps (0 = batch "
               "statistics only, e.g. 0.95)"),
    "batch_size": (64, int, "global batch size (paper 64)"),
    "epochs": (30, int, "training epochs (may change when resuming: "
               "extends or shortens the run)"),
    "steps_per_epoch": (0, int, "steps per epoch (0 = the whole train split)"),
    "validation_steps": (0, int, "validation batches per epoch (0 = all)"),
    "test_steps": (0, int, "test batches for the final bits/dim (0 = all)"),
    "test_iw_samples": (0, int, "also report the importance-weighted test "
                        "bits/dim with this many dequantization draws per "
                        "image (0 = off)"),
    "test_iw_images": (None, int, "test images the importance-weighted "
                       "figure is computed on: a seeded random subset of "
                       "this many (0 = the whole test split; unset = "
                       "500 with max_train_minutes, else all)"),
    "score_reference_images": (None, int, "training images of the "
                               "typicality reference computed after "
                               "training: the first this many of the "
                               "shuffled training pipeline (0 = a whole "
                               "epoch; unset = 2,048 with max_train_minutes, "
                               "else a whole epoch)"),
    "max_train_minutes": (0.0, float, "stop training after the step that "
                          "reaches this many minutes of fit (checked every "
                          "step; 0 = off)"),
    "shuffle_buffer": (10000, int, "training shuffle buffer"),
    "seed": (0, int, "random seed (weights, shuffling, dequantization)"),
    "deterministic": (False, bool, "deterministic tf.data order and ops"),
    "num_samples": (64, int, "images per sample grid"),
    "temperatures": ([1.0, 0.7], "floats", "sampling temperatures for "
                     "samples.png"),
    "interpolation_steps": (8, int, "grid side of interpolation.png"),
    "mixed_precision": ("none", str, "none, mixed_float16 (GPU) or "
                        "mixed_bfloat16 (TPU, recent CPUs/GPUs): s/t nets in "
                        "half precision, flow and loss in float32"),
    "jit_compile": ("auto", str, "XLA for the train step: auto (Keras: on "
                    "for GPU/TPU, off on CPU where it measured slower), "
                    "true, false"),
    "synchronized_batch_norm": (True, bool, "batch-norm statistics over the "
                                "global batch under a multi-replica strategy"),
    "export": (True, bool, "export the best checkpoint for TF Serving at "
               "the end (saved_models/<config>/<version>/)"),
    "export_dir": ("saved_models", str, "TF Serving model base directory"),
}


OPTIMIZERS = ("adam", "adamax")
PRIORS = ("gaussian", "split", "made")
LR_DECAYS = ("none", "cosine", "exponential", "cosine_to_budget")
# The evaluation subsets when max_train_minutes is set and the config
# leaves test_iw_images / score_reference_images unset (None). Sized for
# `realnvp-train --max_train_minutes M` to end within M + 2 minutes on the
# 2-core AVX2 machine of issue 29 (an estimate from its rates, not yet
# measured: ~330 MNIST images/s through the flow, so K = 16 draws of 500
# test images ~25 s, 2,048 training images ~6 s; the single-draw figure on
# all 10,000 test images ~30 s and the export come on top).
BUDGET_TEST_IW_IMAGES = 500
BUDGET_SCORE_REFERENCE_IMAGES = 2048

# Keys that may differ when an unfinished run is resumed: they change how
# long training goes on or what is reported at the end, not what is trained.
# Every other key must equal the value the run was started with.
MAY_CHANGE_ON_RESUME = ("epochs", "max_train_minutes", "test_steps",
                        "test_iw_samples", "test_iw_images",
                        "score_reference_images",
                        "num_samples", "temperatures", "interpolation_steps",
                        "export", "export_dir", "jit_compile")

# TF Serving model names (the config name is the exported model's name).
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_MAX_SEED = 2 ** 32 - 1  # numpy's seed range (keras.utils.set_random_seed)


def available():
  return sorted(f[:-5] for f in os.listdir(HERE) if f.endswith(".json"))


def load(name_or_path):
  """Returns the full config dict for a config name or a JSON file path."""
  if os.path.isfile(name_or_path):
    path = name_or_path
  else:
    path = os.path.join(HERE, f"{name_or_path}.json")
    if not os.path.isfile(path):
      raise ValueError(f"unknown config {name_or_path!r}; available: "
                       f"{', '.join(available())} (or a path to a .json file)")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    overrides = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"config file {path} is not valid JSON: {e.msg}: line "
                     f"{e.lineno} column {e.colno}") from None
  if not isinstance(overrides, dict):
    raise ValueError(f"config file {path} must hold a JSON object "
                     f"{{\"key\": value, ...}}, got a "
                     f"{type(overrides).__name__}")
  unknown = sorted(set(overrides) - set(FIELDS) - {"description"})
  if unknown:
    raise ValueError(f"config {path} has unknown keys {unknown}")
  config = {key: spec[0] for key, spec in FIELDS.items()}
  config.update({k: v for k, v in overrides.items() if k != "description"})
  config["config_name"] = os.path.splitext(os.path.basename(path))[0]
  return config


# --- validation -------------------------------------------------------------


def time_keyed_schedule(config):
  """True when the config's learning rate is keyed to the time budget
  (`warmup_fraction` > 0 or `lr_decay` cosine_to_budget)."""
  return (config.get("lr_decay") == "cosine_to_budget" or
          (_is_number(config.get("warmup_fraction", 0.0)) and
           config.get("warmup_fraction", 0.0) > 0))


def evaluation_subset(config, key):
  """The subset size `key` (test_iw_images or score_reference_images)
  resolves to: an integer > 0, or 0 for the whole split."""
  value = config.get(key)
  if value is not None:
    return value
  if not config.get("max_train_minutes"):
    return 0
  return {"test_iw_images": BUDGET_TEST_IW_IMAGES,
          "score_reference_images": BUDGET_SCORE_REFERENCE_IMAGES}[key]


def _check_schedule(c):
  """Errors of the schedule keys that depend on each other, by key."""
  out = {"warmup_fraction": _number(c["warmup_fraction"], 0, 1,
                                    high_open=True)}
  if out["warmup_fraction"] is not None or not time_keyed_schedule(c):
    return out
  keyed = ("warmup_fraction" if c["warmup_fraction"] > 0 else "lr_decay")
  if not (_is_number(c["max_train_minutes"]) and c["max_train_minutes"] > 0):
    out[keyed] = (f"{'> 0' if keyed == 'warmup_fraction' else 'cosine_to_budget'}"
                  f" is keyed to the time budget and needs max_train_minutes "
                  f"> 0, got {c['max_train_minutes']!r}")
  elif c["warmup_fraction"] > 0 and _is_int(c["warmup_steps"]) and (
      c["warmup_steps"] > 0):
    out["warmup_fraction"] = (f"{c['warmup_fraction']!r} and warmup_steps "
                              f"{c['warmup_steps']!r} are two warmups; set "
                              f"one of them to 0")
  elif c["warmup_fraction"] > 0 and c["lr_decay"] in ("cosine",
                                                      "exponential"):
    out["warmup_fraction"] = (f"{c['warmup_fraction']!r} (time-keyed) cannot "
                              f"precede the step-keyed lr_decay "
                              f"{c['lr_decay']!r}; use lr_decay "
                              f"cosine_to_budget or none, or warmup_steps")
  if c["lr_decay"] == "cosine_to_budget" and c["decay_steps"] != 0:
    out["decay_steps"] = (f"must be 0 with lr_decay cosine_to_budget (the "
                          f"decay ends with the budget), got "
                          f"{c['decay_steps']!r}")
  return out


def validate(config):
  """Checks every key's type and range; returns `config`.

  Raises `ValueError` listing every invalid key (with its flag) before
  anything is loaded or trained.
  """
  from tfp_realnvp import options as options_lib  # pylint: disable=import-outside-toplevel
  from tfp_realnvp import dequantization  # pylint: disable=import-outside-toplevel
  from tfp_realnvp.bijectors import masks  # pylint: disable=import-outside-toplevel
  c = config
  missing = sorted(set(FIELDS) - set(c))
  if missing:
    raise ValueError(f"config is missing keys {missing}")
  checks = {
      "dataset": _check_dataset(c["dataset"]),
      "image_size": _check_image_size(c["image_size"], c["dataset"]),
      "num_scales": _integer(c["num_scales"], 1),
      "num_res_blocks": _integer(c["num_res_blocks"], 0),
      "num_filters": _check_num_filters(c["num_filters"], c["num_scales"]),
      "coupling": _one_of(c["coupling"], options_lib.COUPLING_TYPES),
      "spline_bins": _integer(c["spline_bins"], 2),
      "spline_bound": _number(c["spline_bound"], 0, low_open=True),
      "checkerboard": _one_of(c["checkerboard"], tuple(masks.CHECKERBOARDS)),
      "dequantizer": _one_of(c["dequantizer"], ("none",) + tuple(
          dequantization.DEQUANTIZERS)),
      "prior": _one_of(c["prior"], PRIORS),
      "made_hidden_units": _check_ints(c["made_hidden_units"]),
      "permutation": _one_of(c["permutation"], options_lib.PERMUTATIONS),
      "alpha": _number(c["alpha"], 0, 0.5, low_open=True, high_open=True),
      "bn_momentum": _number(c["bn_momentum"], 0, 1, high_open=True),
      "log_scale_init": _number(c["log_scale_init"], 0, low_open=True),
      "l2_reg": _number(c["l2_reg"], 0),
      "learning_rate": _number(c["learning_rate"], 0, low_open=True),
      "optimizer": _one_of(c["optimizer"], OPTIMIZERS),
      "warmup_steps": _integer(c["warmup_steps"], 0),
      "lr_decay": _one_of(c["lr_decay"], LR_DECAYS),
      "decay_steps": (_integer(c["decay_steps"], 1)
                      if c["lr_decay"] in ("cosine", "exponential")
                      else _integer(c["decay_steps"], 0)),
      "lr_decay_rate": (_number(c["lr_decay_rate"], 0, 1, low_open=True)
                        if c["lr_decay"] == "exponential" else
                        _number(c["lr_decay_rate"], 0, 1)),
      "ema_decay": _number(c["ema_decay"], 0, 1, high_open=True),
      "bn_lag": _number(c["bn_lag"], 0, 1, high_open=True),
      "test_iw_samples": _integer(c["test_iw_samples"], 0),
      "test_iw_images": _optional_count(c["test_iw_images"]),
      "score_reference_images": _optional_count(c["score_reference_images"]),
      "clipnorm": _number(c["clipnorm"], 0),
      "batch_size": _integer(c["batch_size"], 1),
      "epochs": _integer(c["epochs"], 1),
      "steps_per_epoch": _integer(c["steps_per_epoch"], 0),
      "validation_steps": _integer(c["validation_steps"], 0),
      "test_steps": _integer(c["test_steps"], 0),
      "max_train_minutes": _number(c["max_train_minutes"], 0),
      "shuffle_buffer": _integer(c["shuffle_buffer"], 1),
      "seed": _integer(c["seed"], 0, _MAX_SEED),
      "num_samples": _integer(c["num_samples"], 1),
      "temperatures": _check_temperatures(c["temperatures"]),
      "interpolation_steps": _integer(c["interpolation_steps"], 1),
      "mixed_precision": _one_of(
          c["mixed_precision"],
          ("none",) + options_lib.MIXED_PRECISION_POLICIES),
      "jit_compile": _check_jit_compile(c["jit_compile"]),
      "export_dir": (None if isinstance(c["export_dir"], str) and
                     c["export_dir"] else
                     f"must be a directory path, got {c['export_dir']!r}"),
  }
  for key, text in _check_schedule(c).items():
    checks[key] = checks.get(key) or text
  for key in ("use_batch_norm", "conditional", "deterministic",
              "synchronized_batch_norm", "export", "actnorm"):
    checks[key] = _boolean(c[key])
  if c.get("num_classes") is not None:
    checks["num_classes"] = _integer(c["num_classes"], 2)
  problems = [f"{key} {text} (--{key})" for key, text in checks.items()
              if text is not None]
  name = c.get("config_name")
  if c["export"] is True and not (isinstance(name, str) and
                                  _MODEL_NAME.match(name)):
    problems.append(
        f"config name {name!r} (the config file's name, used as the TF "
        f"Serving model name) must be letters, digits, '_', '-' or '.'; "
        f"rename the file or pass --export false")
  if problems:
    raise ValueError("invalid config: " + "; ".join(problems))
  return config


# --- documentation -----------------------------------------------------------


def _markdown_value(value):
  if value is None:
    return "unset"
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value)
  return str(value)


def markdown_table():
  """The config-key table of docs/guides/cli.md, generated from `FIELDS`
  (key, default, type, meaning); tests/test_readme.py checks the page
  holds exactly this text."""
  lines = ["| key | default | type | meaning |", "|---|---|---|---|"]
  for key, (default, kind, help_text) in FIELDS.items():
    kind_name = kind if isinstance(kind, str) else kind.__name__
    text = (help_text.replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;").replace("|", "&#124;"))
    lines.append(f"| `{key}` | `{_markdown_value(default)}` | {kind_name} | "
                 f"{text} |")
  return "\n".join(lines) + "\n"
