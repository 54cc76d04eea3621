"""Exactness of every bijector: inverse(forward(x)) == x and the log-det
against the dense Jacobian, with non-trivial (perturbed) weights."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from conftest import (dense_log_det, frozen_batch_norm_dense_log_det,
                      perturb_weights)
from tfp_realnvp import bijectors, networks
from tfp_realnvp.bijectors import coupling as coupling_lib

tfb = tfp.bijectors

INV_TOL = 1e-4
LDJ_TOL = 1e-3


def _make_coupling(shape, mask_type, parity, additive=False, training=False,
                   seed=0):
  h, w, c = shape
  net = networks.CouplingResNet(
      coupling_lib.conditioner_output_channels(mask_type, c),
      num_filters=8, num_blocks=2, affine=not additive)
  net.build((None, h, w, coupling_lib.conditioner_input_channels(mask_type,
                                                                 c)))
  perturb_weights([net], seed=seed, scale=0.3)
  return bijectors.AffineCoupling(net, mask_type=mask_type, parity=parity,
                                  additive=additive, training=training)


def _check_exact(bij, x, event_ndims=3):
  y = bij.forward(x)
  x_back = bij.inverse(tf.identity(y))  # identity: no cache hit
  np.testing.assert_allclose(x_back.numpy(), x.numpy(), atol=INV_TOL, rtol=0)
  ldj = bij.forward_log_det_jacobian(x, event_ndims=event_ndims).numpy()
  dense = dense_log_det(lambda t: bij.forward(t), x)
  np.testing.assert_allclose(ldj, dense, atol=LDJ_TOL, rtol=0)
  ildj = bij.inverse_log_det_jacobian(tf.identity(y),
                                      event_ndims=event_ndims).numpy()
  np.testing.assert_allclose(ildj, -ldj, atol=LDJ_TOL, rtol=0)
  return y, ldj


@pytest.mark.parametrize("shape", [(4, 4, 1), (8, 8, 3)])
@pytest.mark.parametrize("parity", [0, 1])
def test_checkerboard_coupling_exact(shape, parity, rng):
  bij = _make_coupling(shape, "checkerboard", parity, seed=parity)
  x = tf.constant(rng.normal(size=(3,) + shape), tf.float32)
  y, ldj = _check_exact(bij, x)
  mask = coupling_lib.checkerboard_mask(shape[0], shape[1], parity).numpy()
  # Conditioning positions pass through unchanged, the others change.
  np.testing.assert_array_equal((y * mask).numpy(), (x * mask).numpy())
  assert np.abs(((y - x) * (1 - mask)).numpy()).max() > 1e-3
  assert np.abs(ldj).max() > 1e-2  # the test exercises a real scale


@pytest.mark.parametrize("shape", [(4, 4, 2), (2, 2, 12)])
@pytest.mark.parametrize("parity", [0, 1])
def test_channel_coupling_exact(shape, parity, rng):
  bij = _make_coupling(shape, "channel", parity, seed=3 + parity)
  x = tf.constant(rng.normal(size=(3,) + shape), tf.float32)
  y, _ = _check_exact(bij, x)
  half = shape[-1] // 2
  kept = slice(0, half) if parity == 0 else slice(half, None)
  np.testing.assert_array_equal(y.numpy()[..., kept], x.numpy()[..., kept])


def test_channel_coupling_runs_network_on_half_only(rng):
  bij = _make_coupling((4, 4, 6), "channel", 0)
  seen = []
  original = bij.network.call
  bij.network.call = lambda h, training=False: (seen.append(h.shape),
                                                original(h, training))[1]
  bij.forward(tf.constant(rng.normal(size=(2, 4, 4, 6)), tf.float32))
  assert seen == [tf.TensorShape([2, 4, 4, 3])]


@pytest.mark.parametrize("mask_type,shape", [("checkerboard", (4, 4, 2)),
                                             ("channel", (4, 4, 2))])
def test_additive_coupling_is_volume_preserving(mask_type, shape, rng):
  bij = _make_coupling(shape, mask_type, 0, additive=True)
  x = tf.constant(rng.normal(size=(2,) + shape), tf.float32)
  _, ldj = _check_exact(bij, x)
  np.testing.assert_array_equal(ldj, np.zeros(2))


def test_fresh_coupling_is_identity(rng):
  net = networks.CouplingResNet(2, num_filters=8, num_blocks=1)
  net.build((None, 4, 4, 3))
  bij = bijectors.AffineCoupling(net, "checkerboard", 0)
  x = tf.constant(rng.normal(size=(2, 4, 4, 2)), tf.float32)
  np.testing.assert_array_equal(bij.forward(x).numpy(), x.numpy())


def test_coupling_handles_any_batch_rank(rng):
  bij = _make_coupling((4, 4, 2), "checkerboard", 1)
  x = tf.constant(rng.normal(size=(2, 3, 4, 4, 2)), tf.float32)
  y = bij.forward(x)
  assert y.shape == x.shape
  ldj = bij.forward_log_det_jacobian(x, event_ndims=3)
  assert ldj.shape == (2, 3)
  flat = bij.forward(tf.reshape(x, [6, 4, 4, 2]))
  np.testing.assert_allclose(tf.reshape(y, [6, 4, 4, 2]).numpy(), flat.numpy(),
                             atol=1e-6)
  single = bij.forward(x[0, 0])  # no batch dimension at all
  np.testing.assert_allclose(single.numpy(), y[0, 0].numpy(), atol=1e-6)


def test_coupling_constructor_errors():
  net = networks.CouplingResNet(1, num_filters=4, num_blocks=0)
  with pytest.raises(ValueError, match="mask_type"):
    bijectors.AffineCoupling(net, mask_type="diagonal")
  with pytest.raises(ValueError, match="parity"):
    bijectors.AffineCoupling(net, parity=2)
  with pytest.raises(ValueError, match="callable"):
    bijectors.AffineCoupling("not a network")


def test_checkerboard_mask_pattern():
  m0 = coupling_lib.checkerboard_mask(3, 4, 0).numpy()[0, :, :, 0]
  m1 = coupling_lib.checkerboard_mask(3, 4, 1).numpy()[0, :, :, 0]
  for i in range(3):
    for j in range(4):
      assert m0[i, j] == ((i + j) % 2 == 0)
      assert m1[i, j] == ((i + j) % 2 == 1)


def _bn(shape, training, seed=0):
  state = bijectors.BatchNormState(momentum=0.9, epsilon=1e-4)
  state.build((None,) + shape)
  perturb_weights([state], seed=seed, scale=0.5)
  return state, bijectors.FlowBatchNorm(state, training=training)


@pytest.mark.parametrize("shape", [(4, 4, 1), (8, 8, 3)])
def test_batch_norm_inference_exact(shape, rng):
  _, bij = _bn(shape, training=False)
  x = tf.constant(rng.normal(2.0, 3.0, size=(3,) + shape), tf.float32)
  _check_exact(bij, x)


def test_batch_norm_training_formula_and_moving_averages(rng):
  shape = (4, 4, 3)
  state, bij = _bn(shape, training=True, seed=1)
  x_np = rng.normal(2.0, 3.0, size=(6,) + shape)
  x = tf.constant(x_np, tf.float32)
  old_mean = state.moving_mean.numpy().copy()
  old_var = state.moving_variance.numpy().copy()
  with bijectors.evaluation():  # one evaluation: forward + log-det, 1 update
    y = bij.forward(x)
    ldj = bij.forward_log_det_jacobian(x, event_ndims=3).numpy()
  y = y.numpy()
  mean = x_np.mean(axis=(0, 1, 2))
  var = x_np.var(axis=(0, 1, 2))
  log_gamma = state.log_gamma.numpy()
  beta = state.beta.numpy()
  expected = (x_np - mean) / np.sqrt(var + 1e-4) * np.exp(log_gamma) + beta
  np.testing.assert_allclose(y, expected, atol=1e-4)
  expected_ldj = 16 * np.sum(log_gamma - 0.5 * np.log(var + 1e-4))
  np.testing.assert_allclose(ldj, np.full(6, expected_ldj), atol=1e-3)
  # One evaluation (forward + log-det) = exactly one moving-average update.
  np.testing.assert_allclose(state.moving_mean.numpy(),
                             0.9 * old_mean + 0.1 * mean, atol=1e-5)
  np.testing.assert_allclose(state.moving_variance.numpy(),
                             0.9 * old_var + 0.1 * var, atol=1e-4)
  # With the batch statistics held fixed the Jacobian is that diagonal.
  dense = frozen_batch_norm_dense_log_det(mean, var, log_gamma, beta, x)
  np.testing.assert_allclose(ldj, dense, atol=LDJ_TOL)


@pytest.mark.parametrize("batch", [(6,), (2, 3)])
def test_batch_norm_training_gradient_through_the_fused_kernel(batch, rng):
  """The training forward pass runs the fused kernel with a hand-written
  gradient (`batch_norm._fused_train_forward`): the value, the log-det and
  the gradients of a loss of both with respect to `x`, `log_γ` and `β`
  equal those of eq. 17-18 written with `tf.nn.moments` and differentiated
  by TF (the gradient through σ²_B of the log-det included), for one batch
  axis and for two (flattened)."""
  shape = (4, 4, 3)
  state, bij = _bn(shape, training=True, seed=2)
  assert bij._fused_applies(tf.zeros((1,) + shape))  # pylint: disable=protected-access
  x = tf.constant(rng.normal(2.0, 3.0, size=batch + shape), tf.float32)
  w = tf.constant(rng.normal(size=batch + shape), tf.float32)
  c = tf.constant(rng.normal(size=batch), tf.float32)
  variables = [state.log_gamma, state.beta]

  def loss_of(y, ldj):
    return tf.reduce_sum(w * y) + tf.reduce_sum(c * ldj)

  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    with bijectors.evaluation():
      y = bij.forward(x)
      ldj = bij.forward_log_det_jacobian(x, event_ndims=3)
    loss = loss_of(y, ldj)
    ldj_loss = tf.reduce_sum(c * ldj)
    flat = tf.reshape(x, (-1,) + shape)
    mean, var = tf.nn.moments(flat, axes=[0, 1, 2])
    y_ref = tf.reshape((flat - mean) * tf.math.rsqrt(var + 1e-4) *
                       tf.exp(state.log_gamma) + state.beta, x.shape)
    ldj_ref = tf.fill(batch, 16.0 * tf.reduce_sum(
        state.log_gamma - 0.5 * tf.math.log(var + 1e-4)))
    loss_ref = loss_of(y_ref, ldj_ref)
  np.testing.assert_allclose(y.numpy(), y_ref.numpy(), atol=1e-4)
  np.testing.assert_allclose(ldj.numpy(), ldj_ref.numpy(), rtol=1e-5,
                             atol=1e-4)
  got = tape.gradient(loss, [x] + variables)
  want = tape.gradient(loss_ref, [x] + variables)
  for g, r in zip(got, want):
    assert g is not None
    np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-4, atol=1e-4)
  # The log-det's own gradient is not zero (the path TF's kernel drops).
  dx_ldj = tape.gradient(ldj_loss, x).numpy()
  assert np.abs(dx_ldj).max() > 1e-3


def test_batch_norm_errors():
  with pytest.raises(ValueError, match="momentum"):
    bijectors.BatchNormState(momentum=1.0)
  with pytest.raises(ValueError, match="epsilon"):
    bijectors.BatchNormState(epsilon=0.0)
  with pytest.raises(ValueError, match="built"):
    bijectors.FlowBatchNorm(bijectors.BatchNormState())


def test_logit_preprocess_exact(rng):
  bij = bijectors.LogitPreprocess(alpha=0.05)
  x = tf.constant(rng.uniform(0, 256, size=(3, 4, 4, 1)), tf.float32)
  y, _ = _check_exact(bij, x)
  p = 0.05 + 0.9 * x.numpy() / 256
  np.testing.assert_allclose(y.numpy(), np.log(p / (1 - p)), atol=1e-5)


def test_logit_preprocess_validates_range():
  bij = bijectors.LogitPreprocess(validate_args=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match="<= 256"):
    bij.forward(tf.constant([[300.0]]))
  with pytest.raises(ValueError, match="alpha"):
    bijectors.LogitPreprocess(alpha=0.5)


def test_squeeze_layout_and_exactness(rng):
  sq = bijectors.Squeeze((4, 4, 2))
  x_np = rng.normal(size=(2, 4, 4, 2)).astype(np.float32)
  y = sq.forward(tf.constant(x_np)).numpy()
  assert y.shape == (2, 2, 2, 8)
  for i in range(2):
    for j in range(2):
      block = x_np[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2, :]  # [N, 2, 2, C]
      np.testing.assert_array_equal(y[:, i, j, :], block.reshape(2, 8))
  _check_exact(sq, tf.constant(x_np))
  assert all(isinstance(b, (tfb.Reshape, tfb.Transpose)) for b in sq.bijectors)
  with pytest.raises(ValueError, match="even height and width"):
    bijectors.Squeeze((3, 4, 1))


def test_factor_out_and_latent_helpers(rng):
  inner = bijectors.flatten((2, 2, 2))
  bij = bijectors.factor_out((2, 2, 4), inner)
  x_np = rng.normal(size=(3, 2, 2, 4)).astype(np.float32)
  z = bij.forward(tf.constant(x_np)).numpy()
  assert z.shape == (3, 16)
  np.testing.assert_array_equal(z[:, :8], x_np[..., :2].reshape(3, 8))
  np.testing.assert_array_equal(z[:, 8:], x_np[..., 2:].reshape(3, 8))
  np.testing.assert_array_equal(bij.inverse(z).numpy(), x_np)
  parts = bijectors.split_latent(z, [(2, 2, 2), (2, 2, 2)])
  np.testing.assert_array_equal(parts[0].numpy(), x_np[..., :2])
  np.testing.assert_array_equal(bijectors.merge_latent(parts).numpy(), z)
  with pytest.raises(ValueError, match="even channel count"):
    bijectors.factor_out((2, 2, 3), inner)
  with pytest.raises(ValueError, match="last dimension 16"):
    bijectors.split_latent(z[:, :5], [(2, 2, 2), (2, 2, 2)])


def test_one_network_call_per_coupling_for_value_and_log_det(rng):
  bij = _make_coupling((4, 4, 2), "checkerboard", 0)
  calls = []
  original = bij.network.call
  bij.network.call = lambda h, training=False: (calls.append(1),
                                                original(h, training))[1]
  x = tf.constant(rng.normal(size=(2, 4, 4, 2)), tf.float32)
  with bijectors.evaluation():  # what TransformedDistribution.log_prob does
    y = bij.forward(x)
    bij.forward_log_det_jacobian(x, event_ndims=3)
  assert len(calls) == 1
  # A new evaluation sees the current weights: it runs the network again.
  bij.forward_log_det_jacobian(x, event_ndims=3)
  assert len(calls) == 2
  del y


def test_dense_log_det_helper_is_exact_and_refuses_mixed_examples():
  """The tests' dense-Jacobian helper: exp(x)·A (A a fixed invertible
  matrix) has log|det J| = Σx + log|det A|; batch statistics are refused."""
  rng = np.random.default_rng(3)
  a = tf.constant(rng.normal(size=(6, 6)) + 3 * np.eye(6), tf.float32)
  x = tf.constant(rng.normal(size=(4, 2, 3)), tf.float32)
  got = dense_log_det(lambda v: tf.reshape(tf.reshape(tf.exp(v), [-1, 6]) @ a,
                                           [-1, 2, 3]), x)
  want = (np.sum(x.numpy(), axis=(1, 2)) +
          np.linalg.slogdet(a.numpy().astype(np.float64))[1])
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # A per-example context is repeated with the rows.
  shift = tf.constant(rng.normal(size=(4, 1, 1)), tf.float32)
  np.testing.assert_allclose(
      dense_log_det(lambda v, s: tf.exp(v * s), x, shift),
      np.sum(x.numpy() * shift.numpy() + np.log(np.abs(shift.numpy())),
             axis=(1, 2)), rtol=1e-4)
  with pytest.raises(AssertionError, match="mixes the examples"):
    dense_log_det(lambda v: v - tf.reduce_mean(v, axis=0), x)
