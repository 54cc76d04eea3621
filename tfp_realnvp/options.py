"""The options of `RealNVP`: the one place that checks and resolves them.

`resolve(**constructor_arguments)` checks every option in the constructor's
argument order (so the first wrong option is the one named) and returns the
resolved values the model keeps as attributes: the per-scale widths, the
`PRIORS` key of `prior=`, the config form of `num_filters`, the event size.

Every choice-valued option is a key of a table, and a new choice is one
class plus one entry there; nothing here or in the model branches on it:

| option          | table                                     |
|-----------------|-------------------------------------------|
| `coupling`      | `bijectors.coupling.COUPLINGS`            |
| `checkerboard`  | `bijectors.masks.CHECKERBOARDS`           |
| `permutation`   | `bijectors.permutation.PERMUTATIONS`      |
| `prior`         | `prior.PRIORS` (+ 'gaussian', resolved)   |
| `dequantizer`   | `dequantization.DEQUANTIZERS`             |
| estimators      | `estimators.ESTIMATORS` (not an option)   |
| scores          | `scores.SCORES` (not an option)           |
"""

import keras
import numpy as np

from tfp_realnvp import dequantization
from tfp_realnvp import networks
from tfp_realnvp import prior as prior_lib
from tfp_realnvp import validation
from tfp_realnvp.bijectors import coupling
from tfp_realnvp.bijectors import masks
from tfp_realnvp.bijectors import permutation as permutation_lib
from tfp_realnvp.bijectors import real_nvp_flow

MIXED_PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")

# The options' documentation: the `Args` of `RealNVP`'s docstring.
ARGS_DOC = """
  Args:
    image_shape: `(H, W, C)`; H, W divisible by `2**(num_scales - 1)`, the
      last scale at least 2×2 pixels.
    num_scales: number of scales; `1` is a single "last scale".
    num_res_blocks: residual blocks in every s/t network.
    num_filters: an int (finest scale's width, doubled per scale) or one
      width per scale, finest first, e.g. `(16, 32, 56)`. Prefer multiples
      of 8 (oneDNN's and cuDNN's blocked layouts).
    coupling: a key of `bijectors.coupling.COUPLINGS`: 'affine' (Real NVP),
      'additive' (NICE, s ≡ 0) or 'spline' (Neural Spline Flows: a
      rational-quadratic spline per element, `spline_bins`, `spline_bound`).
    use_batch_norm: batch norm in the s/t networks and a `FlowBatchNorm`
      bijector after every coupling (§3.7).
    num_classes: `None`, or the classes of a class-conditional model.
    alpha: the logit preprocessing α (0.05 in the authors' code).
    bn_momentum, bn_epsilon: of every batch norm (paper code: ε = 1e-4).
    use_weight_norm: weight-normalised convolutions in the s/t networks.
    log_scale_init: initial bound on |s| per element (`s = scale·tanh(raw)`).
    l2_reg: L2 penalty on the s/t network weights (paper: 5e-5).
    validate_inputs: check every input (`tfp_realnvp.validation`; under
      `jit_compile` in the input pipeline). `False`: static checks only.
    synchronized_batch_norm: batch statistics of the global batch under a
      multi-replica `tf.distribute` strategy (same objective on 1 or N).
    mixed_precision: `None` (float32, or a mixed global policy),
      `'mixed_float16'` or `'mixed_bfloat16'`: s/t networks in half
      precision; bijector arithmetic, log-dets, statistics, prior and loss
      in float32. `'mixed_float16'` adds a `LossScaleOptimizer`.
    checkerboard: 'masked' (full resolution on `b⊙x`) or 'squeezed' (same
      partition on `space_to_depth(x, 2)`, s/t networks at half resolution;
      odd sizes stay masked), a key of `bijectors.masks.CHECKERBOARDS`.
    prior: key of `prior.PRIORS`; `None`: 'class_conditional' when
      `num_classes` is set, else 'standard_normal'.
    dequantizer: `None` (inputs are dequantized pixels) or a key of
      `dequantization.DEQUANTIZERS`: `call`/`fit`/`evaluate` take integer
      levels 0..255 and `call` returns `log p(k + u) − log q(u | k)`.
      'variational' (Flow++) reports that bound as
      `variational_bits_per_dim` instead of `bits_per_dim`
      (`bits_per_dim_name`).
    ema_decay: `None`, or the decay `d ∈ (0, 1)` of an exponential moving
      average (Polyak averaging) of every trainable weight, kept during
      `fit` (`ema ← d_t·ema + (1 − d_t)·w` after every step, with
      `d_t = min(d, (1 + t)/(10 + t))` so early averages are not dominated
      by the initial weights). The averages live in a second, non-trainable
      copy of every layer (saved with the model, restored on resume); the
      moving batch-norm statistics are copied to it, so it always uses the
      statistics training has accumulated. Inference (`evaluate`, `sample`,
      `log_prob`/`encode`/`decode` with `training=False`, the export) uses
      the averages while `use_ema` is True (the default); set
      `model.use_ema = False` for the raw weights.
    bn_lag: `λ ∈ [0, 1)`: the flow's batch-norm steps normalize with
      `λ·(running average) + (1 − λ)·(batch statistic)` in training, the
      paper's appendix E (`bijectors.batch_norm`); 0 = batch statistics.
    actnorm: Glow's actnorm before every coupling (`bijectors.actnorm`),
      initialised from the first batch `fit` sees (or by
      `initialize_actnorm(batch)`); saved and restored.
    permutation: 'none' (Real NVP), 'reverse' or 'conv1x1' (Glow's
      invertible 1×1 convolution in LU form): a channel permutation before
      every coupling (`bijectors.permutation`).
    made_hidden_units: hidden widths of the MADE of `prior='made'`.
    spline_bins: `K >= 2`, the bins of every spline with
      `coupling='spline'` (its conditioner head gives `3K − 1` values per
      transformed element).
    spline_bound: `B > 0`: each spline acts on `[−B, B]` and is the
      identity outside (3.0 covers the logit range of α = 0.05).


  Priors (`prior=`): 'gaussian' (the default: 'standard_normal', or
  'class_conditional' with `num_classes`), 'split' (Glow's learned split
  prior) or 'made' (an autoregressive prior on the coarsest latent); see
  `tfp_realnvp.prior`. `encode` returns the standard-normal latent of the
  whole model for every prior, so `decode(ε)`, `ε ~ N(0, I)`, is a sample.
  """
