"""The Keras layers of a `RealNVP`: built from its options, owned by it.

One copy of the model's layers is a `FlowLayers`: per coupling of the plan
(`bijectors.real_nvp_flow.plan`) its s/t network and, when the options ask
for them, its batch-norm, actnorm and 1×1-convolution states; then the
prior and the dequantizer. `build` makes one copy, built (all weights exist
afterwards); `attach` makes a copy the model's attributes (so Keras tracks
it); `of` reads a copy back. A model with `ema_decay` owns a second copy
with the attributes prefixed `ema_` (`tfp_realnvp.ema`).

The attribute names are the `.keras` weight paths, unchanged since the
first release; the actnorm and 1×1-convolution lists exist only when their
option is on (so files without them keep their paths).
"""

import collections

from tfp_realnvp import dequantization
from tfp_realnvp import networks
from tfp_realnvp import prior as prior_lib
from tfp_realnvp.bijectors import actnorm as actnorm_lib
from tfp_realnvp.bijectors import batch_norm
from tfp_realnvp.bijectors import permutation as permutation_lib
from tfp_realnvp.bijectors import real_nvp_flow


class FlowLayers(collections.namedtuple(
    "FlowLayers", ["networks", "batch_norm_states", "actnorm_states",
                   "conv1x1_states", "prior", "dequantizer"])):
  """The Keras layers of one copy of the model (raw or EMA)."""

  def all(self):
    """Every layer, in a fixed order (`None`s left out)."""
    return [layer for layer in (
        list(self.networks) + list(self.batch_norm_states) +
        list(self.actnorm_states) + list(self.conv1x1_states) +
        [self.prior, self.dequantizer]) if layer is not None]


# The model attribute of each field (the EMA copy's are prefixed "ema_").
ATTRIBUTES = FlowLayers("coupling_networks", "batch_norm_states",
                        "actnorm_states", "conv1x1_states", "prior",
                        "dequantizer")
_ONLY_WHEN_USED = ("actnorm_states", "conv1x1_states")


def _coupling_layers(o, step, prefix):
  """The s/t network and the optional states of one coupling `step`."""
  transform = o.coupling_transform
  net = networks.CouplingResNet.for_step(
      step, o.scale_filters[step.scale], o.num_res_blocks,
      params_per_element=transform.params_per_element,
      affine=transform.uses_log_scale,
      use_batch_norm=o.use_batch_norm, use_weight_norm=o.use_weight_norm,
      bn_momentum=o.bn_momentum, bn_epsilon=o.bn_epsilon,
      log_scale_init=o.log_scale_init, l2=0.0 if prefix else o.l2_reg,
      synchronized_batch_norm=o.synchronized_batch_norm,
      dtype=o.mixed_precision or "float32",
      name=f"{prefix}st_net_{step.index}")
  state = actnorm = conv1x1 = None
  if o.use_batch_norm:
    state = batch_norm.BatchNormState.for_step(
        step, o.bn_momentum, o.bn_epsilon,
        synchronized=o.synchronized_batch_norm, bn_lag=o.bn_lag,
        name=f"{prefix}flow_bn_{step.index}")
  if o.actnorm:
    actnorm = actnorm_lib.ActNormState(dtype="float32",
                                       name=f"{prefix}actnorm_{step.index}")
    actnorm.build((None,) + tuple(step.shape))
  if o.permutation == permutation_lib.CONV1X1:
    conv1x1 = permutation_lib.Conv1x1State(
        dtype="float32", name=f"{prefix}conv1x1_{step.index}")
    conv1x1.build((None,) + tuple(step.shape))
  return net, state, actnorm, conv1x1


def build(o, steps, prefix=""):
  """The built layers of one copy of a model with options `o` (anything
  with `RealNVP`'s option attributes, `scale_filters`, `latent_shapes`,
  `event_size`), for the plan `steps`. `prefix` names the copy ('ema_');
  a prefixed copy has no L2 penalty (it is not trained)."""
  per_coupling = [_coupling_layers(o, step, prefix) for step in steps
                  if step.kind == real_nvp_flow.COUPLING]
  nets, states, actnorms, conv1x1s = (
      [layer for layer in column if layer is not None]
      for column in zip(*per_coupling))
  prior = prior_lib.PRIORS[o.prior_name].from_options(
      o, latent_dim=o.event_size, num_classes=o.num_classes,
      latent_shapes=o.latent_shapes, dtype="float32", name=prefix + "prior")
  prior.build()
  dequantizer = None
  if o.dequantizer_name:
    dequantizer = dequantization.DEQUANTIZERS[o.dequantizer_name](
        dtype="float32", name=prefix + "dequantizer")
    dequantizer.build((None,) + tuple(o.image_shape))
  return FlowLayers(nets, states, actnorms, conv1x1s, prior, dequantizer)


def attach(model, layers, prefix=""):
  """Makes `layers` attributes of `model` (so Keras tracks and saves them)."""
  for name, value in zip(ATTRIBUTES, layers):
    if name in _ONLY_WHEN_USED and not value:
      continue
    setattr(model, prefix + name, value)


def of(model, ema=False):
  """The `FlowLayers` of the raw weights or of the EMA copy of `model`."""
  prefix = "ema_" if ema else ""
  return FlowLayers(*(getattr(model, prefix + name, [])
                      for name in ATTRIBUTES))
