"""Training configurations (paper §4.1) and their command-line overrides.

Each `<name>.json` next to this file sets some of the keys of `FIELDS`; the
rest take the defaults below. Every key is also a `realnvp-train` flag.
"""

import json
import os

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
    "coupling": ("affine", str, "affine (Real NVP) or additive (NICE)"),
    "use_batch_norm": (True, bool, "batch norm in s/t nets and as bijectors"),
    "conditional": (False, bool, "class-conditional model (labelled datasets)"),
    "alpha": (0.05, float, "logit preprocessing alpha"),
    "bn_momentum": (0.9, float, "batch-norm moving-average decay"),
    "log_scale_init": (1.0, float, "initial bound of |s| (scale*tanh)"),
    "l2_reg": (5e-5, float, "L2 penalty on s/t network weights (paper 5e-5)"),
    "learning_rate": (1e-3, float, "Adam learning rate (paper 1e-3)"),
    "clipnorm": (100.0, float, "global gradient-norm clip (0 = off)"),
    "batch_size": (64, int, "global batch size (paper 64)"),
    "epochs": (30, int, "training epochs"),
    "steps_per_epoch": (0, int, "steps per epoch (0 = the whole train split)"),
    "validation_steps": (0, int, "validation batches per epoch (0 = all)"),
    "test_steps": (0, int, "test batches for the final bits/dim (0 = all)"),
    "max_train_minutes": (0.0, float, "stop after the epoch that passes this "
                          "many minutes of training (0 = off)"),
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
    overrides = json.load(f)
  unknown = sorted(set(overrides) - set(FIELDS) - {"description"})
  if unknown:
    raise ValueError(f"config {path} has unknown keys {unknown}")
  config = {key: spec[0] for key, spec in FIELDS.items()}
  config.update({k: v for k, v in overrides.items() if k != "description"})
  config["config_name"] = os.path.splitext(os.path.basename(path))[0]
  return config
