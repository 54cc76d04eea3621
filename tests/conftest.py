"""Shared helpers: weight perturbation and dense-Jacobian log-dets."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gc  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                      "shared"))


def perturb_weights(layers, seed=0, scale=0.1):
  """Gives every variable of `layers` non-trivial values.

  Zero-initialised last layers make a coupling the identity and fresh batch
  norms are the identity too; an exactness test on such weights would pass
  for a wrong log-det. Moving variances stay positive. Integer variables
  (a 1×1 convolution's permutation), the actnorm's `initialized` flag and
  the LU `sign` are structure, not weights: left alone.
  """
  rng = np.random.default_rng(seed)
  for layer in layers:
    for v in layer.weights:
      value = np.asarray(v.numpy())
      if not np.issubdtype(value.dtype, np.floating) or any(
          key in v.path for key in ("initialized", "sign")):
        continue
      if "variance" in v.path:
        new = rng.uniform(0.5, 2.0, size=value.shape)
      else:
        new = value + scale * rng.standard_normal(value.shape)
      v.assign(new.astype(value.dtype))


def dense_log_det(fn, x):
  """log|det ∂fn(x)/∂x| per example from the dense batch Jacobian."""
  # A new tensor: TFP's bijector cache must not answer with a value that was
  # computed outside this tape.
  x = tf.identity(tf.convert_to_tensor(x))
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x)
  jac = tape.batch_jacobian(y, x)
  n = int(np.prod(x.shape[1:]))
  jac = tf.reshape(tf.cast(jac, tf.float64), [-1, n, n])
  sign, logdet = tf.linalg.slogdet(jac)
  assert np.all(sign.numpy() != 0), "singular Jacobian"
  return logdet.numpy()


def frozen_batch_norm_dense_log_det(mean, variance, log_gamma, beta, x):
  """Dense-Jacobian log-det of the flow's batch norm with the statistics
  held fixed at `mean`, `variance` (what its training-mode log-det means)."""
  from tfp_realnvp import bijectors  # pylint: disable=import-outside-toplevel
  frozen = bijectors.BatchNormState(momentum=0.9, epsilon=1e-4)
  frozen.build((None,) + tuple(x.shape[1:]))
  frozen.moving_mean.assign(np.asarray(mean, np.float32))
  frozen.moving_variance.assign(np.asarray(variance, np.float32))
  frozen.log_gamma.assign(log_gamma)
  frozen.beta.assign(beta)
  return dense_log_det(
      bijectors.FlowBatchNorm(frozen, training=False).forward, x)


@pytest.fixture(autouse=True, scope="module")
def _release_module_state():
  """After each test module: drop Keras' global graph state and collect.
  Without it garbage from earlier modules (traced and XLA-compiled
  functions) was collected in one pause of minutes inside a later test."""
  yield
  keras.backend.clear_session()
  gc.collect()


@pytest.fixture
def rng():
  return np.random.default_rng(1234)


def shared_path(*parts):
  return os.path.join(SHARED, *parts)
