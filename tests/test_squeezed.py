"""checkerboard="squeezed": the checkerboard partition computed on the
space-to-depth tensor, the s/t network at half resolution (issue 15)."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_realnvp
from conftest import dense_log_det, perturb_weights
from tfp_realnvp import export, networks
from tfp_realnvp.bijectors import coupling, masks, real_nvp_flow
from tfp_realnvp.testing import capi


def _coupling(shape, parity, checkerboard="squeezed", seed=0):
  h, w, c = shape
  spatial = (h, w)
  net = networks.CouplingResNet(
      coupling.conditioner_output_channels("checkerboard", c, checkerboard,
                                           spatial),
      num_filters=8, num_blocks=1)
  net.build((None, h, w, coupling.conditioner_input_channels(
      "checkerboard", c, checkerboard, spatial)))
  perturb_weights([net], seed=seed, scale=0.3)
  return tfp_realnvp.bijectors.AffineCoupling(
      net, mask_type="checkerboard", parity=parity, checkerboard=checkerboard)


@pytest.mark.parametrize("shape", [(4, 4, 1), (8, 8, 3), (6, 6, 2)])
@pytest.mark.parametrize("parity", [0, 1])
def test_squeezed_coupling_is_exact_and_changes_the_checkerboard_set(
    shape, parity, rng):
  bij = _coupling(shape, parity, seed=parity)
  assert bij.network.in_conv.v.shape[2] == 2 * shape[2]  # half resolution
  x = tf.constant(rng.normal(size=(3,) + shape), tf.float32)
  y = bij.forward(x)
  np.testing.assert_allclose(bij.inverse(tf.identity(y)).numpy(), x.numpy(),
                             atol=1e-4, rtol=0)
  ldj = bij.forward_log_det_jacobian(x, event_ndims=3).numpy()
  np.testing.assert_allclose(ldj, dense_log_det(bij.forward, x), atol=1e-3,
                             rtol=0)
  np.testing.assert_allclose(
      bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=3).numpy(),
      -ldj, atol=1e-3, rtol=0)
  assert np.abs(ldj).max() > 1e-2
  # The pixels it changes are exactly the full-resolution checkerboard's.
  b = masks.checkerboard_mask(shape[0], shape[1], parity).numpy()[0, ..., 0]
  changed = np.abs((y - x).numpy()) > 0
  assert not changed[:, b > 0].any()
  assert changed[:, b == 0].mean() > 0.99


def test_odd_sizes_fall_back_to_the_masked_checkerboard(rng):
  steps = real_nvp_flow.plan((28, 28, 1), 3, checkerboard="squeezed")
  first, last = steps[0], steps[-1]
  assert first.shape == (28, 28, 1)
  assert (first.in_channels, first.out_channels) == (2, 2)
  assert last.shape == (7, 7, 4)  # odd: masked rule, C + 1 in, C out
  assert (last.in_channels, last.out_channels) == (5, 4)
  bij = _coupling((5, 5, 2), 1)
  assert bij.network.in_conv.v.shape[2] == 3
  x = tf.constant(rng.normal(size=(2, 5, 5, 2)), tf.float32)
  y = bij.forward(x)
  np.testing.assert_allclose(bij.inverse(tf.identity(y)).numpy(), x.numpy(),
                             atol=1e-4)
  np.testing.assert_allclose(bij.forward_log_det_jacobian(x, 3).numpy(),
                             dense_log_det(bij.forward, x), atol=1e-3)


@pytest.mark.parametrize("kwargs", [
    {}, {"num_classes": 3}, {"mixed_precision": "mixed_bfloat16"},
    {"coupling": "additive", "use_batch_norm": False}])
def test_squeezed_model_is_exact(kwargs, rng):
  model = tfp_realnvp.RealNVP((4, 4, 2), num_scales=2, num_res_blocks=1,
                              num_filters=8, checkerboard="squeezed", **kwargs)
  perturb_weights(model.coupling_networks + model.batch_norm_states, seed=4,
                  scale=0.2)
  flow = model.flow()
  x = tf.constant(rng.uniform(1, 255, (3, 4, 4, 2)), tf.float32)
  z = flow.forward(x)
  tol = 5e-2 if kwargs.get("mixed_precision") else 2e-3
  np.testing.assert_allclose(flow.inverse(tf.identity(z)).numpy(), x.numpy(),
                             atol=tol)
  np.testing.assert_allclose(flow.forward_log_det_jacobian(x, 3).numpy(),
                             dense_log_det(flow.forward, x), atol=tol,
                             rtol=1e-4)
  labels = np.array([0, 1, 2]) if kwargs.get("num_classes") else None
  np.testing.assert_allclose(
      model.decode(model.encode(x, labels), labels).numpy(), x.numpy(),
      atol=tol)
  samples = model.sample(3, seed=(1, 2), labels=labels, clip=False)
  assert np.isfinite(samples.numpy()).all()


def test_squeezed_conditional_model_exports_and_serves(tmp_path):
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, num_res_blocks=1,
                              num_filters=8, num_classes=3,
                              checkerboard="squeezed", name="squeezed")
  perturb_weights([model], seed=5, scale=0.1)
  path = export.export_for_serving(model, str(tmp_path), warmup_requests=0)
  session = capi.CApiSession(path)
  try:
    x = export.example_inputs(model, "serving_default", n=3)
    out = session.run("serving_default", x)
    np.testing.assert_allclose(
        out["log_prob"], model.log_prob(x["images"], x["labels"]).numpy(),
        rtol=1e-4)
    sample = session.run("sample", export.example_inputs(model, "sample",
                                                         n=2))
    assert sample["images"].shape == (2, 8, 8, 1)
  finally:
    session.close()


def test_config_round_trip_keeps_the_checkerboard():
  for checkerboard in ("masked", "squeezed"):
    model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, num_res_blocks=1,
                                num_filters=8, checkerboard=checkerboard)
    config = model.get_config()
    assert config["checkerboard"] == checkerboard
    assert tfp_realnvp.RealNVP.from_config(config).checkerboard == checkerboard
  # A config written before the option existed describes masked couplings,
  # whatever the default is now (its weights only fit those).
  del config["checkerboard"]
  old = tfp_realnvp.RealNVP.from_config(config)
  assert old.checkerboard == "masked"
  assert old.count_params() == tfp_realnvp.RealNVP(
      (8, 8, 1), num_scales=2, num_res_blocks=1, num_filters=8,
      checkerboard="masked").count_params()