COUPLING_TYPES = tuple(coupling.COUPLINGS)
PERMUTATIONS = permutation_lib.PERMUTATIONS

# Every option of `RealNVP.__init__` with its default, in argument order
# (also the keys of `get_config`, with `name` and `trainable`).
DEFAULTS = dict(
    num_scales=3, num_res_blocks=4, num_filters=32, coupling="affine",
    use_batch_norm=True, num_classes=None, alpha=0.05, bn_momentum=0.9,
    bn_epsilon=1e-4, use_weight_norm=True, log_scale_init=1.0, l2_reg=5e-5,
    validate_inputs=True, synchronized_batch_norm=True, mixed_precision=None,
    checkerboard="masked", prior=None, dequantizer=None, ema_decay=None,
    bn_lag=0.0, actnorm=False, permutation="none",
    made_hidden_units=(512, 512), spline_bins=8, spline_bound=3.0)


def mixed_precision_of_global_policy(mixed_precision):
  """`mixed_precision`, or the global Keras policy when that is mixed."""
  if mixed_precision is None and (keras.config.dtype_policy().name in
                                  MIXED_PRECISION_POLICIES):
    return keras.config.dtype_policy().name
  return mixed_precision


def _check_structure(o):
  """The checks of the architecture options, in argument order."""
  if o["mixed_precision"] not in (None,) + MIXED_PRECISION_POLICIES:
    raise ValueError(f"mixed_precision must be None or one of "
                     f"{MIXED_PRECISION_POLICIES}, got "
                     f"{o['mixed_precision']!r}")
  real_nvp_flow.check_image_shape(o["image_shape"], o["num_scales"],
                                  fit=False)
  validation.check_positive_int("num_res_blocks", o["num_res_blocks"],
                                allow_zero=True)
  validation.check_choice("coupling", o["coupling"], coupling.COUPLINGS)
  num_classes = o["num_classes"]
  if num_classes is not None:
    validation.check_positive_int("num_classes", num_classes)
    if num_classes < 2:
      raise ValueError(f"num_classes must be >= 2 for a class-conditional "
                       f"model (or None), got {num_classes}")
  if not 0.0 < o["alpha"] < 0.5:
    raise ValueError(f"alpha must be in (0, 0.5), got {o['alpha']}")
  if o["l2_reg"] < 0:
    raise ValueError(f"l2_reg must be >= 0, got {o['l2_reg']}")
  widths = networks.scale_filters(o["num_filters"], o["num_scales"])
  image_shape = real_nvp_flow.check_image_shape(o["image_shape"],
                                                o["num_scales"])
  validation.check_choice("checkerboard", o["checkerboard"],
                          masks.CHECKERBOARDS)
  return image_shape, widths


