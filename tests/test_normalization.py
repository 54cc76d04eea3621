"""`tfp_realnvp.normalization`: the fused batch-norm layer and the moments."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp import normalization


def _reference(x, gamma, beta, mean, var, eps):
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_batch_norm_training_matches_the_formula_and_updates_averages():
  rng = np.random.default_rng(0)
  x = rng.normal(3.0, 2.0, (4, 5, 6, 3)).astype("float32")
  layer = normalization.BatchNorm(momentum=0.8, epsilon=1e-3)
  layer.build(x.shape)
  layer.gamma.assign([0.5, 1.0, 2.0])
  layer.beta.assign([0.1, -0.2, 0.3])
  y = layer(x, training=True).numpy()
  mean = x.mean(axis=(0, 1, 2))
  var = x.var(axis=(0, 1, 2))  # biased, what normalizes
  np.testing.assert_allclose(
      y, _reference(x, layer.gamma.numpy(), layer.beta.numpy(), mean, var,
                    1e-3), atol=1e-4)
  np.testing.assert_allclose(layer.moving_mean.numpy(), 0.2 * mean, rtol=1e-5)
  np.testing.assert_allclose(layer.moving_variance.numpy(), 0.8 + 0.2 * var,
                             rtol=1e-5)


def test_batch_norm_inference_uses_moving_averages_and_does_not_update():
  rng = np.random.default_rng(1)
  x = rng.normal(0.0, 1.0, (2, 3, 3, 2)).astype("float32")
  layer = normalization.BatchNorm(epsilon=1e-4)
  layer.build(x.shape)
  layer.moving_mean.assign([1.0, -1.0])
  layer.moving_variance.assign([4.0, 0.25])
  y = layer(x, training=False).numpy()
  np.testing.assert_allclose(
      y, _reference(x, 1.0, 0.0, np.array([1.0, -1.0]), np.array([4.0, 0.25]),
                    1e-4), atol=1e-5)
  np.testing.assert_array_equal(layer.moving_mean.numpy(), [1.0, -1.0])


def test_batch_norm_gradient_matches_the_unfused_formula():
  rng = np.random.default_rng(2)
  x = tf.constant(rng.normal(1.0, 3.0, (3, 4, 4, 2)).astype("float32"))
  w = tf.constant(rng.normal(size=(3, 4, 4, 2)).astype("float32"))
  layer = normalization.BatchNorm(epsilon=1e-4)
  layer.build(x.shape)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    fused = tf.reduce_sum(w * layer(x, training=True))
    mean, var = tf.nn.moments(x, axes=[0, 1, 2])
    plain = tf.reduce_sum(w * (x - mean) * tf.math.rsqrt(var + 1e-4))
  np.testing.assert_allclose(tape.gradient(fused, x), tape.gradient(plain, x),
                             atol=1e-4)


def test_batch_norm_runs_in_bfloat16_with_float32_statistics():
  x = tf.cast(tf.random.stateless_normal((2, 4, 4, 3), (1, 2)), tf.bfloat16)
  layer = normalization.BatchNorm(dtype="mixed_bfloat16")
  layer.build(x.shape)
  for training in (True, False):
    y = layer(x, training=training)
    assert y.dtype == tf.bfloat16
    assert np.all(np.isfinite(tf.cast(y, tf.float32).numpy()))
  assert layer.moving_mean.dtype == "float32"


def test_batch_norm_rejects_bad_arguments():
  with pytest.raises(ValueError, match="momentum"):
    normalization.BatchNorm(momentum=1.0)
  with pytest.raises(ValueError, match="epsilon"):
    normalization.BatchNorm(epsilon=0.0)
  with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
    normalization.BatchNorm().build((3, 4))


def test_moments_outside_a_strategy_are_local_biased_moments():
  x = np.arange(24, dtype="float32").reshape(2, 3, 2, 2)
  mean, var = normalization.moments(x, axes=[0, 1, 2])
  np.testing.assert_allclose(mean, x.reshape(-1, 2).mean(0))
  np.testing.assert_allclose(var, x.reshape(-1, 2).var(0), rtol=1e-6)
  assert not normalization.syncs_across_replicas()
