"""Pretrained models shipped inside the package (no download).

```python
import tfp_realnvp
model = tfp_realnvp.pretrained("mnist")     # a trained RealNVP, offline
images = model.sample(16, temperature=0.7, seed=(0, 1))
print(tfp_realnvp.pretrained_info("mnist")["test_bits_per_dim"])
```

Each entry of `weights/catalogue.json` names its `.keras` file (weights and
typicality reference, no optimizer state), its SHA-256, the test bits/dim
measured for it and the command, machine and date that produced it.
"""

import json
import os

from tfp_realnvp import digests

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "weights")
CATALOGUE = os.path.join(WEIGHTS_DIR, "catalogue.json")


def _catalogue():
  with open(CATALOGUE, encoding="utf-8") as f:
    return json.load(f)


def pretrained_names():
  """The names `pretrained` accepts."""
  return sorted(_catalogue())


def pretrained_info(name):
  """The catalogue entry of `name`: file, sha256, test_bits_per_dim,
  command, machine, date, parameters."""
  catalogue = _catalogue()
  if name not in catalogue:
    raise ValueError(f"no pretrained model {name!r}; expected one of "
                     f"{', '.join(sorted(catalogue))}")
  return dict(catalogue[name])


def pretrained_file(name):
  """The path of the shipped `.keras` file of `name`, after checking its
  SHA-256 against the catalogue (a damaged or replaced file is a
  `ValueError`, never a silently different model)."""
  info = pretrained_info(name)
  path = os.path.join(WEIGHTS_DIR, info["file"])
  if not os.path.exists(path):
    raise FileNotFoundError(f"the pretrained file {path} is missing (a "
                            f"broken installation?)")
  if digests.sha256_file(path) != info["sha256"]:
    raise ValueError(f"{path} does not match its catalogue SHA-256 (damaged "
                     f"or replaced); reinstall tfp-realnvp")
  return path


def pretrained(name):
  """The pretrained `RealNVP` `name` ('digits' or 'mnist'), compiled with
  the built-in loss (no optimizer state), loaded from the package
  (`pretrained_file`: its SHA-256 is checked first).
  """
  import keras  # pylint: disable=import-outside-toplevel
  from tfp_realnvp import model as model_lib  # pylint: disable=import-outside-toplevel
  path = pretrained_file(name)
  model = keras.saving.load_model(path, compile=False)
  if not isinstance(model, model_lib.RealNVP):
    raise ValueError(f"{path} holds a {type(model).__name__}, not a RealNVP")
  model.compile()
  return model
