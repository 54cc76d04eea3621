"""The multi-scale Real NVP architecture as one bijector (Dinh et al., 2017, §3.6).

```
 x ∈ [0,256)^(H×W×C)  (dequantized pixels)
   │ preprocess, e.g. LogitPreprocess: logit(α + (1-2α)x/256)          §4.1
   ▼
 ┌ scale 1 ──────────────────────────────────────────────────────────────┐
 │ 3 × [AffineCoupling(checkerboard, parity 0,1,0) → FlowBatchNorm]      │  eq. 9, 17
 │ Squeeze  (H, W, C) → (H/2, W/2, 4C)                                   │  fig. 3
 │ 3 × [AffineCoupling(channel, parity 0,1,0) → FlowBatchNorm]           │
 │ factor out: first 2C channels → z(1); last 2C continue                │  eq. 13-16
 └───────────────────────────────────────────────────────────────────────┘
   ▼  ... scales 2 .. L-1 alike ...
 ┌ scale L (last) ───────────────────────────────────────────────────────┐
 │ 4 × [AffineCoupling(checkerboard, parity 0,1,0,1) → FlowBatchNorm]    │
 └───────────────────────────────────────────────────────────────────────┘
   ▼
 z = (z(1), ..., z(L)) ∈ R^D, flat, D = H·W·C
```

Glow steps and the learned split prior are options (Kingma & Dhariwal,
2018): with `actnorm_states` an `ActNorm` comes before every coupling, with
`permutation` 'reverse' or 'conv1x1' a channel permutation after it (and
then every channel coupling keeps parity 0: the permutation does the
mixing), so each coupling becomes Glow's step

```
   [ActNorm] → [Reverse | InvertibleConv1x1] → AffineCoupling → [FlowBatchNorm]
```

and with `split_networks` a `ConditionalGaussianSplit` standardizes each
factored-out half given the kept half just before the factor-out.

`plan(image_shape, num_scales)` lists those steps (`Step`s, data -> latent
order); `MultiScaleRealNVP` composes them from the Keras layers it is given
(one s/t network per coupling, optionally one `BatchNormState` per
coupling) into a TFP bijector whose `forward` maps images `[..., H, W, C]`
to flat latents `[..., D]`. The layers hold all state, so the bijector is
cheap to rebuild per call with a training flag, as `RealNVP.flow()` does.

Example:

```python
import tensorflow as tf
from tfp_realnvp import networks
from tfp_realnvp.bijectors import real_nvp_flow

shape = (8, 8, 1)
steps = real_nvp_flow.plan(shape, num_scales=2)
nets = []
for step in steps:
  if step.kind == "coupling":
    net = networks.CouplingResNet(step.out_channels, num_filters=8,
                                  num_blocks=1)
    net.build((None,) + step.shape[:2] + (step.in_channels,))
    nets.append(net)
flow = real_nvp_flow.MultiScaleRealNVP(shape, num_scales=2,
                                       coupling_networks=nets)
x = tf.random.normal([4, 8, 8, 1])
z = flow.forward(x)                                   # [4, 64]
ldj = flow.forward_log_det_jacobian(x, event_ndims=3)  # [4]
x_back = flow.inverse(z)
```
"""

import collections

import numpy as np

from tfp_realnvp.bijectors import actnorm
from tfp_realnvp.bijectors import batch_norm
from tfp_realnvp.bijectors import cache
from tfp_realnvp.bijectors import coupling
from tfp_realnvp.bijectors import masks
from tfp_realnvp.bijectors import multiscale
from tfp_realnvp.bijectors import one_pass_chain
from tfp_realnvp.bijectors import permutation as permutation_lib
from tfp_realnvp.bijectors import split_prior
from tfp_realnvp.bijectors import squeeze

COUPLING = "coupling"
SQUEEZE = "squeeze"
FACTOR_OUT = "factor_out"


class Step(collections.namedtuple(
    "Step", ["kind", "scale", "shape", "mask_type", "parity", "index",
             "in_channels", "out_channels"])):
  """One step of the plan.

  Fields: `kind` ('coupling', 'squeeze' or 'factor_out'), `scale` (0 is
  the finest), `shape` (event shape `(H, W, C)` entering the step); for a
  coupling also `mask_type`, `parity`, `index` (its s/t network's and
  batch-norm state's position in the lists) and the s/t network's
  `in_channels` / `out_channels`.
  """

  @property
  def name(self):
    if self.kind == COUPLING:
      return (f"coupling_{self.index}_s{self.scale}_{self.mask_type}"
              f"{self.parity}")
    return f"{self.kind}_s{self.scale}"


