"""Every private TFP / TensorFlow / Keras API the package relies on.

Each test names the API, where we use it and why no public API does the
job; it fails with that text if an upgrade moves or changes it. (Public
replacements were taken where they exist: `tfb.Bijector`, `tfb.Reshape`,
`tfb.Split`, `tfb.Chain`, `tfb.Transpose`, `tf.dtypes.as_dtype`.)
"""

import inspect

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.bijectors import chain as chain_lib
from tensorflow_probability.python.bijectors import invert as invert_lib
from tensorflow_probability.python.bijectors import joint_map as joint_map_lib
from tensorflow_probability.python.distributions import transformed_distribution as td_lib
from tensorflow_probability.python.internal import cache_util

from tfp_realnvp.bijectors import cache
from tfp_realnvp.bijectors._one_pass import OnePassBijector

tfb = tfp.bijectors


def _params(fn):
  return list(inspect.signature(fn).parameters)


def test_tfp_cache_util_hooks():
  """tfp_realnvp/bijectors/cache.py keys TFP's bijector cache on the open
  evaluation by overriding BijectorCache._lookup/_attributes/_invoke (TFP
  has no public way to choose what a cache entry is keyed on)."""
  for cls in (cache_util.BijectorCache,
              cache_util.BijectorCacheWithGreedyAttrs):
    for name, params in (
        ("_lookup", ["self", "input", "forward_name", "inverse_name"]),
        ("_attributes", ["self", "input", "fn_name"]),
        ("_invoke", ["self", "input", "fn_name", "kwargs", "attributes"])):
      fn = getattr(cls, name, None)
      assert fn is not None, f"TFP removed {cls.__name__}.{name}"
      assert _params(fn)[:len(params)] == params, (
          f"TFP changed {cls.__name__}.{name}{inspect.signature(fn)}")
  greedy = cache_util.BijectorCacheWithGreedyAttrs
  assert "forward_attributes" in dir(greedy) and "inverse_attributes" in dir(
      greedy), "TFP removed the greedy-attribute accessors (_one_pass.py)"


def test_tfp_bijector_call_entry_points():
  """cache.EvaluationScoped opens an evaluation around Bijector._call_forward,
  _call_inverse and _call_*_log_det_jacobian (every public method goes
  through them) and picks its cache through the `_cache` class attribute."""
  for name in ("_call_forward", "_call_inverse",
               "_call_forward_log_det_jacobian",
               "_call_inverse_log_det_jacobian"):
    assert callable(getattr(tfb.Bijector, name, None)), (
        f"TFP removed Bijector.{name}")
  assert isinstance(tfb.Bijector._cache, cache_util.BijectorCache), (  # pylint: disable=protected-access
      "TFP no longer selects a bijector's cache by the _cache attribute")
  # Behaviour: forward + log-det of a one-pass bijector share one
  # evaluation (one pass), and nothing is reused after it.
  calls = []

  class Counting(OnePassBijector):
    def __init__(self):
      super().__init__(forward_min_event_ndims=0, parameters={},
                       name="counting")

    def _augmented_forward(self, x):
      calls.append(1)
      return 2.0 * x, tf.fill(tf.shape(x), tf.math.log(2.0))
  bij = Counting()
  x = tf.constant([0.5])
  with cache.evaluation():
    bij.forward(x)
    bij.forward_log_det_jacobian(x, event_ndims=0)
  assert len(calls) == 1, "the evaluation-keyed cache no longer hits"
  bij.forward(x)
  assert len(calls) == 2, "a cache entry outlived its evaluation"


def test_tfp_non_composite_classes():
  """cache.Chain/Invert/JointMap/TransformedDistribution subclass TFP's
  `_Chain`, `_Invert`, `_JointMap`, `_TransformedDistribution`: the public
  constructors build exactly these for parts that are not CompositeTensors
  (ours hold Keras layers)."""
  part = cache.Chain([tfb.Exp()])  # not a CompositeTensor itself
  assert isinstance(tfb.Chain([part]), chain_lib._Chain), (  # pylint: disable=protected-access
      "tfb.Chain no longer builds _Chain for non-composite parts")
  assert isinstance(tfb.Invert(part), invert_lib._Invert), (  # pylint: disable=protected-access
      "tfb.Invert no longer builds _Invert for non-composite parts")
  assert isinstance(tfb.JointMap([part, tfb.Exp()]),
                    joint_map_lib._JointMap), (  # pylint: disable=protected-access
                        "tfb.JointMap no longer builds _JointMap")
  dist = tfp.distributions.TransformedDistribution(
      tfp.distributions.Normal(0.0, 1.0), part)
  assert isinstance(dist, td_lib._TransformedDistribution), (  # pylint: disable=protected-access
      "tfd.TransformedDistribution no longer builds _TransformedDistribution")
  scope = td_lib._TransformedDistribution._name_and_control_scope  # pylint: disable=protected-access
  assert callable(scope), "TFP removed Distribution._name_and_control_scope"


