"""`realnvp-export`: write a trained checkpoint as a TF Serving SavedModel.

    realnvp-export runs/digits-20261123-101500 --name digits
    realnvp-export model.keras --base_dir saved_models --name mnist --version 3

Writes `<base_dir>/<name>/<version>/` (next free version by default,
never overwriting one) and updates `<base_dir>/models.config`. Exports of the
same model running at the same time each get their own version.
"""

import argparse
import sys

from tfp_realnvp import export as export_lib
from training import checkpoints


def export_model(model, base_dir, name, version=None, serving_root="/models",
                 warmup_requests=2):
  """`tfp_realnvp.export.export_for_serving` with this app's defaults.

  Exports of the same model running at the same time each get their own
  version (the library chooses the next free one at its final rename); an
  explicit `version` that another export took is a FileExistsError.
  Nothing is ever overwritten.
  """
  return export_lib.export_for_serving(
      model, base_dir, name=name, version=version, serving_root=serving_root,
      warmup_requests=warmup_requests)


def main(argv=None):
  p = argparse.ArgumentParser(prog="realnvp-export",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("checkpoint", help="run directory or .keras checkpoint")
  p.add_argument("--base_dir", default="saved_models",
                 help="TF Serving model base directory (default: "
                      "saved_models)")
  p.add_argument("--name", help="model name (default: the run's config "
                 "name, else the Keras model name)")
  p.add_argument("--version", type=int, default=None,
                 help="version number (default: the next free one)")
  p.add_argument("--serving_root", default="/models",
                 help="where base_dir is mounted in the server, for "
                      "models.config (default: /models)")
  p.add_argument("--warmup_requests", type=int, default=2,
                 help="warmup requests per signature (0: no warmup file)")
  checkpoints.add_raw_weights_flag(p)
  args = p.parse_args(argv)
  try:
    path, config = checkpoints.locate(args.checkpoint)
    model = checkpoints.load_model(path, raw_weights=args.raw_weights)
    name = args.name or (config or {}).get("config_name") or model.name
    out = export_model(model, args.base_dir, name=name, version=args.version,
                       serving_root=args.serving_root,
                       warmup_requests=args.warmup_requests)
  except (ValueError, OSError) as e:  # OSError: FileExistsError, unwritable
    print(f"realnvp-export: error: {e}", file=sys.stderr)
    return 2
  print(out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
