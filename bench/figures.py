"""The documentation's figures, from the shipped models and the bench's data.

    python -m bench.figures            # writes every figure under docs/images/

| figure (docs/images/)     | made from                                        |
|---------------------------|--------------------------------------------------|
| samples_mnist.png         | `tfp_realnvp.pretrained("mnist")`, T = 0.7 and 1.0 |
| interpolation_mnist.png   | the same model: eq. 19 between four of its samples |
| photos_10min_<date>.png   | docs/data/photos_10min_<date>.csv (`bench.quality --curve_csv`) |
| speed_per_isa.png         | docs/data/speed_isa_<date>.csv (`python -m bench --isa native,avx2`) |

Samples and interpolations use fixed seeds, so the figures change only when
the shipped weights do. Drawn with Pillow (matplotlib is not a dependency).
"""

import argparse
import csv
import glob
import os

import numpy as np

from bench import quality_curve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "docs", "data")
IMAGES = os.path.join(ROOT, "docs", "images")
TEMPERATURES = (0.7, 1.0)
SEED = (7, 2026)


def samples(model, path, num=36):
  """Sample grids of `model`, one per temperature, side by side."""
  from training import figures  # pylint: disable=import-outside-toplevel
  upscale = figures.upscale_for(model.image_shape)
  panels = [figures.captioned(figures.upscaled(figures.sample_grid(
      model, num, t, SEED), upscale), figures.temperature_caption(t))
            for t in TEMPERATURES]
  gap = np.full((panels[0].shape[0], 16, panels[0].shape[2]), 255, np.uint8)
  return figures.save_png(np.concatenate([panels[0], gap, panels[1]],
                                         axis=1), path)


def interpolation(model, path, steps=8, temperature=0.7):
  """Eq. 19's manifold between four samples of `model` (the corners)."""
  from training import figures  # pylint: disable=import-outside-toplevel
  corners = model.sample(4, temperature=temperature, seed=SEED)
  grid = figures.grid(model.interpolate(corners, steps).numpy())
  return figures.save_png(figures.captioned(
      figures.upscaled(grid, figures.upscale_for(model.image_shape)),
      f"interpolation between four samples (T = {temperature:g})"), path)


def _date_of(csv_path):
  """The date a data file's name ends with (`…_2026-12-07.csv`)."""
  return os.path.basename(csv_path).rsplit("_", 1)[-1][:-4]


def curve(csv_path, path):
  """bits/dim against training minutes, one line per contestant."""
  rows = {}
  with open(csv_path, newline="", encoding="utf-8") as f:
    for r in csv.DictReader(f):
      rows.setdefault(r["contestant"], []).append(
          {"minutes": float(r["minutes"]), "steps": int(r["steps"]),
           "bits_per_dim": float(r["bits_per_dim"]),
           "images": int(r["images"])})
  quality_curve.plot_curves(
      [{"label": k, "curve": v} for k, v in rows.items()], path,
      title=f"test bits/dim against training minutes "
            f"({_date_of(csv_path)}, see Benchmarks)")
  return path


def _read_speed(csv_path):
  with open(csv_path, encoding="utf-8") as f:
    lines = [line for line in f if not line.startswith("#")]
  return list(csv.DictReader(lines))


def speed(csv_path, path):
  """Grouped bars: ours / normflows Glow per workload and layout, native and
  AVX2, for train, log_prob and sample; the line at 1 is parity."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  rows = _read_speed(csv_path)
  kinds = ("train", "log_prob", "sample")
  groups = list(dict.fromkeys((r["workload"], r["layout"]) for r in rows))
  isas = list(dict.fromkeys(r["isa"] for r in rows))
  value = {(r["workload"], r["layout"], r["isa"], k): float(r[k])
           for r in rows for k in kinds}
  top = max(value.values()) * 1.1
  bar, gap, left, width = 14, 26, 250, 980
  height = 60 + len(groups) * (len(isas) * len(kinds) * bar + gap) + 60
  image = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(image)
  draw.text((10, 10), f"speed, ours / normflows Glow (> 1: ours faster), "
                      f"small presets, batch 64 ({_date_of(csv_path)}, see "
                      f"Benchmarks)",
            fill="black")
  scale = (width - left - 60) / top

  def x(v):
    return left + v * scale
  colours = {k: quality_curve.COLOURS[i] for i, k in enumerate(kinds)}
  y = 50
  for workload, layout in groups:
    draw.text((10, y + 4), f"{workload}, {layout}", fill="black")
    for isa in isas:
      draw.text((left - 60, y + 2), isa, fill="black")
      for kind in kinds:
        v = value[(workload, layout, isa, kind)]
        shade = colours[kind] if isa == isas[0] else tuple(
            int(c + (255 - c) * 0.45) for c in colours[kind])
        draw.rectangle([left, y, x(v), y + bar - 3], fill=shade)
        draw.text((x(v) + 4, y), f"{v:.2f}x", fill="black")
        y += bar
    y += gap
  draw.line([x(1.0), 40, x(1.0), y], fill="black", width=1)
  draw.text((x(1.0) - 8, y + 2), "1.0", fill="black")
  for i, kind in enumerate(kinds):
    draw.rectangle([left + 150 * i, y + 24, left + 150 * i + 20, y + 34],
                   fill=colours[kind])
    draw.text((left + 150 * i + 26, y + 22), kind, fill="black")
  draw.text((left + 470, y + 22), f"dark: {isas[0]}, light: "
                                  f"{', '.join(isas[1:])}", fill="black")
  image.save(path)
  return path


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m bench.figures",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--out", default=IMAGES, help="output folder")
  p.add_argument("--only", default="", help="comma list of figure stems "
                 "(samples_mnist, interpolation_mnist, speed_per_isa, "
                 "photos_10min_<date>, ...); default: all")
  args = p.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  wanted = set(filter(None, args.only.split(",")))
  jobs = {}
  for csv_path in sorted(glob.glob(os.path.join(DATA, "*_10min_*.csv"))):
    stem = os.path.basename(csv_path)[:-4]
    jobs[stem] = (curve, csv_path)
  speeds = sorted(glob.glob(os.path.join(DATA, "speed_isa_*.csv")))
  if speeds:
    jobs["speed_per_isa"] = (speed, speeds[-1])
  jobs["samples_mnist"] = (samples, "mnist")
  jobs["interpolation_mnist"] = (interpolation, "mnist")
  models = {}
  for stem, (make, source) in jobs.items():
    if wanted and stem not in wanted:
      continue
    path = os.path.join(args.out, stem + ".png")
    if make in (samples, interpolation):
      if source not in models:
        import tfp_realnvp  # pylint: disable=import-outside-toplevel
        models[source] = tfp_realnvp.pretrained(source)
      source = models[source]
    print(make(source, path), flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
