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

import math
import warnings

import keras
import numpy as np
import scipy.stats
import tensorflow as tf

from tfp_realnvp import validation
# The typicality reference (public here since 0.1).
from tfp_realnvp.score_reference import ScoreStatistics  # noqa: F401
from tfp_realnvp.score_reference import check_reference
from tfp_realnvp.score_reference import reference_digest
from tfp_realnvp.score_reference import reference_is_current  # noqa: F401
from tfp_realnvp.score_reference import weights_digest  # noqa: F401

PNG_COMPRESSION = 9


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


class ScoreInputs:
  """What scores are computed from, each computed once when first asked:
  the model, the uint8 `levels`, their bin-centre bits/dim `bpd`
  (`centre_bits_per_dim`) and PNG bits/dim `png_bpd`."""

  def __init__(self, model, levels):
    self.model = model
    self.levels = levels
    self._bpd = self._png_bpd = None

  @property
  def bpd(self):
    if self._bpd is None:
      self._bpd = centre_bits_per_dim(self.model, self.levels)
    return self._bpd

  @property
  def png_bpd(self):
    if self._png_bpd is None:
      self._png_bpd = png_bits_per_dim(self.levels)
    return self._png_bpd


class Score:
  """Base class of a score (higher = more unusual).

  `output`: the name of its value among the export's `score` outputs;
  `outputs`: every name `__call__` returns, when it returns more.
  `needs_reference`: it reads the typicality reference, which must belong
  to the current weights (`check_reference`). `__call__(inputs)` takes a
  `ScoreInputs` and returns `{output: [N] float32}`, plus any auxiliary
  output it computed on the way. A new score is one subclass and one entry
  in `SCORES`; `model.score`, the export and `realnvp-score` take its key.
  """

  output = None
  outputs = None
  needs_reference = False

  def __call__(self, inputs):
    raise NotImplementedError


class BitsPerDim(Score):
  """`b(x) = −log2 p(x + ½) / D`."""

  output = "bits_per_dim"

  def __call__(self, inputs):
    return {self.output: inputs.bpd}


class Typicality(Score):
  """`|b(x) − mean training b|` (Nalisnick et al., 2019, M = 1)."""

  output = "typicality"
  needs_reference = True

  def __call__(self, inputs):
    return {self.output: typicality(inputs.bpd,
                                    inputs.model.score_statistics.mean)}


class Complexity(Score):
  """`S(x) = b(x) − L(x)` (Serrà et al., 2020), with `L` the PNG bits/dim
  (also returned, as `png_bits_per_dim`)."""

  output = "complexity"
  outputs = ("png_bits_per_dim", "complexity")

  def __call__(self, inputs):
    return {"png_bits_per_dim": inputs.png_bpd,
            self.output: complexity(inputs.bpd, inputs.png_bpd)}


# `kind=` of `RealNVP.score` -> class; the order of the export's outputs.
SCORES = {"bpd": BitsPerDim, "typicality": Typicality,
          "complexity": Complexity}
KINDS = tuple(SCORES)  # the kinds when this module was imported


def check_kind(kind):
  """`kind` if it is a key of `SCORES`, else a `ValueError` naming them."""
  if kind not in SCORES:
    raise ValueError(f"unknown score kind {kind!r}; expected one of "
                     f"{', '.join(SCORES)} (higher = more unusual for all)")
  return kind


def centre_bits_per_dim(model, levels):
  """`−log2 p(k + ½) / D` of uint8 levels `[N, H, W, C]` (inference mode;
  the class marginal `(1/K) Σ_y p(x | y)` for a conditional model)."""
  x = tf.cast(levels, tf.float32) + 0.5
  if not model.num_classes:
    return model.to_bits_per_dim(model.log_prob(x))
  rows = tf.shape(x)[0]
  per_class = tf.stack([model.log_prob(x, labels=tf.fill([rows], c))
                        for c in range(model.num_classes)])
  return model.to_bits_per_dim(tf.reduce_logsumexp(per_class, axis=0) -
                               math.log(model.num_classes))


def checked_levels(model, images):
  """uint8 levels of `images` after the model's image checks."""
  return to_levels(validation.check_images(
      images, model.image_shape, check_values=model.validate_inputs,
      allow_uint8=True))


