"""`tfp_realnvp.options` and `tfp_realnvp.flow_layers` on their own: what the
options resolve to, the order of their checks, and the layers they build."""

import keras
import numpy as np
import pytest

from tfp_realnvp import flow_layers
from tfp_realnvp import options
from tfp_realnvp.bijectors import real_nvp_flow


def test_resolve_types_every_option_and_derives_the_rest():
  o = options.resolve((8, 8, 1), num_scales=2, num_filters=np.int64(8),
                      num_classes=3, alpha=np.float32(0.25), bn_lag=0,
                      made_hidden_units=[16])
  assert set(options.DEFAULTS) - {"prior", "dequantizer"} < set(o)
  assert o["image_shape"] == (8, 8, 1) and o["event_size"] == 64
  assert o["num_filters"] == 8 and type(o["num_filters"]) is int
  assert o["scale_filters"] == (8, 16)
  assert o["prior_name"] == "class_conditional"  # 'gaussian' with classes
  assert o["dequantizer_name"] is None
  assert type(o["alpha"]) is float and type(o["bn_lag"]) is float
  assert list(o["made_hidden_units"]) == [16]
  widths = options.resolve((8, 8, 1), num_scales=2, num_filters=(4, 12))
  assert widths["num_filters"] == [4, 12] and widths["scale_filters"] == (
      4, 12)


def test_the_first_wrong_option_in_argument_order_is_named():
  # Both wrong: num_res_blocks comes before coupling in the signature.
  with pytest.raises(ValueError, match="num_res_blocks"):
    options.resolve((8, 8, 1), num_res_blocks=-1, coupling="cubic")
  with pytest.raises(ValueError, match="coupling must be one of"):
    options.resolve((8, 8, 1), coupling="cubic", ema_decay=2.0)
  with pytest.raises(ValueError, match="ema_decay must be"):
    options.resolve((8, 8, 1), ema_decay=2.0, permutation="shuffle")
  with pytest.raises(ValueError, match="permutation must be one of"):
    options.resolve((8, 8, 1), permutation="shuffle")
  with pytest.raises(TypeError, match=r"unknown RealNVP option\(s\) "
                     r"\['num_layers'\]"):
    options.resolve((8, 8, 1), num_layers=3)


def test_the_global_mixed_policy_is_taken_up():
  previous = keras.config.dtype_policy()
  try:
    keras.config.set_dtype_policy("mixed_bfloat16")
    assert options.resolve((8, 8, 1))["mixed_precision"] == "mixed_bfloat16"
  finally:
    keras.config.set_dtype_policy(previous)
  assert options.resolve((8, 8, 1))["mixed_precision"] is None


def test_from_config_defaults_the_checkerboard_of_old_configs():
  assert options.from_config({"image_shape": [8, 8, 1]})["checkerboard"] == (
      "masked")
  assert options.from_config({"checkerboard": "squeezed"})["checkerboard"] == (
      "squeezed")


class _Options:
  """What `flow_layers.build` reads: resolved options + latent shapes."""

  def __init__(self, image_shape, **given):
    self.__dict__.update(options.resolve(image_shape, **given))
    self.steps = real_nvp_flow.plan(self.image_shape, self.num_scales,
                                    self.checkerboard, self.permutation)
    self.latent_shapes = real_nvp_flow.latent_shapes(self.steps)


def test_build_makes_one_layer_per_coupling_and_option():
  o = _Options((4, 4, 2), num_scales=2, num_res_blocks=1, num_filters=8,
               actnorm=True, permutation="conv1x1", prior="split",
               dequantizer="uniform")
  layers = flow_layers.build(o, o.steps)
  couplings = sum(s.kind == "coupling" for s in o.steps)
  for field in ("networks", "batch_norm_states", "actnorm_states",
                "conv1x1_states"):
    assert len(getattr(layers, field)) == couplings, field
  assert [net.name for net in layers.networks] == [
      f"st_net_{i}" for i in range(couplings)]
  assert layers.prior.name == "prior" and len(
      layers.prior.split_networks) == 1
  assert layers.dequantizer.name == "dequantizer"
  assert all(layer.built for layer in layers.all())
  # The EMA copy: prefixed names, and no L2 penalty (it is not trained).
  ema = flow_layers.build(o, o.steps, prefix="ema_")
  assert ema.networks[0].name == "ema_st_net_0" and ema.prior.name == (
      "ema_prior")
  assert layers.networks[0].l2 > 0 and ema.networks[0].l2 == 0


def test_optional_layer_lists_are_absent_when_unused():
  o = _Options((4, 4, 1), num_scales=1, num_res_blocks=1, num_filters=8,
               use_batch_norm=False)
  layers = flow_layers.build(o, o.steps)
  assert layers.batch_norm_states == [] and layers.actnorm_states == []
  holder = type("Holder", (), {})()
  flow_layers.attach(holder, layers)
  # `.keras` weight paths of files without Glow steps stay as they were.
  assert not hasattr(holder, "actnorm_states")
  assert not hasattr(holder, "conv1x1_states")
  assert flow_layers.of(holder).networks == layers.networks
  assert flow_layers.of(holder, ema=True).networks == []
