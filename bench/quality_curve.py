"""The learning curves of `bench.quality`: each row's curve points (weight
copies scored after training, `bench.quality_contestants.Curve`) as a list,
as CSV (`--curve_csv`) and as a PNG plot (`--curve_png`), and the row
labels the table and the curves share. Moved from `bench/quality.py`,
whose names they still are.
"""

import math


def row_label(row):
  """A row's name in the table and the curves."""
  if row.get("label"):
    return row["label"]
  if row.get("impl") == "realnvp-train":
    return f"realnvp-train --config {row['config']}"
  parts = [row["impl"], row.get("checkerboard"), row.get("mixed_precision")]
  return " ".join(p for p in parts if p)


def curve_points(rows):
  """`[(label, minutes, steps, bits/dim, images)]` of every row's curve."""
  return [(row_label(r), p["minutes"], p["steps"], p["bits_per_dim"],
           p["images"]) for r in rows if "error" not in r
          for p in r.get("curve", [])]


def write_curve_csv(rows, path):
  """The curve points as CSV: contestant, minutes, steps, bits_per_dim,
  images."""
  import csv  # pylint: disable=import-outside-toplevel
  with open(path, "w", newline="", encoding="utf-8") as f:
    out = csv.writer(f)
    out.writerow(["contestant", "minutes", "steps", "bits_per_dim",
                  "images"])
    for label, minutes, steps, bpd, images in curve_points(rows):
      out.writerow([label, f"{minutes:.3f}", steps, f"{bpd:.4f}", images])


COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14),
           (148, 103, 189), (140, 86, 75), (23, 190, 207), (127, 127, 127))


def plot_curves(rows, path, title="test bits/dim against training minutes"):
  """A line per contestant, bits/dim against minutes (PNG, drawn with
  Pillow: matplotlib is not a dependency)."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  points = curve_points(rows)
  if not points:
    raise ValueError("no curve points (run with --curve_minutes)")
  width, height, left, right, top, bottom = 900, 560, 70, 20, 40, 170
  x_max = max(p[1] for p in points) or 1.0
  finite = [p[3] for p in points if math.isfinite(p[3])]
  y_lo, y_hi = min(finite), max(finite)
  pad = 0.05 * (y_hi - y_lo or 1.0)
  y_lo, y_hi = y_lo - pad, y_hi + pad

  def xy(minutes, bpd):
    return (left + (width - left - right) * minutes / x_max,
            top + (height - top - bottom) * (y_hi - bpd) / (y_hi - y_lo))
  image = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(image)
  draw.text((left, 12), title, fill="black")
  draw.rectangle([left, top, width - right, height - bottom],
                 outline="black")
  for minute in range(int(x_max) + 1):
    x, _ = xy(minute, y_lo)
    draw.line([x, height - bottom, x, height - bottom + 5], fill="black")
    draw.text((x - 3, height - bottom + 8), str(minute), fill="black")
  draw.text((width // 2 - 40, height - bottom + 24), "training minutes",
            fill="black")
  for i in range(6):
    bpd = y_lo + (y_hi - y_lo) * i / 5
    _, y = xy(0, bpd)
    draw.line([left - 5, y, left, y], fill="black")
    draw.text((8, y - 6), f"{bpd:.3f}", fill="black")
  labels = list(dict.fromkeys(p[0] for p in points))
  for i, label in enumerate(labels):
    colour = COLOURS[i % len(COLOURS)]
    line = [xy(p[1], p[3]) for p in points
            if p[0] == label and math.isfinite(p[3])]
    if len(line) > 1:
      draw.line(line, fill=colour, width=2)
    for x, y in line:
      draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    y = height - bottom + 48 + 16 * i
    draw.line([left, y + 6, left + 24, y + 6], fill=colour, width=3)
    draw.text((left + 32, y), label, fill="black")
  image.save(path)
