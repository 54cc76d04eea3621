"""examples/: a Real NVP prior inside a VAE (issue 17) runs a few steps."""

import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example(name):
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(ROOT, "examples", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_vae_with_a_real_nvp_prior_trains_and_reports_test_elbo():
  vae = _example("vae_flow_prior")
  results = vae.run(dataset="digits", steps=6, batch_size=32)
  assert set(results) == {"gaussian", "realnvp"}
  for row in results.values():
    # Bernoulli pixels: log p(x) <= 0, and the ELBO is below it.
    assert np.isfinite(row["test_elbo"]) and row["test_elbo"] < 0
    assert row["test_images"] == 359
  # The flow prior's s/t networks are the only extra parameters.
  extra = results["realnvp"]["parameters"] - results["gaussian"]["parameters"]
  assert extra > 1000


def test_the_flow_prior_is_a_tfp_transformed_distribution_and_trains():
  vae = _example("vae_flow_prior")
  model = vae.VAE("realnvp")
  prior = model.prior()
  assert prior.event_shape == (4, 4, 2)
  z = tf.random.stateless_normal([5, 4, 4, 2], seed=(1, 2))
  from tfp_realnvp import bijectors  # pylint: disable=import-outside-toplevel
  with bijectors.evaluation():
    log_pz = prior.log_prob(z)
  assert log_pz.shape == (5,)
  x = tf.cast(tf.random.stateless_uniform([8, 28, 28, 1], seed=(3, 4)) > 0.5,
              tf.float32)
  with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(model(x))
  grads = tape.gradient(loss, [v for net in model.flow_networks
                               for v in net.trainable_variables])
  # The zero-initialised last layers of the s/t networks get gradients.
  assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0
             for g in grads)
  with pytest.raises(ValueError, match="prior must be one of"):
    vae.VAE("vampprior")
