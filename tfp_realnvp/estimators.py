"""Estimates of the discrete log-likelihood `log P(k)` of integer pixels.

A flow gives the density `p(x)` of dequantized pixels `x = k + u`; what
images are worth is `log P(k) = log ∫ p(k + u) du`. Estimators:

| key                   | estimate of `log P(k)` per image                     |
|-----------------------|------------------------------------------------------|
| `single_draw`         | `log p(k + u) − log q(u | k)`, one draw (what          |
|                       | `evaluate` reports): a lower bound                   |
| `importance_weighted` | `log (1/K) Σ_j p(k + u_j) / q(u_j | k)` (Burda et      |
|                       | al., 2016; Ho et al., 2019 §3.1): tighter as K grows |

`q` is the model's dequantizer (uniform noise, `log q = 0`, without one).
An estimator is a class with `__call__(model, inputs) -> float64 [N]`; a
new one is one subclass and one entry in `ESTIMATORS`, reachable as
`estimate(model, inputs, key, **arguments)`.

```python
from tfp_realnvp import estimators
nats = estimators.estimate(model, levels, "importance_weighted",
                           num_samples=16)
```
"""

import math
import weakref

import tensorflow as tf

from tfp_realnvp import dequantization
from tfp_realnvp import validation


class Estimator:
  """Base class: `__call__(model, inputs)` -> float64 `[N]` log-likelihood
  (nats) of `inputs` (`levels` or `(levels, labels)`)."""

  def __call__(self, model, inputs):
    raise NotImplementedError


# Per model and per `use_ema`: the traced draw functions (traced once for
# all the batches of an evaluation). Keyed weakly; the functions hold the
# model weakly, so the cache never keeps a model alive.
_TRACED = weakref.WeakKeyDictionary()


def _log_weight(model, levels, labels, seed):
  """`log p(k + u) − log q(u | k)` of the inference-mode draw `seed`."""
  dequantizer = model.flow_layers().dequantizer
  levels = tf.cast(levels, tf.float32)
  if dequantizer is None:
    u = tf.random.stateless_uniform(tf.shape(levels), seed=seed)
    x, log_q = levels + tf.minimum(u, dequantization.MAX_NOISE), 0.0
  else:
    x, log_q = dequantizer(levels, training=False, seed=seed)
  return model.log_prob(x, labels=labels) - log_q


def _traced(model):
  per_model = _TRACED.setdefault(model, {})
  key = bool(model.use_ema)
  if key not in per_model:
    ref = weakref.ref(model)
    per_model[key] = (
        tf.function(lambda levels, labels, seed: _log_weight(
            ref(), levels, labels, seed), reduce_retracing=True),
        tf.function(lambda x, labels: ref().log_prob(x, labels=labels),
                    reduce_retracing=True))
  return per_model[key]


class ImportanceWeighted(Estimator):
  """`log (1/K) Σ_j p(k + u_j) / q(u_j | k)`, accumulated in float64
  (log-weights of ~10³ nats per image differ by far less than float32
  resolves when summed).

  `inputs`: `levels` or `(levels, labels)`, where `levels` is either
  - integer levels `[N, H, W, C]` in 0..255 (float or uint8) with
    `num_samples = K`: draw `j` is the inference-mode draw of the model's
    dequantizer with stateless seed `(seed, j)` (`seed` defaults to the
    dequantizer's own, so `j = 0` is exactly what `model(levels)`
    evaluates); a model without a dequantizer draws `u ~ U[0, 1)` with
    seed `(seed or 0, j)`;
  - or, for a model without a dequantizer, `K` given dequantized draws
    `[N, K, H, W, C]` (e.g. the `noise_draws=K` pipelines of
    `training.data.load`, whose draw 0 is the evaluation pipeline's noise).
  """

  def __init__(self, num_samples=None, seed=None):
    self.num_samples = num_samples
    self.seed = seed

  def _draws(self, model, images):
    """`(draws [N, K, ...] or None, K, checked levels or None)`."""
    if images.shape.rank == 5:
      if model.dequantizer is not None:
        raise ValueError(
            "this model dequantizes its inputs itself (dequantizer="
            f"{model.dequantizer_name!r}): pass integer levels [N, H, W, C] "
            "and num_samples, not dequantized draws [N, K, H, W, C]")
      draws = tf.cast(images, tf.float32)
      if self.num_samples is not None and self.num_samples != draws.shape[1]:
        raise ValueError(f"num_samples={self.num_samples} but the draws have "
                         f"K={draws.shape[1]} (shape [N, K, H, W, C])")
      return draws, int(draws.shape[1]), None
    validation.check_positive_int("num_samples", self.num_samples)
    levels = validation.check_levels(
        validation.check_images(images, model.image_shape,
                                model.validate_inputs, allow_uint8=True),
        model.validate_inputs)
    return None, int(self.num_samples), levels

  def __call__(self, model, inputs):
    images, labels = (inputs if isinstance(inputs, (tuple, list)) else
                      (inputs, None))
    images = tf.convert_to_tensor(images)
    if model.num_classes:
      labels = validation.check_labels(labels, model.num_classes,
                                       rows=tf.shape(images)[0],
                                       check_values=model.validate_inputs)
    elif labels is not None:
      raise ValueError("labels were given to an unconditional model "
                       "(num_classes=None)")
    draws, num_samples, levels = self._draws(model, images)
    dequantizer = model.flow_layers().dequantizer
    seed = self.seed
    if seed is None:
      seed = dequantizer.seed if dequantizer is not None else 0
    draw_levels, draw_given = _traced(model)
    total = None
    for j in range(num_samples):
      if draws is not None:
        log_w = draw_given(draws[:, j], labels)
      else:
        log_w = draw_levels(levels, labels, tf.constant([seed, j], tf.int64))
      log_w = tf.cast(log_w, tf.float64)
      total = log_w if total is None else tf.reduce_logsumexp(
          tf.stack([total, log_w]), axis=0)
    return total - math.log(num_samples)


class SingleDraw(ImportanceWeighted):
  """One draw (`K = 1`): the bound `evaluate` reports, per image."""

  def __init__(self, seed=None):
    super().__init__(num_samples=1, seed=seed)


# Estimator key -> class.
ESTIMATORS = {"single_draw": SingleDraw,
              "importance_weighted": ImportanceWeighted}


def estimate(model, inputs, estimator="importance_weighted", **arguments):
  """`ESTIMATORS[estimator](**arguments)(model, inputs)`: float64 `[N]`."""
  validation.check_choice("estimator", estimator, ESTIMATORS)
  return ESTIMATORS[estimator](**arguments)(model, inputs)
