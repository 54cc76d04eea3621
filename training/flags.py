"""Every config key as a command-line flag of `realnvp-train`: the "config
overrides" flags (`add_config_flags`; `parse_value` reads their values) and
the config they give (`config_from_args`: `--config`'s, with the flags given
on top of it)."""

import argparse

from training import configs


def parse_value(kind, text):
  """A flag's value; argparse reports an ArgumentTypeError as
  `argument --key: <message>`."""
  def fail(expected):
    raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
  if kind is bool:
    if text.lower() in ("1", "true", "yes", "on"):
      return True
    if text.lower() in ("0", "false", "no", "off"):
      return False
    fail("true or false")
  try:
    if kind == "shape":
      return [int(v) for v in text.split(",")]
    if kind == "floats":
      return [float(v) for v in text.split(",")]
    if kind == "ints":
      return [int(v) for v in text.split(",")]
    if kind == "filters":
      widths = [int(v) for v in text.split(",")]
      return widths[0] if len(widths) == 1 else widths
    return kind(text)
  except ValueError:
    fail({"shape": "three comma-separated integers H,W,C",
          "floats": "comma-separated numbers like 1.0,0.7",
          "ints": "comma-separated integers like 512,512",
          "filters": "an integer or comma-separated integers",
          int: "an integer", float: "a number"}.get(kind, "a value"))


def add_config_flags(parser):
  """Adds a flag per `configs.FIELDS` key (group "config overrides",
  default None: not given) and `--num_classes` to `parser`."""
  group = parser.add_argument_group(
      "config overrides (defaults come from --config)")
  for key, (default, kind, help_text) in configs.FIELDS.items():
    metavar = {"shape": "H,W,C", "floats": "T1,T2", "ints": "N1,N2",
                "filters": "N|N1,N2,.."}.get(
        kind, getattr(kind, "__name__", str(kind)).upper())
    group.add_argument(f"--{key}", default=None, metavar=metavar,
                       type=lambda t, k=kind: parse_value(k, t),
                       help=f"{help_text} (base default: {default})")
  parser.add_argument("--num_classes", type=int, default=None,
                      help="train class-conditional (same as --conditional "
                           "true); checked against the dataset's class count")


def config_from_args(args):
  """The config `--config` names, with the flags given on top of it."""
  config = configs.load(args.config)
  for key in configs.FIELDS:
    value = getattr(args, key)
    if value is not None:
      config[key] = value
  if args.num_classes is not None:
    config["conditional"] = True
    config["num_classes"] = args.num_classes
  return config
