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
import tensorflow as tf

from tfp_realnvp.bijectors import actnorm
from tfp_realnvp.bijectors import batch_norm
from tfp_realnvp.bijectors import cache
from tfp_realnvp.bijectors import coupling
from tfp_realnvp.bijectors import masks
from tfp_realnvp.bijectors import multiscale
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


class MultiScaleRealNVP(cache.Chain):
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
    self._image_shape = tuple(int(d) for d in image_shape)
    # The same bijectors once more, flat in data -> latent order, for the
    # one-pass walk (`_one_pass`): (kind, bijector or event shape).
    self._path = [] if preprocess is None else [(_ELEMENTWISE, preprocess)]
    bijectors = [self._segment(0)]
    if preprocess is not None:
      bijectors.append(preprocess)
    super().__init__(bijectors, validate_args=validate_args,
                     parameters=parameters, name=name)

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
          add(_ONE_PASS, actnorm.ActNorm(
              args["actnorm_states"][step.index],
              name=f"actnorm_{step.index}_s{step.scale}"))
        if args["permutation"] == permutation_lib.REVERSE:
          add(_PERMUTATION, permutation_lib.reverse_channels(
              step.shape[2], name=f"reverse_{step.index}_s{step.scale}"))
        elif args["permutation"] == permutation_lib.CONV1X1:
          add(_ONE_PASS, permutation_lib.InvertibleConv1x1(
              args["conv1x1_states"][step.index],
              name=f"conv1x1_{step.index}_s{step.scale}"))
        add(_ONE_PASS, coupling.AffineCoupling(
            args["networks"][step.index], mask_type=step.mask_type,
            parity=step.parity, coupling=args["coupling"],
            training=args["training"], checkerboard=args["checkerboard"],
            name=step.name))
        if args["states"]:
          add(_ONE_PASS, batch_norm.FlowBatchNorm(
              args["states"][step.index], training=args["training"],
              name=f"batch_norm_{step.index}_s{step.scale}"))
      elif step.kind == SQUEEZE:
        add(_PERMUTATION, squeeze.Squeeze(step.shape, name=step.name))
      else:  # factor out: half leaves, the rest is the next scales' segment
        if args["split_networks"]:
          add(_ONE_PASS, split_prior.ConditionalGaussianSplit(
              args["split_networks"][step.scale], training=args["training"],
              name=f"split_prior_s{step.scale}"))
        self._path.append((FACTOR_OUT, step.shape))
        parts.append(multiscale.factor_out(step.shape, self._segment(i + 1),
                                           name=step.name))
        return cache.Chain(parts[::-1], name=f"scale_{self._steps[start].scale}")
    self._path.append((_FLATTEN, self._latent_shapes[-1]))
    parts.append(multiscale.flatten(self._latent_shapes[-1]))
    return cache.Chain(parts[::-1], name=f"scale_{self._steps[start].scale}")

  # The one-pass walk. `tfb.Chain` computes a log-det by walking its parts
  # once more and asking each for its own (with TFP's event-rank and shape
  # bookkeeping per part and per nested composite: ~15% of the ops of a
  # traced `log_prob`, more of its gradient) and each part's value through
  # TFP's per-call machinery. The flow knows its parts and their event
  # ranks, so for the calls `TransformedDistribution` and `RealNVP` make
  # (no kwargs, minimal event rank, no `validate_args`) it walks them once,
  # value and log-det together, and keeps both for the evaluation in
  # `cache.memo()` (so `inverse` then `inverse_log_det_jacobian` on the same
  # tensor, or `forward` then a log-det of its output, is one pass). The
  # Chain above stays the structure (`bijectors`) and serves every other
  # call; tests/test_structure.py checks the two agree.

  def _one_pass(self, value, forward):
    """`(output, log-det of this direction)` of `value`, per event."""
    memo = cache.memo()
    key = (id(self), forward, id(value))
    hit = memo.get(key)
    if hit is not None and hit[0] is value:
      return hit[1], hit[2]
    walk = self._pass_forward if forward else self._pass_inverse
    out, ldj = walk(value)
    memo[key] = (value, out, ldj)
    memo[(id(self), not forward, id(out))] = (out, value, -ldj)
    return out, ldj

  def _pass_forward(self, x):
    batch = tf.shape(x)[:-3]
    latents, ildj, h = [], [], x
    for kind, part in self._path:
      if kind == _ONE_PASS:
        with tf.name_scope(part.name):  # (named for profiles; no op)
          h, fldj = part._augmented_forward(h)  # pylint: disable=protected-access
        ildj.append(-fldj)
      elif kind == _PERMUTATION:
        h = part.forward(h)
      elif kind == _ELEMENTWISE:
        h = part.forward(h)
        ildj.append(part.inverse_log_det_jacobian(h, event_ndims=3))
      elif kind == FACTOR_OUT:
        half = part[2] // 2
        out, h = tf.split(h, [half, part[2] - half], axis=-1)
        latents.append(_flat(out, batch, part[0] * part[1] * half))
      else:  # _FLATTEN
        latents.append(_flat(h, batch, int(np.prod(part))))
    return tf.concat(latents, axis=-1), -_sum(ildj[::-1], x.dtype, batch)

  def _pass_inverse(self, z):
    batch = tf.shape(z)[:-1]
    sizes = [int(np.prod(s)) for s in self._latent_shapes]
    latents = tf.split(z, sizes, axis=-1)
    shapes = list(self._latent_shapes)
    ildj, h = [], None
    for kind, part in reversed(self._path):
      if kind == _ONE_PASS:
        with tf.name_scope(part.name):
          h, part_ildj = part._augmented_inverse(h)  # pylint: disable=protected-access
        ildj.append(part_ildj)
      elif kind == _PERMUTATION:
        h = part.inverse(h)
      elif kind == _ELEMENTWISE:
        ildj.append(part.inverse_log_det_jacobian(h, event_ndims=3))
        h = part.inverse(h)
      else:  # a latent part enters: the last scale's, then factored-out ones
        shape = shapes.pop()
        part_h = tf.reshape(latents.pop(),
                            tf.concat([batch, list(shape)], axis=0))
        h = part_h if kind == _FLATTEN else tf.concat([part_h, h], axis=-1)
    return h, _sum(ildj, z.dtype, batch)

  def _takes_one_pass(self, kwargs, event_ndims=None, min_event_ndims=None):
    if kwargs or self.validate_args:
      return False
    if event_ndims is None:
      return True
    return tf.get_static_value(event_ndims) == min_event_ndims

  def _call_forward(self, x, name, **kwargs):
    if not self._takes_one_pass(kwargs):
      return super()._call_forward(x, name, **kwargs)
    with cache.evaluation(), self._name_and_control_scope(name):
      return self._one_pass(tf.convert_to_tensor(x, name="x"), True)[0]

  def _call_inverse(self, y, name, **kwargs):
    if not self._takes_one_pass(kwargs):
      return super()._call_inverse(y, name, **kwargs)
    with cache.evaluation(), self._name_and_control_scope(name):
      return self._one_pass(tf.convert_to_tensor(y, name="y"), False)[0]

  def _call_forward_log_det_jacobian(self, x, event_ndims, name, **kwargs):
    if not self._takes_one_pass(kwargs, event_ndims, 3):
      return super()._call_forward_log_det_jacobian(x, event_ndims, name,
                                                    **kwargs)
    with cache.evaluation(), self._name_and_control_scope(name):
      return self._one_pass(tf.convert_to_tensor(x, name="x"), True)[1]

  def _call_inverse_log_det_jacobian(self, y, event_ndims, name, **kwargs):
    if not self._takes_one_pass(kwargs, event_ndims, 1):
      return super()._call_inverse_log_det_jacobian(y, event_ndims, name,
                                                    **kwargs)
    with cache.evaluation(), self._name_and_control_scope(name):
      return self._one_pass(tf.convert_to_tensor(y, name="y"), False)[1]

  def _forward_event_shape_tensor(self, input_shape, **kwargs):
    return tf.constant([int(np.prod(self._image_shape))], tf.int32)

  def _inverse_event_shape_tensor(self, output_shape, **kwargs):
    return tf.constant(self._image_shape, tf.int32)


_ONE_PASS = "one_pass"        # ours: `_augmented_forward/_inverse`
_PERMUTATION = "permutation"  # volume preserving: log-det 0
_ELEMENTWISE = "elementwise"  # any bijector on the pixels (event rank 3)
_FLATTEN = "flatten"


def _flat(h, batch, size):
  """`[*batch, h, w, c]` -> `[*batch, size]`."""
  return tf.reshape(h, tf.concat([batch, [size]], axis=0))


def _sum(ildjs, dtype, batch):
  """The inverse log-dets of the parts, latent -> data order, added in that
  order: `tfb.Chain`'s order, so a flow keeps the bits of its log-density
  (an `AddN` of up to 8 terms adds left to right; of more, not). Scalar
  terms (actnorm's, the 1×1 convolution's) are broadcast to the batch."""
  terms = [d if d.shape.rank else tf.broadcast_to(d, batch) for d in ildjs]
  if not terms:
    return tf.zeros(batch, dtype)
  total, rest = terms[0], terms[1:]
  while rest:
    total = tf.add_n([total] + rest[:7]) if rest[1:] else total + rest[0]
    rest = rest[7:]
  return total
