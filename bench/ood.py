"""Out-of-distribution detection with a trained MNIST model: AUROC of every
score kind (`tfp_realnvp.scores`) against sets built here without downloads.

    python -m bench.ood --model runs/mnist_fast-... [--data_dir DIR]

In-distribution: all 10,000 MNIST test images. Out-of-distribution:

  digits 28x28   the 1,797 scikit-learn 8x8 digits, levels 0..16 scaled to
                 0..255, bilinear to 28x28
  inverted       255 - every MNIST test image (10,000)
  noise          10,000 images of uniform levels 0..255 (seed 0)
  constant       the 256 constant images, one per level

AUROC is the probability that an out-of-distribution image scores higher
than an MNIST test image (0.5 = chance, 1 = perfect, below 0.5 = the score
ranks that set as *more* typical than MNIST). A model whose typicality
reference is missing or stale gets it computed on the MNIST train split
first (said in the output). Prints one JSON object per set, then a
markdown table.
"""

import argparse
import json
import sys
import time

import numpy as np

SHARED_TFDS = "../shared/data/tfds"


def ood_sets(mnist_test, seed=0):
  """`{name: uint8 [N, 28, 28, 1]}` of the out-of-distribution sets."""
  import sklearn.datasets  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  digits = sklearn.datasets.load_digits().images.astype(np.float32)
  digits = digits * (255.0 / 16.0)
  up = tf.image.resize(digits[..., None], (28, 28), method="bilinear")
  rng = np.random.default_rng(seed)
  return {
      "digits 28x28": np.clip(np.round(up.numpy()), 0, 255).astype(np.uint8),
      "inverted": (255 - mnist_test).astype(np.uint8),
      "noise": rng.integers(0, 256, (10000, 28, 28, 1)).astype(np.uint8),
      "constant": np.broadcast_to(
          np.arange(256, dtype=np.uint8)[:, None, None, None],
          (256, 28, 28, 1)).copy(),
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", required=True,
                 help="run directory or .keras checkpoint of an MNIST model")
  p.add_argument("--data_dir", default=SHARED_TFDS)
  p.add_argument("--batch_size", type=int, default=250)
  args = p.parse_args(argv)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tfp_realnvp import scores  # pylint: disable=import-outside-toplevel
  from training import checkpoints  # pylint: disable=import-outside-toplevel
  from training import data  # pylint: disable=import-outside-toplevel

  path, _ = checkpoints.locate(args.model)
  model = checkpoints.load_model(path)
  if tuple(model.image_shape) != (28, 28, 1):
    p.error(f"--model must be a 28x28x1 model, got {model.image_shape}")
  source = dict(batch_size=args.batch_size, dequantize=False,
                data_dir=args.data_dir, download=False)
  mnist = data.load("mnist", **source)
  test = np.concatenate(list(mnist.test.as_numpy_iterator())).astype(np.uint8)
  try:
    model.check_score_statistics()
    note = "stored in the model"
  except ValueError:
    started = time.perf_counter()
    model.compute_score_statistics(mnist.train)
    note = (f"computed now on the MNIST train split "
            f"({time.perf_counter() - started:.0f} s)")
  print(json.dumps(dict(model.score_statistics.as_dict(), reference=note)),
        flush=True)

  fns = {kind: tf.function(lambda x, kind=kind: model.score(x, kind),
                           reduce_retracing=True) for kind in scores.KINDS}

  def score_all(images):
    out = {}
    for kind, fn in fns.items():
      out[kind] = np.concatenate([
          fn(tf.constant(images[i:i + args.batch_size])).numpy()
          for i in range(0, len(images), args.batch_size)])
    return out

  inlier = score_all(test)
  rows = [{"set": "MNIST test (in-distribution)", "images": len(test),
           "mean_bpd": float(inlier["bpd"].mean())}]
  print(json.dumps(rows[0]), flush=True)
  for name, images in ood_sets(test).items():
    outlier = score_all(images)
    row = {"set": name, "images": len(images),
           "mean_bpd": float(outlier["bpd"].mean())}
    for kind in scores.KINDS:
      row["auroc_" + kind] = scores.auroc(inlier[kind], outlier[kind])
    rows.append(row)
    print(json.dumps(row), flush=True)
  print("\n| set | images | mean bits/dim | " +
        " | ".join(f"AUROC {k}" for k in scores.KINDS) + " |")
  print("|---|---:|---:|" + "---:|" * len(scores.KINDS))
  for row in rows:
    print(f"| {row['set']} | {row['images']:,} | {row['mean_bpd']:.3f} | " +
          " | ".join(f"{row['auroc_' + k]:.3f}" if "auroc_" + k in row
                     else "–" for k in scores.KINDS) + " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