def test_spline_shared_computation():
  """bijectors.spline computes a spline's value and log-det from one call
  of TFP's `RationalQuadraticSpline._compute_shared` and reads these fields
  of its result."""
  b = tfb.RationalQuadraticSpline(bin_widths=[1.0, 1.0],
                                  bin_heights=[1.0, 1.0],
                                  knot_slopes=[1.0], range_min=-1.0)
  shared = b._compute_shared(x=tf.constant([0.5]))  # pylint: disable=protected-access
  for field in ("out_of_bounds", "x_k", "y_k", "d_k", "d_kp1", "h_k", "w_k",
                "s_k"):
    assert hasattr(shared, field), f"_compute_shared lost {field!r}"
  shared = b._compute_shared(y=tf.constant([0.5]))  # pylint: disable=protected-access
  assert hasattr(shared, "y_k")


def test_multi_worker_mode_query():
  """_keras_glue.reducible_logs and training/strategy.py ask
  `MultiWorkerMirroredStrategy.extended._in_multi_worker_mode()`: the
  public API cannot tell a one-worker collective strategy from a cluster."""
  from tensorflow.python.distribute import collective_all_reduce_strategy as car  # pylint: disable=import-outside-toplevel
  fn = getattr(car.CollectiveAllReduceExtended, "_in_multi_worker_mode", None)
  assert callable(fn), "TF removed CollectiveAllReduceExtended._in_multi_worker_mode"


def test_keras_initial_epoch_attribute():
  """training/callbacks.py (ResumableBackup, like keras.callbacks.
  BackupAndRestore) sets `model._initial_epoch` in on_train_begin to resume
  at the restored epoch: Keras 3 has no public hook for it."""

  class Skip(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
      self.model._initial_epoch = 2  # pylint: disable=protected-access

  model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
  model.compile(optimizer="sgd", loss="mse")
  history = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=3,
                      verbose=0, callbacks=[Skip()])
  assert history.epoch == [2], (
      f"Keras no longer resumes from model._initial_epoch: ran epochs "
      f"{history.epoch}")


def test_keras_optimizer_slot_attributes():
  """tfp_realnvp/optimizers.py hands each variable's Adam/Adamax slots to
  TF's fused kernels: it finds them as Keras' own update_step does
  (`_get_variable_index`, Adam's `_momentums`/`_velocities`, Adamax's
  `_m`/`_u`); Keras has no public accessor for an optimizer's slots."""
  var = keras.Variable(np.zeros(3, "float32"))
  for cls, slots in ((keras.optimizers.Adam, ("_momentums", "_velocities")),
                     (keras.optimizers.Adamax, ("_m", "_u"))):
    opt = cls()
    opt.build([var])
    index = opt._get_variable_index(var)  # pylint: disable=protected-access
    for slot in slots:
      values = getattr(opt, slot, None)
      assert values is not None, f"Keras removed {cls.__name__}.{slot}"
      assert tuple(values[index].shape) == (3,), (
          f"{cls.__name__}.{slot} no longer holds one slot per variable")


def test_keras_tf_optimizer_update_loop():
  """tfp_realnvp/optimizers.py builds a step's shared scalars once around
  Keras' `_distributed_tf_update_step` (TF backend), the one function that
  calls `update_step` for every variable of a step; Keras has no public
  per-step hook there. If it moved, each variable would build its own
  scalars again (correct, ~13 more graph ops per variable)."""
  from keras.src.backend.tensorflow import optimizer as tf_optimizer
  fn = getattr(tf_optimizer.TFOptimizer, "_distributed_tf_update_step", None)
  assert fn is not None, "Keras removed TFOptimizer._distributed_tf_update_step"
  assert _params(fn) == ["self", "distribution", "grads_and_vars",
                         "learning_rate"]
  assert "self.update_step(" in inspect.getsource(fn), (
      "Keras' _distributed_tf_update_step no longer calls update_step")