def check_image_shape(image_shape, num_scales, fit=True):
  """`(H, W, C)` as ints; a `ValueError` unless `num_scales` fits it
  (`fit=False`: only the types and signs of both are checked)."""
  try:
    dims = tuple(int(d) for d in image_shape)
  except (TypeError, ValueError):
    raise ValueError(f"image_shape must be (height, width, channels), got "
                     f"{image_shape!r}") from None
  if len(dims) != 3 or min(dims) < 1:
    raise ValueError(f"image_shape must be three positive integers (height, "
                     f"width, channels), got {image_shape!r}")
  if isinstance(num_scales, bool) or not isinstance(
      num_scales, (int, np.integer)) or num_scales < 1:
    raise ValueError(f"num_scales must be an integer >= 1, got "
                     f"{num_scales!r}")
  height, width, _ = dims
  factor = 2 ** (num_scales - 1)
  if not fit:
    return dims
  if height % factor or width % factor:
    raise ValueError(
        f"image height and width must be divisible by 2**(num_scales-1) = "
        f"{factor} (one squeeze per scale but the last); got image_shape "
        f"{dims} with num_scales={num_scales}")
  if height // factor < 2 or width // factor < 2:
    raise ValueError(
        f"the last scale would be {height // factor}x{width // factor} "
        f"pixels; a checkerboard coupling needs at least 2x2. Use fewer "
        f"scales than {num_scales} for image_shape {dims}")
  return dims


