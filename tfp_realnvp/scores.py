"""Out-of-distribution scores of a trained density model.

An exact likelihood invites scoring inputs by how unlike the training data
they are, and it is also the best-known trap of flows: raw likelihood ranks
some out-of-distribution sets as *more* likely than the training data
(Nalisnick et al., "Do deep generative models know what they don't know?",
ICLR 2019). `RealNVP.score(x, kind)` offers raw bits/dim and two published
remedies; for every kind a higher score means "more unusual":

```
  kind          score of an image x (D = H·W·C)
  bpd           b(x) = −log2 p(x + ½) / D
  typicality    |b(x) − mean of b over the training data|
                  Nalisnick et al. 2019, "Detecting out-of-distribution
                  inputs to deep generative models using typicality" (the
                  test with batches of M = 1)
  complexity    S(x) = b(x) − L(x),  L(x) = 8·len(PNG(x)) / D
                  Serrà et al., ICLR 2020, "Input complexity and
                  out-of-distribution detection with likelihood-based
                  generative models" (PNG at compression level 9, header
                  and chunk framing included: a constant offset per shape)
```

All three are deterministic: images are integer pixel levels (uint8, or
floats that are floored, so a dequantized `k + u` gives back `k`), and the
density is evaluated at the centre of each pixel's bin, `k + ½` (the
`log_prob_uint8` serving signature). A class-conditional model scores the
image alone, `p(x) = (1/K) Σ_y p(x | y)` (uniform classes, K passes).

The typicality reference (mean and standard deviation of `b` over the
training data) is `ScoreStatistics`, a Keras 3 layer of the model: `fit`
computes it at its end (`RealNVP.compute_score_statistics`), it is saved in
`.keras` files and exported. It records a digest of the weights it was
computed with; `typicality` refuses to answer (a `ValueError` saying how
to refresh it) when the weights changed since, so a stale reference is
never served.

```python
model.fit(train_images, epochs=10)        # also sets the reference
s = model.score(test_uint8, kind="typicality")
print(tfp_realnvp.scores.auroc(s_in, s_out))
```
"""

import hashlib

import keras
import numpy as np
import scipy.stats
import tensorflow as tf

KINDS = ("bpd", "typicality", "complexity")
PNG_COMPRESSION = 9


def check_kind(kind):
  """`kind` if it is one of `KINDS`, else a `ValueError` naming them."""
  if kind not in KINDS:
    raise ValueError(f"unknown score kind {kind!r}; expected one of "
                     f"{', '.join(KINDS)} (higher = more unusual for all)")
  return kind


def to_levels(images):
  """Integer pixel levels `[N, H, W, C]` as uint8: uint8 as given; floats
  in [0, 256] floored (`k + u` -> `k`, and 256.0 -> 255)."""
  images = tf.convert_to_tensor(images)
  if images.dtype == tf.uint8:
    return images
  return tf.cast(tf.clip_by_value(tf.floor(tf.cast(images, tf.float32)),
                                  0.0, 255.0), tf.uint8)


def png_bits_per_dim(levels, compression=PNG_COMPRESSION):
  """`L(x)`: bits of each image's PNG encoding per dimension, float32 `[N]`.

  `levels`: uint8 `[N, H, W, C]` with C in {1, 3, 4} (what PNG stores).
  """
  levels = tf.convert_to_tensor(levels)
  if levels.dtype != tf.uint8:
    raise TypeError(f"png_bits_per_dim takes uint8 levels, got "
                    f"{levels.dtype.name}")
  if levels.shape.rank != 4 or levels.shape[-1] not in (1, 3, 4):
    raise ValueError(f"png_bits_per_dim takes images [N, H, W, C] with C in "
                     f"(1, 3, 4), got shape {levels.shape}")
  size = float(np.prod(levels.shape[1:]))
  nbytes = tf.map_fn(
      lambda im: tf.strings.length(tf.io.encode_png(im, compression)),
      levels, fn_output_signature=tf.int32)
  return tf.cast(nbytes, tf.float32) * 8.0 / size


def typicality(bpd, train_bpd_mean):
  """`|b(x) − mean training b|` (Nalisnick et al., 2019, M = 1)."""
  return tf.abs(bpd - train_bpd_mean)


def complexity(bpd, png_bpd):
  """`S(x) = b(x) − L(x)` (Serrà et al., 2020), both in bits/dim."""
  return bpd - png_bpd


def weights_digest(variables):
  """Two int32 from a SHA-256 of the variables' values (order matters)."""
  digest = hashlib.sha256()
  for v in variables:
    value = np.asarray(keras.ops.convert_to_numpy(v))
    digest.update(str((value.dtype.str, value.shape)).encode())
    digest.update(np.ascontiguousarray(value).tobytes())
  words = np.frombuffer(digest.digest()[:8], dtype=np.int32)
  return words.copy()


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ScoreStatistics(keras.layers.Layer):
  """The typicality reference of a model: statistics of its per-image
  bin-centre bits/dim over the training data, and the weights they belong to.

  Variables (non-trainable, saved and exported): `mean`, `std`, `count`
  (images; 0 = not computed) and `weights_digest` (`weights_digest` of the
  model's other weights at the time, plus whether the averaged weights were
  in use). Files saved before this layer existed load with `count = 0`.
  """

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.mean = self.add_weight(name="train_bpd_mean", shape=(),
                                initializer="zeros", trainable=False)
    self.std = self.add_weight(name="train_bpd_std", shape=(),
                               initializer="zeros", trainable=False)
    self.count = self.add_weight(name="train_bpd_count", shape=(),
                                 initializer="zeros", dtype="int32",
                                 trainable=False)
    self.digest = self.add_weight(name="weights_digest", shape=(2,),
                                  initializer="zeros", dtype="int32",
                                  trainable=False)
    self.built = True

  def load_own_variables(self, store):
    if not list(store.keys()):
      return  # saved before score statistics existed: stays "not computed"
    super().load_own_variables(store)

  def is_set(self):
    return int(self.count.numpy()) > 0

  def record(self, mean, std, count, digest):
    self.mean.assign(float(mean))
    self.std.assign(float(std))
    self.count.assign(int(count))
    self.digest.assign(np.asarray(digest, np.int32))

  def is_current(self, digest):
    """True when set and computed with the weights `digest` describes."""
    return self.is_set() and np.array_equal(self.digest.numpy(),
                                            np.asarray(digest, np.int32))

  def as_dict(self):
    return {"train_bpd_mean": float(self.mean.numpy()),
            "train_bpd_std": float(self.std.numpy()),
            "train_images": int(self.count.numpy())}


def auroc(inlier_scores, outlier_scores):
  """Area under the ROC curve of "outlier if score > threshold": the
  probability that a random outlier scores higher than a random inlier
  (ties count ½), from ranks (Mann–Whitney U), float64. A `ValueError`
  for empty or non-finite scores (they would make the area meaningless)."""
  a = np.asarray(inlier_scores, np.float64).ravel()
  b = np.asarray(outlier_scores, np.float64).ravel()
  for name, s in (("inlier", a), ("outlier", b)):
    if not s.size:
      raise ValueError(f"auroc: no {name} scores")
    if not np.all(np.isfinite(s)):
      raise ValueError(f"auroc: {int(np.sum(~np.isfinite(s)))} non-finite "
                       f"{name} scores")
  ranks = scipy.stats.rankdata(np.concatenate([a, b]))  # ties: average
  u = np.sum(ranks[len(a):]) - len(b) * (len(b) + 1) / 2.0
  return float(u / (len(a) * len(b)))
