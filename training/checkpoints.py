"""Finding and loading what a training run wrote (shared by the CLIs)."""

import json
import os
import zipfile

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
        try:
          config = json.load(f)
        except json.JSONDecodeError as e:
          raise ValueError(f"the run's config {config_path} is not valid "
                           f"JSON ({e.msg}: line {e.lineno} column "
                           f"{e.colno}); it is damaged (truncated?)") from None
    return checkpoint, config
  if not os.path.exists(path):
    raise FileNotFoundError(f"no run directory or checkpoint at {path!r}")
  if not path.endswith(".keras"):
    raise ValueError(f"expected a run directory or a .keras checkpoint, got "
                     f"{path!r}")
  return path, None


def load_model(path, raw_weights=False):
  """Loads a `RealNVP` from a `.keras` file (compiled without optimizer).

  A file that is not a complete `.keras` archive (truncated, or not written
  by Keras) is a ValueError naming it (Keras itself says "File not found").
  A model trained with `ema_decay` infers with its averaged weights, or
  with the raw ones when `raw_weights` (a ValueError for a model without
  averages: `--raw_weights` would silently mean nothing).
  """
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{path} is not a readable .keras archive (not a "
                     f"complete zip file: truncated, or not saved by Keras)")
  try:
    model = keras.models.load_model(path, compile=False)
  except Exception as e:  # pylint: disable=broad-except
    reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise ValueError(f"{path} is not a readable .keras archive "
                     f"({type(e).__name__}: {reason})") from e
  if not isinstance(model, tfp_realnvp.RealNVP):
    raise ValueError(f"{path!r} holds a {type(model).__name__}, not a "
                     f"tfp_realnvp.RealNVP")
  if raw_weights:
    if model.ema_decay is None:
      raise ValueError(f"--raw_weights: {path} has no averaged weights (it "
                       f"was trained without ema_decay), only raw ones")
    model.use_ema = False
  model.compile()
  return model


def add_raw_weights_flag(parser):
  parser.add_argument("--raw_weights", action="store_true",
                      help="use the raw weights of a model trained with "
                           "ema_decay (default: its averaged weights)")
