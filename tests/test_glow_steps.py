"""Glow's steps as options (issue 17): actnorm with data-dependent
initialisation, reverse and invertible 1×1 convolution (LU form); exactness,
saving, and export through the C-API loader."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_realnvp
from conftest import (check_served_like_the_model, dense_log_det,
                      flow_leaves, perturb_weights)
from tfp_realnvp import bijectors
from tfp_realnvp.bijectors import actnorm as actnorm_lib
from tfp_realnvp.bijectors import permutation as permutation_lib

SMALL = dict(num_res_blocks=1, num_filters=8)


def _x(shape=(3, 4, 4, 3), seed=0, scale=1.0):
  return tf.constant(scale * np.random.default_rng(seed).normal(size=shape),
                     tf.float32)


def test_actnorm_bijector_is_exact_and_initialises_from_data():
  state = bijectors.ActNormState()
  state.build((None, 4, 4, 3))
  bijector = bijectors.ActNorm(state)
  x = _x(scale=3.0) + 5.0
  # Outside data_init(): identity, nothing initialised.
  np.testing.assert_array_equal(bijector.forward(x).numpy(), x.numpy())
  assert not state.is_initialized()
  with actnorm_lib.data_init():
    y = bijector.forward(x)
  assert state.is_initialized()
  mean, var = tf.nn.moments(y, axes=[0, 1, 2])
  np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-5)
  np.testing.assert_allclose(var.numpy(), 1.0, atol=1e-4)
  # Initialised once: a second data_init() pass keeps the values.
  bias = state.bias.numpy().copy()
  with actnorm_lib.data_init():
    bijector.forward(x * 2.0)
  np.testing.assert_array_equal(state.bias.numpy(), bias)
  ldj = bijector.forward_log_det_jacobian(x, event_ndims=3).numpy()
  np.testing.assert_allclose(ldj, dense_log_det(bijector.forward, x),
                             atol=1e-3)
  np.testing.assert_allclose(ldj, 16 * state.log_scale.numpy().sum(),
                             rtol=1e-6)
  np.testing.assert_allclose(bijector.inverse(tf.identity(y)).numpy(),
                             x.numpy(), atol=1e-4)


def test_conv1x1_is_exact_in_lu_form_and_uses_scale_matvec_lu():
  keras.utils.set_random_seed(0)
  state = bijectors.Conv1x1State()
  state.build((None, 4, 4, 3))
  w0 = bijectors.InvertibleConv1x1(state).matvec_lu()
  # Starts as a rotation (|det W| = 1).
  matrix = tf.linalg.lu_reconstruct(w0.lower_upper, w0.permutation).numpy()
  np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-5)
  perturb_weights([state], seed=1, scale=0.3)
  bijector = bijectors.InvertibleConv1x1(state)
  x = _x()
  y = bijector.forward(x)
  matrix = tf.linalg.lu_reconstruct(bijector.matvec_lu().lower_upper,
                                    state.permutation).numpy()
  np.testing.assert_allclose(y.numpy(), np.einsum("ij,nhwj->nhwi", matrix,
                                                  x.numpy()), atol=1e-5)
  # W and log|det W| computed directly are TFP's numbers bit for bit.
  np.testing.assert_array_equal(state.matrix().numpy(), matrix)
  np.testing.assert_array_equal(
      state.log_abs_det().numpy(),
      bijector.matvec_lu().forward_log_det_jacobian(
          tf.zeros([3]), event_ndims=1).numpy())
  ldj = bijector.forward_log_det_jacobian(x, event_ndims=3).numpy()
  np.testing.assert_allclose(ldj, dense_log_det(bijector.forward, x),
                             atol=1e-3)
  np.testing.assert_allclose(
      ldj, 16 * np.log(abs(np.linalg.det(matrix))), rtol=1e-4)
  assert abs(ldj[0]) > 0.1
  np.testing.assert_allclose(bijector.inverse(tf.identity(y)).numpy(),
                             x.numpy(), atol=1e-4)
  # The permutation and sign are fixed structure, not trained.
  assert {v.name for v in state.trainable_weights} == {"lower", "upper",
                                                       "log_s"}


def test_reverse_is_a_permutation():
  bijector = permutation_lib.reverse_channels(3)
  x = _x()
  np.testing.assert_array_equal(bijector.forward(x).numpy(),
                                x.numpy()[..., ::-1])
  assert float(bijector.forward_log_det_jacobian(x, event_ndims=3)) == 0.0


def _model(seed=0, **kwargs):
  keras.utils.set_random_seed(seed)
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, **dict(SMALL,
                                                               **kwargs))
  perturb_weights([model], seed=seed, scale=0.1)
  return model


def _images(n=3, seed=0):
  return tf.constant(np.random.default_rng(seed).uniform(
      0, 256, (n, 8, 8, 1)), tf.float32)


@pytest.mark.parametrize("options", [
    dict(actnorm=True),
    dict(permutation="reverse"),
    dict(permutation="conv1x1"),
    dict(actnorm=True, permutation="conv1x1", use_batch_norm=False,
         prior="split"),
    dict(actnorm=True, permutation="reverse", prior="made",
         made_hidden_units=[16]),
])
def test_glow_step_options_are_exact(options):
  model = _model(**options)
  x = _images()
  flow = model.flow(training=False)
  names = [b.name for b in flow_leaves(flow)]
  if options.get("actnorm"):
    assert sum(n.startswith("actnorm") for n in names) == 10
  if options.get("permutation", "none") != "none":
    assert sum(n.startswith(options["permutation"][:7]) for n in names) == 10
  z = flow.forward(x)
  np.testing.assert_allclose(flow.inverse(tf.identity(z)).numpy(), x.numpy(),
                             atol=2e-3)
  ldj = flow.forward_log_det_jacobian(x, event_ndims=3).numpy()
  np.testing.assert_allclose(ldj, dense_log_det(flow.forward, x), atol=2e-3)
  eps = model.encode(x)
  np.testing.assert_allclose(
      model.log_prob(x).numpy(),
      (-0.5 * tf.reduce_sum(eps ** 2, axis=1) - 32 * np.log(2 * np.pi)
       ).numpy() + dense_log_det(model.encode, x), rtol=1e-5, atol=2e-2)


def test_channel_couplings_keep_parity_0_under_a_permutation():
  from tfp_realnvp.bijectors import real_nvp_flow  # pylint: disable=import-outside-toplevel
  plain = real_nvp_flow.plan((8, 8, 1), 2)
  glow = real_nvp_flow.plan((8, 8, 1), 2, permutation="conv1x1")
  assert [s.parity for s in plain if s.mask_type == "channel"] == [0, 1, 0]
  assert [s.parity for s in glow if s.mask_type == "channel"] == [0, 0, 0]
  assert [s.parity for s in glow if s.mask_type == "checkerboard"] == [
      s.parity for s in plain if s.mask_type == "checkerboard"]
  with pytest.raises(ValueError, match="permutation must be one of"):
    tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, permutation="shuffle")


def test_actnorm_initialises_on_the_first_fit_batch_only(tmp_path):
  keras.utils.set_random_seed(0)
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, actnorm=True,
                              ema_decay=0.9, **SMALL)
  x = np.random.default_rng(0).uniform(0, 256, (32, 8, 8, 1)).astype(
      "float32")
  moving = [v.numpy().copy() for v in model.weights if "moving" in v.path]
  assert model.actnorm_init_pending()
  model.initialize_actnorm(x[:16])
  assert not model.actnorm_init_pending()
  # The first actnorm normalizes the first batch (after the logit).
  first = model.actnorm_states[0]
  logits = bijectors.LogitPreprocess(model.alpha).forward(x[:16])
  out = (logits + first.bias) * tf.exp(first.log_scale)
  mean, var = tf.nn.moments(out, axes=[0, 1, 2])
  np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-4)
  np.testing.assert_allclose(var.numpy(), 1.0, atol=1e-3)
  # Nothing else changed; the EMA copy took the initialised values.
  for v, before in zip([v for v in model.weights if "moving" in v.path],
                       moving):
    np.testing.assert_array_equal(v.numpy(), before)
  np.testing.assert_array_equal(model.ema_actnorm_states[0].bias.numpy(),
                                first.bias.numpy())
  initialised = first.bias.numpy().copy()
  model.compile(tfp_realnvp.optimizers.Adam(1e-3))
  model.fit(x, batch_size=16, epochs=1, verbose=0, score_statistics=False)
  # fit trained it from there (no second initialisation from its batches).
  assert 0 < np.abs(first.bias.numpy() - initialised).max() < 0.1
  path = str(tmp_path / "actnorm.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert not loaded.actnorm_init_pending()
  np.testing.assert_allclose(loaded.log_prob(x[:4]).numpy(),
                             model.log_prob(x[:4]).numpy(), rtol=1e-6)


def test_fit_initialises_actnorm_from_a_dataset_and_says_when_it_cannot():
  keras.utils.set_random_seed(0)
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, actnorm=True, **SMALL)
  x = np.random.default_rng(1).uniform(0, 256, (32, 8, 8, 1)).astype(
      "float32")
  model.compile(tfp_realnvp.optimizers.Adam(1e-3))
  model.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=1,
            verbose=0, score_statistics=False)
  assert not model.actnorm_init_pending()
  fresh = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, actnorm=True, **SMALL)
  fresh.compile(tfp_realnvp.optimizers.Adam(1e-3))

  def generator():
    yield x[:16]

  with pytest.raises(ValueError, match="initialize_actnorm"):
    fresh.fit(generator(), epochs=1, verbose=0)
  with pytest.raises(ValueError, match="no actnorm"):
    _model().initialize_actnorm(x[:4])


def test_glow_model_exports_and_serves(tmp_path):
  model = _model(actnorm=True, permutation="conv1x1", prior="made",
                 made_hidden_units=[16], name="glowish")
  path = check_served_like_the_model(model, str(tmp_path / "saved_models"),
                                     _images(4).numpy())
  assert os.path.isdir(path)
