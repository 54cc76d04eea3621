"""Finding and loading what a training run wrote (shared by the CLIs)."""

import json
import os
import zipfile

import keras

import tfp_realnvp  # noqa: F401  (registers RealNVP for keras.models.load_model)
from tfp_realnvp import atomic
from tfp_realnvp import scores


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
  apply_reference(model, path)
  if raw_weights:
    if model.ema_decay is None:
      raise ValueError(f"--raw_weights: {path} has no averaged weights (it "
                       f"was trained without ema_decay), only raw ones")
    model.use_ema = False
  model.compile()
  return model


def reference_path(checkpoint):
  """Where the typicality reference of a `.keras` checkpoint is kept."""
  return os.path.splitext(checkpoint)[0] + ".score_reference.json"


def write_reference(model, checkpoint):
  """Writes `model`'s typicality reference beside `checkpoint` (atomic)."""
  stats = model.score_statistics
  payload = dict(stats.as_dict(),
                 weights_digest=[int(d) for d in stats.digest.numpy()])
  with atomic.atomic_path(reference_path(checkpoint), suffix=".json") as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(payload, f, indent=2, sort_keys=True)
      f.write("\n")


def apply_reference(model, checkpoint):
  """Gives `model` (loaded from `checkpoint`, inference weights as saved)
  the reference beside it when the model has none of its own and the
  reference's weight digest matches; a stale or unreadable one is ignored
  (typicality then says the reference is missing). True when applied."""
  path = reference_path(checkpoint)
  if model.score_statistics.is_set() or not os.path.exists(path):
    return False
  try:
    with open(path, encoding="utf-8") as f:
      ref = json.load(f)
    digest = ref["weights_digest"]
    values = (ref["train_bpd_mean"], ref["train_bpd_std"],
              ref["train_images"])
  except (OSError, ValueError, KeyError):
    return False
  if list(scores.reference_digest(model)) != list(digest):
    return False
  model.score_statistics.record(*values, digest)
  return True


def add_pretrained_flag(parser, help_text):
  """`--pretrained NAME`: a model shipped with the package instead of a
  checkpoint (realnvp-sample, -evaluate, -score)."""
  import tfp_realnvp  # pylint: disable=import-outside-toplevel
  parser.add_argument("--pretrained", choices=tfp_realnvp.pretrained_names(),
                      help=help_text)


def check_one_source(parser, given, pretrained, given_name):
  """Exits through `parser.error` unless exactly one of the checkpoint
  `given` (called `given_name` in the message) and `--pretrained` is set."""
  if (given is None) == (pretrained is None):
    parser.error(f"give {given_name} or --pretrained NAME (exactly one)")


def pretrained_file(name, raw_weights=False):
  """The verified shipped file of pretrained model `name`
  (`tfp_realnvp.pretrained_file`); `--raw_weights` is a ValueError."""
  import tfp_realnvp  # pylint: disable=import-outside-toplevel
  check_no_raw_weights(raw_weights)
  return tfp_realnvp.pretrained_file(name)


def check_no_raw_weights(raw_weights):
  """A ValueError when `--raw_weights` is given with `--pretrained`."""
  if raw_weights:
    raise ValueError("--raw_weights applies to checkpoints; the pretrained "
                     "models have one set of weights")


def add_raw_weights_flag(parser):
  parser.add_argument("--raw_weights", action="store_true",
                      help="use the raw weights of a model trained with "
                           "ema_decay (default: its averaged weights)")
