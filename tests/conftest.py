"""Shared helpers: weight perturbation and dense-Jacobian log-dets."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gc  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import ops  # noqa: E402
from tensorflow_probability.python.bijectors import (  # noqa: E402
    bijector as bijector_lib)
from tensorflow_probability.python.internal import cache_util  # noqa: E402

# Under pytest-xdist (pytest.ini runs one worker per core) each worker gets
# its share of the cores for TensorFlow's thread pools: two processes that
# each spin a pool as wide as the machine only take turns.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
  _THREADS = max(1, (os.cpu_count() or 1) // _WORKERS)
  tf.config.threading.set_intra_op_parallelism_threads(_THREADS)
  tf.config.threading.set_inter_op_parallelism_threads(_THREADS)

# The longest files start first, so that the two workers of `pytest -n 2`
# finish together (longest-first scheduling; pytest.ini turns off xdist's
# own order, by number of tests, which started the three-test, 80-second
# test_fit.py last). Worker seconds per file, full suite on the 2-core VM,
# 2026-12-07; files not listed follow in their usual order.
SLOW_FILES_FIRST = (
    "test_training.py",  # 177 s
    "test_cli_resume.py",  # 91
    "test_distributed.py",  # 83
    "test_fit.py",  # 82
    "test_bench.py",  # 72
    "test_scores.py",  # 64
    "test_recipe.py",  # 64
    "test_photos.py",  # 63
    "test_glow_steps.py",  # 56
    "test_model.py",  # 46
    "test_export.py",  # 43
    "test_pretrained.py",  # 43
    "test_evaluation.py",  # 36
    "test_validation.py",  # 33
    "test_spline.py",  # 32
    "test_priors.py",  # 29
    "test_data.py",  # 24
    "test_structure.py",  # 24
    "test_squeezed.py",  # 21
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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


def dense_log_det(fn, x, *context):
  """log|det ∂fn(x)/∂x| per example from the dense Jacobian of `fn`, a
  function that maps each example on its own (no batch statistics).
  `context`: per-example inputs that are not differentiated (labels,
  levels; `None` passes through), called as `fn(x, *context)`.

  One forward and one backward pass over a batch that repeats each example
  once per input dimension (row `k·D + i` is example `k`, seeded with the
  unit vector `e_i`), so its input gradient holds row `i` of example `k`'s
  Jacobian. The rows must not mix: a second backward pass seeded on one row
  checks that every other row gets an exactly zero gradient. (8x faster
  than `GradientTape.batch_jacobian`, whose `pfor` conversion of the
  backward graph cost ~2 s per call on a two-scale 8×8 model.)
  """
  x = tf.convert_to_tensor(x)
  n, d = int(x.shape[0]), int(np.prod(x.shape[1:]))
  # A new tensor: TFP's bijector cache cannot answer with a value that was
  # computed outside this tape.
  rows = tf.repeat(x, d, axis=0)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(rows)
    y = fn(rows, *(None if c is None else tf.repeat(c, d, axis=0)
                   for c in context))
  assert int(np.prod(y.shape[1:])) == d, "fn must keep the dimension"
  units = tf.tile(tf.eye(d, dtype=y.dtype), [n, 1])
  jac = tape.gradient(y, rows, output_gradients=tf.reshape(units,
                                                           tf.shape(y)))
  one_row = np.zeros(units.shape, units.dtype.as_numpy_dtype)
  one_row[0] = 1.0
  leak = tape.gradient(y, rows, output_gradients=tf.reshape(one_row,
                                                            tf.shape(y)))
  del tape
  assert not np.any(leak.numpy()[1:]), (
      "fn mixes the examples of a batch (batch statistics?): dense_log_det "
      "needs a per-example function")
  jac = tf.reshape(tf.cast(jac, tf.float64), [n, d, d])
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


def flow_leaves(bijector):
  """The elementary bijectors of a (nested) TFP chain, in its order."""
  parts = getattr(bijector, "bijectors", None)
  if parts is None:
    inner = getattr(bijector, "bijector", None)
    return flow_leaves(inner) if inner is not None else [bijector]
  return [leaf for part in parts for leaf in flow_leaves(part)]


def check_served_like_the_model(model, base_dir, images):
  """Exports `model` under `base_dir`, loads it with TensorFlow's C API (TF
  Serving's loader, no TF Python) and checks its log_prob, encode, decode
  and sample signatures against the model on `images`. Returns the version
  directory."""
  from tfp_realnvp import export  # pylint: disable=import-outside-toplevel
  from tfp_realnvp.testing import capi  # pylint: disable=import-outside-toplevel
  path = export.export_for_serving(model, base_dir)
  session = capi.CApiSession(path)
  try:
    assert not session.tensorflow_python_imported
    out = session.run("serving_default", {"images": images})
    np.testing.assert_allclose(out["log_prob"],
                               model.log_prob(images).numpy(), rtol=1e-4)
    z = session.run("encode", {"images": images})["latent"]
    np.testing.assert_allclose(z, model.encode(images).numpy(), atol=1e-3)
    back = session.run("decode", {"latent": z})["images"]
    np.testing.assert_allclose(back, images, atol=2e-2)
    samples = session.run("sample", export.example_inputs(model, "sample",
                                                          n=2))
    assert all(np.all(np.isfinite(v)) for v in samples.values())
  finally:
    session.close()
  return path


def _bijector_caches():
  """The class-level caches of every loaded `tfb.Bijector` subclass (TFP's
  and this package's `_cache` class attributes: one global storage each)."""
  seen, stack, caches = set(), [bijector_lib.Bijector], []
  while stack:
    cls = stack.pop()
    if cls in seen:
      continue
    seen.add(cls)
    stack.extend(cls.__subclasses__())
  for cls in {base for cls in seen for base in cls.__mro__}:  # and mixins
    cache = vars(cls).get("_cache")
    if isinstance(cache, cache_util.BijectorCache):
      caches.append(cache)
  return caches


def clear_bijector_caches():
  """Empties the bijector caches. Their entries for a traced function's
  symbolic tensors never expire: the entry keeps its log-det attribute
  (a symbolic tensor, hence its whole FuncGraph) alive, the graph keeps the
  weakly keyed input and output alive, and the key holds the bijector and
  its Keras layers. So every graph ever traced, with its model, stayed
  reachable from a class attribute: the heap grew by ~10^6 objects per
  XLA test module and every full garbage collection walked all of it. Entries
  are only reused within one evaluation (tfp_realnvp.bijectors.cache), so
  between tests none is live."""
  for cache in _bijector_caches():
    for key in list(cache.storage):
      key.cancel()  # no weakref callback into the dropped storage
    cache.storage = cache_util.EphemeralDict()


def _custom_gradient_names():
  # pylint: disable-next=protected-access
  return {name for name in ops._gradient_registry._registry
          if name.startswith("CustomGradient-")}


def drop_custom_gradients(names):
  """Unregisters the gradients `tf.custom_gradient` registered for graph
  tracing under `names`. In graph mode each traced call registers its own
  gradient function, forever, in TF's global registry, and that function's
  closure holds the traced graph (here: the cross-replica `all_reduce` of
  every Keras train step: its whole FuncGraph). A function traced in a
  finished test module is never differentiated again (a session-scoped
  fixture must not hand one to a later module for differentiation)."""
  # pylint: disable-next=protected-access
  registry = ops._gradient_registry._registry
  for name in names:
    registry.pop(name, None)


@pytest.fixture(autouse=True, scope="module")
def _release_module_state():
  """After each test module: drop what keeps its traced graphs (and their
  models) reachable from globals — bijector cache entries, custom
  gradients — and Keras' global graph state, then collect. Left reachable,
  the graphs of all earlier modules (up to ~10^6 objects each) made every
  full collection walk them all: pauses of minutes late in the run."""
  before = _custom_gradient_names()
  yield
  clear_bijector_caches()
  drop_custom_gradients(_custom_gradient_names() - before)
  keras.backend.clear_session()
  gc.collect()
  # What survives a module (imported modules, session fixtures, caches
  # TF never empties) is not garbage again: frozen, later full collections
  # (which ran up to 11 s each late in a run, walking it all) skip it.
  gc.freeze()


@pytest.fixture
def rng():
  return np.random.default_rng(1234)


def shared_path(*parts):
  return os.path.join(SHARED, *parts)
