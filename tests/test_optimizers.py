"""tfp_realnvp.optimizers: the fused Adam / Adamax are Keras' updates."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_realnvp
from tfp_realnvp import optimizers


SHAPES = ((3, 3, 2, 4), (4,), (1,))


def _variables(shapes=SHAPES):
  rng = np.random.RandomState(0)
  return [keras.Variable(rng.normal(size=shape).astype("float32"))
          for shape in shapes]


def _run(cls, steps=5, shapes=SHAPES, **kwargs):
  """The variables after `steps` updates with fixed random gradients, and
  the op count of the traced update."""
  variables = _variables(shapes)
  opt = cls(**kwargs)
  opt.build(variables)
  rng = np.random.RandomState(1)
  grads = [[tf.constant(rng.normal(scale=3.0, size=v.shape), tf.float32)
            for v in variables] for _ in range(steps)]

  @tf.function(autograph=False)
  def update(gradients):
    opt.apply_gradients(zip(gradients, variables))

  ops = len(update.get_concrete_function(grads[0]).graph.get_operations())
  for g in grads:
    update(g)
  return [v.numpy() for v in variables], ops


SCHEDULE = keras.optimizers.schedules.ExponentialDecay(0.05, 2, 0.5)


@pytest.mark.parametrize("fused, reference, kwargs", [
    (optimizers.Adam, keras.optimizers.Adam, {"learning_rate": 0.05}),
    (optimizers.Adam, keras.optimizers.Adam,
     {"learning_rate": SCHEDULE, "beta_1": 0.5, "beta_2": 0.9,
      "epsilon": 1e-3, "global_clipnorm": 1.0}),
    (optimizers.Adamax, keras.optimizers.Adamax, {"learning_rate": 0.05}),
    (optimizers.Adamax, keras.optimizers.Adamax,
     {"learning_rate": SCHEDULE, "beta_1": 0.5, "epsilon": 1e-3,
      "clipnorm": 0.5}),
    (optimizers.Adam, keras.optimizers.Adam,   # falls back to Keras' update
     {"learning_rate": 0.05, "amsgrad": True}),
])
def test_fused_update_is_the_keras_update(fused, reference, kwargs):
  got, fused_ops = _run(fused, **kwargs)
  want, keras_ops = _run(reference, **kwargs)
  start = [v.numpy() for v in _variables()]
  for g, w, s in zip(got, want, start):
    assert not np.allclose(w, s)  # the updates moved the variables
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
  if not kwargs.get("amsgrad"):
    assert fused_ops < 0.75 * keras_ops, (fused_ops, keras_ops)


@pytest.mark.parametrize("fused, reference", [
    (optimizers.Adam, keras.optimizers.Adam),
    (optimizers.Adamax, keras.optimizers.Adamax)])
def test_step_scalars_are_built_once_per_step(fused, reference):
  """The learning rate, the β powers and the constants are built once per
  step, not per variable: each further variable adds its fused update (and
  the optimizer's own per-variable bookkeeping), 6 ops instead of ~20."""
  more = SHAPES + ((5,),) * 20
  _, few = _run(fused, steps=1, shapes=SHAPES)
  _, many = _run(fused, steps=1, shapes=more)
  assert (many - few) / 20 <= 7, (few, many)
  _, keras_few = _run(reference, steps=1, shapes=SHAPES)
  _, keras_many = _run(reference, steps=1, shapes=more)
  assert (keras_many - keras_few) / 20 > 14, (keras_few, keras_many)


def test_a_direct_update_step_builds_its_own_scalars():
  """`update_step` called outside a step (no `apply`) is Keras' update."""
  for fused, reference in ((optimizers.Adam, keras.optimizers.Adam),
                           (optimizers.Adamax, keras.optimizers.Adamax)):
    got, want = _variables(), _variables()
    ours, theirs = fused(0.05), reference(0.05)
    ours.build(got)
    theirs.build(want)
    grad = tf.constant(np.full(SHAPES[0], 0.3, "float32"))
    ours.update_step(grad, got[0], tf.constant(0.05))
    theirs.update_step(grad, want[0], tf.constant(0.05))
    np.testing.assert_allclose(got[0].numpy(), want[0].numpy(), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(got[0].numpy(), _variables()[0].numpy())


def test_compile_resolves_names_to_the_fused_classes():
  model = tfp_realnvp.RealNVP(image_shape=(4, 4, 1), num_scales=1,
                              num_res_blocks=1, num_filters=4)
  model.compile(optimizer="adam")
  assert type(model.optimizer) is optimizers.Adam  # pylint: disable=unidiomatic-typecheck
  model.compile(optimizer="Adamax")
  assert type(model.optimizer) is optimizers.Adamax  # pylint: disable=unidiomatic-typecheck
  own = keras.optimizers.SGD()
  model.compile(optimizer=own)
  assert model.optimizer is own  # an optimizer object is kept as given


def test_config_round_trip_and_the_same_slots_as_keras():
  """Serialised by name (a `.keras` file or a config restores it), and its
  variables are Keras' in the same order, so a backup written by a run with
  `keras.optimizers.Adam` resumes into the fused class and back."""
  for fused, reference in ((optimizers.Adam, keras.optimizers.Adam),
                           (optimizers.Adamax, keras.optimizers.Adamax)):
    opt = fused(learning_rate=SCHEDULE, beta_1=0.8, global_clipnorm=2.0)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is fused  # pylint: disable=unidiomatic-typecheck
    assert again.beta_1 == 0.8 and again.global_clipnorm == 2.0
    variables = _variables()
    ours, theirs = fused(), reference()
    ours.build(variables)
    theirs.build(variables)
    assert ([(v.name, tuple(v.shape)) for v in ours.variables] ==
            [(v.name, tuple(v.shape)) for v in theirs.variables])
