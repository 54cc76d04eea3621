"""Learned priors (issue 17): MADE's connectivity, the masked autoregressive
flow, Glow's split prior, and `encode` as the standard-normal latent of the
whole model for every prior."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_realnvp
from conftest import dense_log_det, perturb_weights
from tfp_realnvp import bijectors
from tfp_realnvp import made as made_lib
from tfp_realnvp import prior as prior_lib
from tfp_realnvp.bijectors import autoregressive

tfd = tfp.distributions
SMALL = dict(num_res_blocks=1, num_filters=8, made_hidden_units=[24, 24])


@pytest.mark.parametrize("order", ["left-to-right", "right-to-left"])
def test_made_output_i_depends_only_on_inputs_before_i(order):
  keras.utils.set_random_seed(0)
  d = 7
  # tanh: no dead ReLU units, so every allowed connection shows up.
  made = made_lib.MADE(d, [16, 16], order=order, log_scale_clamp=None,
                       activation="tanh")
  made.build()
  perturb_weights([made], seed=1, scale=0.5)  # the last layer starts at 0
  z = tf.constant(np.random.default_rng(0).normal(size=(3, d)), tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(z)
    shift, log_scale = made(z)
  rank = made_lib.input_degrees(d, order)  # position of each input
  allowed = rank[None, :] < rank[:, None]  # [output i, input j]
  for out in (shift, log_scale):
    jac = np.abs(tape.batch_jacobian(out, z).numpy())  # [N, i, j]
    assert jac.shape == (3, d, d)
    assert np.all(jac[:, ~allowed] == 0.0), "an output sees a later input"
    # ... and the allowed connections are really used (not all-zero masks).
    assert np.all(jac.max(axis=0)[allowed] > 0.0)
  first = int(np.argmin(rank))
  assert np.all(shift.numpy()[:, first] == shift.numpy()[0, first])


def test_made_masks_follow_the_degree_rules():
  masks = made_lib.masks(5, [8], params=2)
  assert [m.shape for m in masks] == [(5, 8), (8, 10)]
  hidden = made_lib.hidden_degrees(8, 5)
  assert set(hidden) <= {1, 2, 3, 4}
  np.testing.assert_array_equal(masks[0], (hidden[None, :] >= np.arange(
      1, 6)[:, None]).astype(np.float32))
  # Output 1 (degree 1) sees nothing; params repeat the same degrees.
  assert masks[1][:, 0].sum() == 0 and masks[1][:, 5].sum() == 0
  np.testing.assert_array_equal(masks[1][:, :5], masks[1][:, 5:])
  with pytest.raises(ValueError, match="hidden layer"):
    made_lib.MADE(4, [])
  with pytest.raises(ValueError, match="order must be"):
    made_lib.masks(4, [8], order="random")


@pytest.mark.parametrize("conditional", [False, True])
def test_masked_autoregressive_flow_is_exact(conditional):
  keras.utils.set_random_seed(0)
  made = made_lib.MADE(6, [16], num_classes=3 if conditional else None)
  made.build()
  perturb_weights([made], seed=2, scale=0.4)
  labels = tf.constant([0, 2, 1, 1]) if conditional else None
  maf = autoregressive.MaskedAutoregressiveAffine(made, labels)
  x = tf.constant(np.random.default_rng(1).normal(size=(4, 10)), tf.float32)
  y = maf.forward(x)
  np.testing.assert_array_equal(y.numpy()[:, :4], x.numpy()[:, :4])
  assert np.abs(y.numpy()[:, 4:] - x.numpy()[:, 4:]).max() > 0.05
  back = maf.inverse(tf.identity(y))
  np.testing.assert_allclose(back.numpy(), x.numpy(), atol=1e-5)
  ldj = maf.forward_log_det_jacobian(x, event_ndims=1).numpy()
  np.testing.assert_allclose(ldj, dense_log_det(
      lambda v, l: autoregressive.MaskedAutoregressiveAffine(made, l).forward(
          v), x, labels), atol=1e-4)
  assert np.abs(ldj).max() > 0.05
  ildj = maf.inverse_log_det_jacobian(tf.identity(y), event_ndims=1).numpy()
  np.testing.assert_allclose(ildj, -ldj, atol=1e-4)


def _model(prior, num_classes=None, seed=0, **kwargs):
  keras.utils.set_random_seed(seed)
  args = dict(SMALL, **kwargs)
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, prior=prior,
                              num_classes=num_classes, **args)
  perturb_weights([model], seed=seed, scale=0.1)
  return model


def _images(n=3, seed=0):
  return tf.constant(np.random.default_rng(seed).uniform(
      0, 256, (n, 8, 8, 1)), tf.float32)


@pytest.mark.parametrize("prior,num_classes", [
    ("gaussian", None), ("split", None), ("made", None), ("split", 3),
    ("made", 3)])
def test_encode_is_the_standard_normal_latent_of_the_whole_model(
    prior, num_classes):
  model = _model(prior, num_classes)
  x = _images()
  labels = tf.constant([0, 2, 1]) if num_classes else None
  eps = model.encode(x, labels)
  # log p(x) = log N(encode(x); 0, I) + log|det ∂encode/∂x|  (dense Jacobian)
  dense = dense_log_det(model.encode, x, labels)
  normal = tfd.Independent(tfd.Normal(tf.zeros(64), 1.0), 1)
  np.testing.assert_allclose(model.log_prob(x, labels=labels).numpy(),
                             normal.log_prob(eps).numpy() + dense,
                             rtol=1e-5, atol=2e-2)
  np.testing.assert_allclose(model.decode(eps, labels).numpy(), x.numpy(),
                             atol=2e-3)
  # The learned prior really differs from N(0, I) on the flow's latent.
  z = model.flow().forward(x)
  if prior != "gaussian":
    assert np.abs(eps.numpy() - z.numpy()).max() > 1e-2
  # decode(ε), ε ~ N(0, I), is a sample (finite, right shape).
  samples = model.sample(4, temperature=0.5, seed=(1, 2),
                         labels=tf.constant([0, 1, 2, 0]) if num_classes
                         else None, clip=False)
  assert samples.shape == (4, 8, 8, 1)
  assert np.all(np.isfinite(samples.numpy()))


def test_split_prior_is_a_conditional_gaussian_of_the_kept_half():
  keras.utils.set_random_seed(0)
  net = prior_lib.SplitPriorNet(2)
  net.build((None, 4, 4, 2))
  perturb_weights([net], seed=4, scale=0.3)
  split = bijectors.ConditionalGaussianSplit(net)
  x = tf.constant(np.random.default_rng(2).normal(size=(3, 4, 4, 4)),
                  tf.float32)
  y = split.forward(x)
  z, h = x[..., :2], x[..., 2:]  # factored-out half, kept half
  mu, log_sigma = net.loc_and_log_scale(h)
  assert np.abs(mu.numpy()).max() > 0.05
  np.testing.assert_allclose(y[..., :2].numpy(),
                             ((z - mu) * tf.exp(-log_sigma)).numpy(),
                             atol=1e-5)
  np.testing.assert_array_equal(y[..., 2:].numpy(), h.numpy())
  ldj = split.forward_log_det_jacobian(x, event_ndims=3).numpy()
  np.testing.assert_allclose(
      ldj, -tf.reduce_sum(log_sigma, axis=[1, 2, 3]).numpy(), atol=1e-4)
  np.testing.assert_allclose(ldj, dense_log_det(split.forward, x), atol=1e-3)
  np.testing.assert_allclose(split.inverse(tf.identity(y)).numpy(),
                             x.numpy(), atol=1e-5)
  # In the model: one split network per factor-out, the coarsest latent's
  # mean and log-scale learned, the flow's latent standardized there.
  model = _model("split")
  assert len(model.prior.split_networks) == 1
  eps, z = model.encode(_images()), model.flow().forward(_images())
  loc = model.prior.coarsest_loc.numpy()
  log_scale = model.prior.coarsest_log_scale.numpy()
  np.testing.assert_allclose(eps[:, 32:].numpy(),
                             (z[:, 32:].numpy() - loc) * np.exp(-log_scale),
                             atol=1e-4)
  np.testing.assert_array_equal(eps[:, :32].numpy(), z[:, :32].numpy())


def test_prior_options_and_errors():
  kwargs = dict(image_shape=(8, 8, 1), num_scales=2, num_res_blocks=1,
                num_filters=8)
  assert tfp_realnvp.RealNVP(prior="gaussian", **kwargs).prior_name == (
      "standard_normal")
  assert tfp_realnvp.RealNVP(prior="gaussian", num_classes=3,
                             **kwargs).prior_name == "class_conditional"
  made = tfp_realnvp.RealNVP(prior="made", made_hidden_units=[8],
                             **kwargs)
  assert isinstance(made.prior, prior_lib.MADEPrior)
  assert made.prior.made.event_size == 32  # the coarsest latent, 4x4x2
  with pytest.raises(ValueError, match="made_hidden_units must be"):
    tfp_realnvp.RealNVP(prior="made", made_hidden_units=[], **kwargs)
  with pytest.raises(ValueError, match="made_hidden_units must be"):
    tfp_realnvp.RealNVP(prior="made", made_hidden_units=8, **kwargs)
  with pytest.raises(ValueError, match="prior must be one of"):
    tfp_realnvp.RealNVP(prior="vampprior", **kwargs)
  with pytest.raises(ValueError, match="latent_shapes"):
    prior_lib.SplitPrior(64)


@pytest.mark.parametrize("prior", ["split", "made"])
def test_learned_priors_train_save_and_load(prior, tmp_path):
  model = _model(prior, seed=3)
  x = np.random.default_rng(0).uniform(0, 256, (32, 8, 8, 1)).astype(
      "float32")
  model.compile(tfp_realnvp.optimizers.Adam(1e-3))
  before = [v.numpy().copy() for v in model.prior.trainable_weights]
  history = model.fit(x, batch_size=16, epochs=2, verbose=0,
                      score_statistics=False)
  assert np.all(np.isfinite(history.history["loss"]))
  after = [v.numpy() for v in model.prior.trainable_weights]
  assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
  path = str(tmp_path / f"{prior}.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert loaded.get_config()["prior"] == prior
  np.testing.assert_allclose(loaded.log_prob(x[:4]).numpy(),
                             model.log_prob(x[:4]).numpy(), rtol=1e-6)