def plan(image_shape, num_scales, checkerboard="masked", permutation="none"):
  """The steps of the multi-scale architecture, data -> latent order.

  With a `permutation` other than 'none' every channel coupling has parity
  0 (Glow: the permutation before each coupling mixes the halves; with
  'reverse', alternating parities would undo it)."""
  shape = check_image_shape(image_shape, num_scales)
  if permutation not in permutation_lib.PERMUTATIONS:
    raise ValueError(f"permutation must be one of "
                     f"{permutation_lib.PERMUTATIONS}, got {permutation!r}")
  fixed_channel_parity = permutation != permutation_lib.NONE
  steps = []

  def add_coupling(scale, mask_type, parity, shape):
    mask = masks.make_mask(mask_type, parity, checkerboard)
    index = sum(s.kind == COUPLING for s in steps)
    steps.append(Step(COUPLING, scale, shape, mask_type, parity, index,
                      mask.conditioner_input_channels(shape[2], shape[:2]),
                      mask.conditioner_output_channels(shape[2], shape[:2])))

  for scale in range(num_scales):
    last = scale == num_scales - 1
    for k in range(4 if last else 3):
      add_coupling(scale, masks.CHECKERBOARD, k % 2, shape)
    if last:
      break
    steps.append(Step(SQUEEZE, scale, shape, None, None, None, None, None))
    shape = squeeze.squeeze_event_shape(shape)
    for k in range(3):
      add_coupling(scale, masks.CHANNEL, 0 if fixed_channel_parity else k % 2,
                   shape)
    steps.append(Step(FACTOR_OUT, scale, shape, None, None, None, None,
                      None))
    shape = (shape[0], shape[1], shape[2] - shape[2] // 2)
  return steps


def latent_shapes(steps):
  """Per-scale latent shapes, first factored-out scale first."""
  shapes = [(s.shape[0], s.shape[1], s.shape[2] // 2) for s in steps
            if s.kind == FACTOR_OUT]
  last = steps[-1]
  return tuple(shapes) + (tuple(last.shape),)


class MultiScaleRealNVP(one_pass_chain.OnePassChain):
  """Real NVP's multi-scale flow, `forward`: images -> flat latents.

  Args:
    image_shape: `(H, W, C)`; H and W divisible by `2**(num_scales-1)`, the
      last scale at least 2×2.
    num_scales: number of scales (`1`: one "last scale" only).
    coupling_networks: one built s/t network per coupling of
      `plan(image_shape, num_scales)`, in plan order (`Step.in_channels` in,
      `Step.out_channels` of `s` and of `t` out).
    batch_norm_states: `None`, or one built `BatchNormState` per
      coupling: a `FlowBatchNorm` bijector follows every coupling.
    preprocess: `None` or a bijector applied first (on the pixels), e.g.
      `LogitPreprocess`.
    actnorm_states: `None`, or one built `ActNormState` per coupling: an
      `ActNorm` before every coupling.
    permutation: 'none', 'reverse' or 'conv1x1' (`permutation.PERMUTATIONS`),
      a channel permutation before every coupling (after the actnorm).
    conv1x1_states: with 'conv1x1', one built `Conv1x1State` per coupling.
    split_networks: `None`, or one built `SplitPriorNet` per factor-out
      (Glow's split prior: `ConditionalGaussianSplit` before it).
    additive: NICE couplings (no scale): the same as `coupling='additive'`.
    checkerboard: the checkerboard strategy (`masks.CHECKERBOARDS`).
    training: Keras mode of every layer (batch statistics and
      moving-average updates when True).
    coupling: the couplings' elementwise transform, a key of
      `coupling.COUPLINGS`; `None`: 'additive' if `additive` else 'affine'.
    name: bijector name.
  """

  def __init__(self, image_shape, num_scales, coupling_networks,
               batch_norm_states=None, preprocess=None, additive=False,
               checkerboard="masked", training=False, actnorm_states=None,
               permutation="none", conv1x1_states=None, split_networks=None,
               coupling=None, validate_args=False, name="real_nvp_flow"):
    parameters = dict(locals())
    self._steps = plan(image_shape, num_scales, checkerboard, permutation)
    n_couplings = sum(s.kind == COUPLING for s in self._steps)
    n_splits = sum(s.kind == FACTOR_OUT for s in self._steps)
    if len(coupling_networks) != n_couplings:
      raise ValueError(f"image_shape {tuple(image_shape)} with num_scales="
                       f"{num_scales} has {n_couplings} couplings; got "
                       f"{len(coupling_networks)} coupling_networks")
    for what, given in (("batch_norm_states", batch_norm_states),
                        ("actnorm_states", actnorm_states),
                        ("conv1x1_states", conv1x1_states)):
      if given and len(given) != n_couplings:
        raise ValueError(f"{what} needs one state per coupling "
                         f"({n_couplings}), got {len(given)}")
    if (permutation == permutation_lib.CONV1X1) != bool(conv1x1_states):
      raise ValueError("permutation='conv1x1' needs conv1x1_states (one "
                       "Conv1x1State per coupling), and only it takes them")
    if split_networks and len(split_networks) != n_splits:
      raise ValueError(f"split_networks needs one network per factor-out "
                       f"({n_splits}), got {len(split_networks)}")
    self._latent_shapes = latent_shapes(self._steps)
    self._build_args = dict(
        networks=list(coupling_networks),
        states=list(batch_norm_states or []),
        coupling=coupling or ("additive" if additive else "affine"),
        checkerboard=checkerboard, training=bool(training),
        actnorm_states=list(actnorm_states or []), permutation=permutation,
        conv1x1_states=list(conv1x1_states or []),
        split_networks=list(split_networks or []))
    # The same bijectors once more, flat in data -> latent order, for the
    # one-pass walk (`one_pass_chain`): (kind, bijector or event shape).
    self._path = ([] if preprocess is None else
                  [(one_pass_chain.ELEMENTWISE, preprocess)])
    bijectors = [self._segment(0)]
    if preprocess is not None:
      bijectors.append(preprocess)
    super().__init__(bijectors, path=self._path, event_shape_in=image_shape,
                     validate_args=validate_args, parameters=parameters,
                     name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict()

  @property
  def steps(self):
    """The `Step`s of the plan, data -> latent order."""
    return list(self._steps)

  @property
  def latent_shapes(self):
    """Per-scale latent shapes `(h, w, c)`, finest first."""
    return self._latent_shapes

  def _segment(self, start):
    """The bijector of the steps from `start` on, ending in a flat latent."""
    args = self._build_args
    parts = []  # data -> latent order
    for i in range(start, len(self._steps)):
      step = self._steps[i]

      def add(kind, bijector):
        parts.append(bijector)
        self._path.append((kind, bijector))

      if step.kind == COUPLING:
        if args["actnorm_states"]:
          add(one_pass_chain.ONE_PASS, actnorm.ActNorm(
              args["actnorm_states"][step.index],
              name=f"actnorm_{step.index}_s{step.scale}"))
        if args["permutation"] == permutation_lib.REVERSE:
          add(one_pass_chain.PERMUTATION, permutation_lib.reverse_channels(
              step.shape[2], name=f"reverse_{step.index}_s{step.scale}"))
        elif args["permutation"] == permutation_lib.CONV1X1:
          add(one_pass_chain.ONE_PASS, permutation_lib.InvertibleConv1x1(
              args["conv1x1_states"][step.index],
              name=f"conv1x1_{step.index}_s{step.scale}"))
        add(one_pass_chain.ONE_PASS, coupling.AffineCoupling(
            args["networks"][step.index], mask_type=step.mask_type,
            parity=step.parity, coupling=args["coupling"],
            training=args["training"], checkerboard=args["checkerboard"],
            name=step.name))
        if args["states"]:
          add(one_pass_chain.ONE_PASS, batch_norm.FlowBatchNorm(
              args["states"][step.index], training=args["training"],
              name=f"batch_norm_{step.index}_s{step.scale}"))
      elif step.kind == SQUEEZE:
        add(one_pass_chain.PERMUTATION, squeeze.Squeeze(step.shape, name=step.name))
      else:  # factor out: half leaves, the rest is the next scales' segment
        if args["split_networks"]:
          add(one_pass_chain.ONE_PASS, split_prior.ConditionalGaussianSplit(
              args["split_networks"][step.scale], training=args["training"],
              name=f"split_prior_s{step.scale}"))
        self._path.append((one_pass_chain.SPLIT, step.shape))
        parts.append(multiscale.factor_out(step.shape, self._segment(i + 1),
                                           name=step.name))
        return cache.Chain(parts[::-1], name=f"scale_{self._steps[start].scale}")
    self._path.append((one_pass_chain.FLATTEN, self._latent_shapes[-1]))
    parts.append(multiscale.flatten(self._latent_shapes[-1]))
    return cache.Chain(parts[::-1], name=f"scale_{self._steps[start].scale}")