def _check_prior(name, num_classes):
  validation.check_choice("prior", name, (None, prior_lib.GAUSSIAN) +
                          tuple(prior_lib.PRIORS))
  name = prior_lib.resolve(name, num_classes)
  conditional = prior_lib.PRIORS[name].conditional
  if conditional is not None and conditional != bool(num_classes):
    raise ValueError(
        f"prior={name!r} is {'' if conditional else 'un'}conditional but "
        f"num_classes={num_classes}: a conditional prior needs num_classes "
        f">= 2, an unconditional one num_classes=None")
  return name


def _check_recipe(o):
  """The checks of the training-recipe options."""
  ema_decay, bn_lag = o["ema_decay"], o["bn_lag"]
  if ema_decay is not None and (isinstance(ema_decay, bool) or
                                not 0.0 < ema_decay < 1.0):
    raise ValueError(f"ema_decay must be None or in (0, 1), got "
                     f"{ema_decay!r}")
  if isinstance(bn_lag, bool) or not 0.0 <= bn_lag < 1.0:
    raise ValueError(f"bn_lag must be in [0, 1), got {bn_lag!r}")
  validation.check_choice("permutation", o["permutation"], PERMUTATIONS)
  return validation.check_hidden_units("made_hidden_units",
                                       o["made_hidden_units"])


def resolve(image_shape, **given):
  """Checks `RealNVP`'s options; returns the attributes the model keeps.

  `given`: any of `DEFAULTS`' keys (others are a `TypeError`). The result
  holds every option (typed: ints, floats, bools, the config form of
  `num_filters`), plus `prior_name`, `dequantizer_name`, `scale_filters`
  (per-scale widths) and `event_size`.
  """
  unknown = sorted(set(given) - set(DEFAULTS))
  if unknown:
    raise TypeError(f"unknown RealNVP option(s) {unknown}; expected some of "
                    f"{sorted(DEFAULTS)}")
  o = dict(DEFAULTS, **given, image_shape=image_shape)
  o["mixed_precision"] = mixed_precision_of_global_policy(
      o["mixed_precision"])
  image_shape, widths = _check_structure(o)
  prior = _check_prior(o["prior"], o["num_classes"])
  validation.check_choice("dequantizer", o["dequantizer"],
                          (None,) + tuple(dequantization.DEQUANTIZERS))
  made_hidden_units = _check_recipe(o)
  num_filters = o["num_filters"]
  ema_decay, num_classes = o["ema_decay"], o["num_classes"]
  return dict(
      image_shape=image_shape, num_scales=int(o["num_scales"]),
      num_res_blocks=int(o["num_res_blocks"]),
      # As given (config form): one int, or the list of per-scale widths.
      num_filters=(int(num_filters) if isinstance(
          num_filters, (int, np.integer)) else list(widths)),
      scale_filters=widths, coupling=o["coupling"],
      checkerboard=o["checkerboard"],
      use_batch_norm=bool(o["use_batch_norm"]), alpha=float(o["alpha"]),
      num_classes=None if num_classes is None else int(num_classes),
      l2_reg=float(o["l2_reg"]), bn_momentum=float(o["bn_momentum"]),
      bn_epsilon=float(o["bn_epsilon"]),
      use_weight_norm=bool(o["use_weight_norm"]),
      synchronized_batch_norm=bool(o["synchronized_batch_norm"]),
      log_scale_init=float(o["log_scale_init"]), prior_name=prior,
      validate_inputs=bool(o["validate_inputs"]),
      dequantizer_name=o["dequantizer"],
      mixed_precision=o["mixed_precision"], bn_lag=float(o["bn_lag"]),
      ema_decay=None if ema_decay is None else float(ema_decay),
      actnorm=bool(o["actnorm"]), permutation=o["permutation"],
      made_hidden_units=made_hidden_units,
      spline_bins=o["spline_bins"], spline_bound=o["spline_bound"],
      coupling_transform=coupling.make_transform(
          o["coupling"], **{k: o[k] for k in coupling.TRANSFORM_OPTIONS}),
      event_size=int(np.prod(image_shape)))


def from_config(config):
  """The constructor arguments of a `get_config()`; a config saved before
  `checkerboard` existed describes masked checkerboard couplings."""
  config = dict(config)
  config.setdefault("checkerboard", "masked")
  return config


def config_of(model):
  """`get_config()` of a model built from these options."""
  keys = ["name", "trainable"] + [k for k in DEFAULTS if k not in
                                  ("prior", "dequantizer")]
  return dict({k: getattr(model, k) for k in keys},
              image_shape=list(model.image_shape), prior=model.prior_name,
              dequantizer=model.dequantizer_name)
