"""Finding and loading what a training run wrote (shared by the CLIs)."""

import json
import os

import keras

import tfp_realnvp  # noqa: F401  (registers RealNVP for keras.models.load_model)


def locate(path):
  """Returns `(checkpoint_path, run_config or None)` for a run dir or file."""
  if os.path.isdir(path):
    checkpoint = os.path.join(path, "checkpoints", "best.keras")
    config_path = os.path.join(path, "config.json")
    if not os.path.exists(checkpoint):
      raise FileNotFoundError(f"no checkpoint at {checkpoint}; is {path!r} a "
                              f"realnvp-train run directory?")
    config = None
    if os.path.exists(config_path):
      with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    return checkpoint, config
  if not os.path.exists(path):
    raise FileNotFoundError(f"no run directory or checkpoint at {path!r}")
  if not path.endswith(".keras"):
    raise ValueError(f"expected a run directory or a .keras checkpoint, got "
                     f"{path!r}")
  return path, None


def load_model(path):
  """Loads a `RealNVP` from a `.keras` file (compiled without optimizer)."""
  model = keras.models.load_model(path, compile=False)
  if not isinstance(model, tfp_realnvp.RealNVP):
    raise ValueError(f"{path!r} holds a {type(model).__name__}, not a "
                     f"tfp_realnvp.RealNVP")
  model.compile()
  return model