def score(model, images, kind="bpd"):
  """`RealNVP.score`: the `kind` score of `images`, float32 `[N]`; a score
  that needs the reference checks it first (eagerly, even while a
  `tf.function` traces this)."""
  scorer = SCORES[check_kind(kind)]()
  levels = checked_levels(model, images)
  if scorer.needs_reference:
    with tf.init_scope():
      check_reference(model)
  return scorer(ScoreInputs(model, levels))[scorer.output]


def _in_output_order(with_reference):
  """Score classes: those without the reference first, then the others."""
  classes = list(SCORES.values())
  return ([c for c in classes if not c.needs_reference] +
          ([c for c in classes if c.needs_reference] if with_reference
           else []))


def all_outputs(model, levels, with_reference):
  """Every score's outputs for checked uint8 `levels` (the export's `score`
  signature); scores that need the reference only `with_reference`."""
  inputs = ScoreInputs(model, levels)
  out = {}
  for cls in _in_output_order(with_reference):
    out.update(cls()(inputs))
  return out


def output_names(with_reference):
  """The keys of `all_outputs`, in order, without computing anything."""
  return [name for cls in _in_output_order(with_reference)
          for name in (cls.outputs or (cls.output,))]


def after_fit(model, x, batch_size=None, steps=None):
  """What `RealNVP.fit` does last: `compute_statistics` on `x` (one epoch,
  `steps` batches if given); when `x` cannot be read again (a generator) or
  the densities are not finite, a warning says so and the reference stays
  unset."""
  try:
    compute_statistics(model, x, batch_size=batch_size, steps=steps)
  except ValueError as e:
    warnings.warn(f"fit: the typicality reference of score() was not "
                  f"computed ({e}); call "
                  f"model.compute_score_statistics(training_data)",
                  stacklevel=3)


def image_batches(data, batch_size=None, steps=None):
  """Yields the image batches of what `fit`/`evaluate` take: a
  `tf.data.Dataset` (elements `x`, `(x,)`, `(x, y)` or `((x, labels),)`;
  `steps` batches, or all of a finite one) or arrays (`x` or
  `(x, labels)`, cut into `batch_size` rows, default 64)."""
  if isinstance(data, tf.data.Dataset):
    if steps is None and (data.cardinality().numpy() ==
                          tf.data.INFINITE_CARDINALITY):
      raise ValueError("the dataset is infinite (repeat()): pass steps, the "
                       "number of batches to use")
    for element in (data if steps is None else data.take(steps)):
      inputs, _, _ = keras.utils.unpack_x_y_sample_weight(element)
      yield inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    return
  if isinstance(data, (tuple, list)) and data and all(
      isinstance(part, (np.ndarray, tf.Tensor)) for part in data):
    data = data[0]
  if not isinstance(data, (np.ndarray, tf.Tensor)):
    raise ValueError(f"expected a tf.data.Dataset or arrays of images, got "
                     f"{type(data).__name__}")
  batch_size = batch_size or 64
  count = len(data) if steps is None else min(len(data), steps * batch_size)
  for start in range(0, count, batch_size):
    yield data[start:start + batch_size]


def compute_statistics(model, data, batch_size=None, steps=None):
  """`RealNVP.compute_score_statistics`: records the mean and std of the
  bin-centre bits/dim over `data` with the current weights (float64 sums);
  returns `ScoreStatistics.as_dict()`."""
  if not tf.executing_eagerly():
    raise RuntimeError("compute_score_statistics runs eagerly, not in a "
                       "tf.function")
  # A local function: traced once per call (fit calls this once), never
  # attached to the model (exports track the model's attributes).
  centre_bpd = tf.function(lambda levels: centre_bits_per_dim(model, levels),
                           reduce_retracing=True)
  total = total_sq = 0.0
  count = 0
  for images in image_batches(data, batch_size, steps):
    bpd = centre_bpd(checked_levels(model, images)).numpy().astype(
        np.float64)
    if not np.all(np.isfinite(bpd)):
      raise ValueError(f"{int(np.sum(~np.isfinite(bpd)))} images of the "
                       f"data have a non-finite density")
    total += float(np.sum(bpd))
    total_sq += float(np.sum(bpd ** 2))
    count += len(bpd)
  if not count:
    raise ValueError("the data yielded no images")
  mean = total / count
  std = math.sqrt(max(total_sq / count - mean ** 2, 0.0))
  model.score_statistics.record(mean, std, count, reference_digest(model))
  return model.score_statistics.as_dict()


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
