"""Input validation: one module for the model and the export, checks that
survive `jit_compile=True`, and the bad inputs a new user tries."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_realnvp
from conftest import perturb_weights
from tfp_realnvp import validation

SHAPE = (8, 8, 1)
# One scale: every check is the same, XLA compiles a smaller graph.
SMALL = dict(image_shape=SHAPE, num_scales=1, num_res_blocks=1,
             num_filters=8)


def _data(n=32, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(0, 256, (n,) + SHAPE).astype(np.float32)


def _compiled(jit, seed=0, **kwargs):
  keras.utils.set_random_seed(seed)
  model = tfp_realnvp.RealNVP(**dict(SMALL, **kwargs))
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3), jit_compile=jit)
  return model


@pytest.fixture(scope="module")
def graph_and_xla_models():
  """One compiled model per path, shared by the tests of this module: XLA
  compiles its train and test steps once (most of these tests' time). The
  bad-value tests check that every bad batch is refused before it reaches
  the weights, so they may see the models after the training test."""
  models = {False: _compiled(False), True: _compiled(True)}
  yield models
  models.clear()  # collectable in this module's teardown (tests/conftest.py)


def test_fit_with_xla_trains_like_the_graph_path(graph_and_xla_models):
  x = _data(48)
  graph, jit = graph_and_xla_models[False], graph_and_xla_models[True]
  jit.set_weights(graph.get_weights())
  start = [w.copy() for w in jit.get_weights()]
  assert jit.jit_compile is True and graph.jit_compile is False
  # Batches of a tf.data pipeline, in order: the structure the bad-value
  # tests feed first, so XLA's compiled train step serves them too.
  data = tf.data.Dataset.from_tensor_slices(x).batch(16)
  h_graph = graph.fit(data, epochs=2, verbose=0, score_statistics=False)
  h_jit = jit.fit(data, epochs=2, verbose=0, score_statistics=False)
  for a, b in zip(h_graph.history["loss"], h_jit.history["loss"]):
    assert abs(a - b) <= 1e-3 * abs(a), (h_graph.history, h_jit.history)
  # It really trained. (Weights are not compared: Adam's normalized step
  # turns rounding differences in near-zero gradients into lr-sized ones.)
  assert h_jit.history["loss"][1] != h_jit.history["loss"][0]
  moved = max(float(np.abs(a - b).max())
              for a, b in zip(start, jit.get_weights()))
  assert moved > 1e-4


BAD_VALUES = [  # each value once through arrays, once through tf.data
    (float("nan"), "NaN or inf", True),
    (float("inf"), "NaN or inf", False),
    (300.0, "above 256", False),
    (-1.0, "below 0", True),
]


@pytest.mark.parametrize("value,match,as_dataset", BAD_VALUES)
def test_bad_values_give_the_same_error_with_and_without_xla(
    value, match, as_dataset, graph_and_xla_models):
  x = _data(32)
  x[5, 2, 3, 0] = value
  messages = []
  for jit in (False, True):
    model = graph_and_xla_models[jit]
    data = (tf.data.Dataset.from_tensor_slices(x).batch(16) if as_dataset
            else x)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(tf.errors.InvalidArgumentError, match=match) as info:
      model.fit(data, batch_size=None if as_dataset else 16, epochs=1,
                shuffle=False, verbose=0)
    line = next(line for line in info.value.message.splitlines()
                if match in line)
    # TF prefixes where it raised (a traced function, a tf.data map).
    messages.append(line[line.index("assertion failed"):])
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
      model.evaluate(data, verbose=0)
    # The bad batch (the first) never reached the weights.
    for b, w in zip(before, model.get_weights()):
      np.testing.assert_array_equal(b, w)
  assert messages[0] == messages[1], messages


def test_wrong_shape_is_the_same_error_with_and_without_xla():
  # Fresh models: a shared one's train step was traced with relaxed shapes
  # by earlier tests, which moves this static check to run time.
  x = np.zeros((16, 8, 8, 3), np.float32) + 100
  for jit in (False, True):
    model = _compiled(jit)
    with pytest.raises(ValueError, match=r"\[N, 8, 8, 1\]"):
      model.fit(x, batch_size=16, epochs=1, verbose=0)


def test_xla_checks_labels_of_a_conditional_model():
  x = _data(16)
  labels = np.array([0, 1, 2] * 5 + [7], np.int32)
  for jit in (False, True):
    model = _compiled(jit, num_classes=3)
    ds = tf.data.Dataset.from_tensor_slices((x, labels)).batch(8).map(
        lambda a, b: ((a, b),))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"labels must be integers in \[0, 3\)"):
      model.fit(ds, epochs=1, verbose=0)


def test_validate_inputs_false_skips_value_checks_only():
  model = tfp_realnvp.RealNVP(**SMALL, validate_inputs=False)
  perturb_weights([model], seed=0, scale=0.2)
  bad = tf.fill([2, 8, 8, 1], 300.0)
  # No assert: the value goes through (the logit of a pixel above 256 is
  # NaN), exactly what the option promises.
  assert np.all(np.isnan(model.log_prob(bad).numpy()))
  assert np.all(np.isnan(model.decode(tf.fill([1, 64], np.nan)).numpy()))
  # Static checks stay.
  with pytest.raises(ValueError, match=r"\[N, 8, 8, 1\]"):
    model.log_prob(tf.zeros([2, 8, 8, 3]))
  with pytest.raises(TypeError, match="float32 images"):
    model.log_prob(tf.zeros([2, 8, 8, 1], tf.int32))
  # And the checked model rejects the same input.
  checked = tfp_realnvp.RealNVP(**SMALL)
  with pytest.raises(tf.errors.InvalidArgumentError, match="above 256"):
    checked.log_prob(bad)


def test_sample_temperature_tensor_inside_tf_function():
  model = tfp_realnvp.RealNVP(**SMALL)
  perturb_weights([model], seed=0, scale=0.2)

  @tf.function
  def draw(temperature):
    return model.sample(3, temperature=temperature, seed=(4, 5), clip=False)

  hot = draw(tf.constant(1.0))
  cold = draw(tf.constant(0.5))
  eps = tf.random.stateless_normal([3, 64], seed=(4, 5))
  np.testing.assert_allclose(cold.numpy(), model.decode(eps * 0.5).numpy(),
                             atol=1e-3)
  assert not np.allclose(hot.numpy(), cold.numpy())
  per_row = draw(tf.constant([1.0, 0.5, 0.5]))
  np.testing.assert_allclose(per_row.numpy()[1:], cold.numpy()[1:],
                             atol=1e-3)
  for bad in (0.0, -1.0, float("nan"), float("inf")):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="temperature must be finite and > 0"):
      draw(tf.constant(bad))
  with pytest.raises(ValueError, match="one row per example: got 2 for 3"):
    draw(tf.constant([1.0, 0.5]))  # static shapes: caught at trace time


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_sample_rejects_non_finite_or_non_positive_temperature(bad):
  model = tfp_realnvp.RealNVP(**SMALL)
  with pytest.raises(ValueError, match="temperature must be finite and > 0"):
    model.sample(2, temperature=bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_decode_rejects_non_finite_latents(value):
  model = tfp_realnvp.RealNVP(**SMALL)
  z = np.zeros((2, 64), np.float32)
  z[1, 3] = value
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"latent contains NaN or inf.*\[N, 64\]"):
    model.decode(z)


def test_user_mistakes_get_messages_that_name_the_expectation():
  model = tfp_realnvp.RealNVP(**SMALL)
  two = [np.full(SHAPE, 10.0, np.float32), np.full(SHAPE, 20.0, np.float32)]
  with pytest.raises(ValueError, match=r"one tensor of shape \[N, 8, 8, 1\]"
                                       r".*np\.stack"):
    model.bits_per_dim(two)
  with pytest.raises(ValueError, match="at least one example"):
    model.log_prob(np.zeros((0,) + SHAPE, np.float32))
  cond = tfp_realnvp.RealNVP(**SMALL, num_classes=3)
  x = np.full((2,) + SHAPE, 10.0, np.float32)
  with pytest.raises(ValueError, match="one row per example: got 3 for 2"):
    cond.log_prob(x, labels=[0, 1, 2])
  # 1 label for 2 images used to broadcast in log_prob alone.
  with pytest.raises(ValueError, match="one row per example: got 1 for 2"):
    cond.log_prob(x, labels=[0])
  with pytest.raises(ValueError, match="one row per example: got 1 for 2"):
    cond.encode(x, labels=[0])
  with pytest.raises(ValueError, match="labels=k, one class"):
    cond.interpolate(np.full((4,) + SHAPE, 10.0, np.float32))
  assert cond.interpolate(np.full((4,) + SHAPE, 10.0, np.float32), steps=2,
                          labels=2).shape == (2, 2) + SHAPE


def test_runtime_shape_check_is_safe_for_any_rank():
  """The serving path sees shapes only at run time; a wrong rank must give
  our message, not a broadcasting error inside the check."""
  fn = tf.function(lambda t: validation.check_images(t, SHAPE),
                   input_signature=[tf.TensorSpec(None, tf.float32)])
  for shape in [(2, 8, 8), (64,), (2, 8, 8, 1, 1), (2, 8, 8, 3)]:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"images must have shape \[N, 8, 8, 1\]"):
      fn(tf.zeros(shape))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="at least one example"):
    fn(tf.zeros((0, 8, 8, 1)))
  assert fn(tf.fill((2, 8, 8, 1), 3.0)).shape == (2, 8, 8, 1)
