"""coupling='spline': the rational-quadratic spline coupling (Neural Spline
Flows) with every mask, Glow step, prior, conditioning, mixed precision and
the export; exact inverse and log-det with perturbed weights."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_realnvp
from conftest import (check_served_like_the_model, dense_log_det,
                      flow_leaves, perturb_weights)
from tfp_realnvp import networks
from tfp_realnvp.bijectors import cache, coupling, spline

# One scale (four checkerboard couplings) unless the test needs more: the
# spline's traced graph is about twice the affine one's.
SMALL = dict(num_scales=1, num_res_blocks=1, num_filters=8, coupling="spline",
             spline_bins=5, spline_bound=2.0)


def _coupling(mask_type, checkerboard, shape, seed=1):
  transform = coupling.SplineTransform(bins=6, bound=2.0)
  spatial = shape[:2]
  net = networks.CouplingResNet(
      coupling.conditioner_output_channels(mask_type, shape[2], checkerboard,
                                           spatial) *
      transform.params_per_element, num_filters=8, num_blocks=1,
      affine=False)
  net.build((None,) + spatial + (coupling.conditioner_input_channels(
      mask_type, shape[2], checkerboard, spatial),))
  perturb_weights([net], seed=seed, scale=0.3)
  return coupling.AffineCoupling(net, mask_type=mask_type, parity=1,
                                 checkerboard=checkerboard,
                                 coupling=transform)


@pytest.mark.parametrize("mask_type, checkerboard, shape", [
    ("checkerboard", "masked", (4, 4, 2)),
    ("checkerboard", "squeezed", (4, 4, 2)),
    ("checkerboard", "squeezed", (3, 3, 2)),   # odd: falls back to masked
    ("channel", "masked", (4, 4, 3)),
])
def test_spline_coupling_is_exact_inside_and_in_both_tails(
    mask_type, checkerboard, shape):
  bijector = _coupling(mask_type, checkerboard, shape)
  x = tf.constant(np.random.default_rng(0).normal(scale=1.6,
                                                  size=(4,) + shape),
                  tf.float32)
  # Points inside [-2, 2] and beyond it on both sides.
  assert np.mean(x.numpy() < -2) > 0.05 and np.mean(x.numpy() > 2) > 0.05
  y = bijector.forward(x)
  changed = np.abs(y.numpy() - x.numpy()) > 1e-6
  assert 0.2 < changed.mean() < 0.7  # the changed part, inside [-B, B]
  # Outside [-B, B] the spline is the identity, exactly.
  tails = np.abs(x.numpy()) > 2.0
  np.testing.assert_array_equal(y.numpy()[tails], x.numpy()[tails])
  np.testing.assert_allclose(bijector.inverse(tf.identity(y)).numpy(),
                             x.numpy(), atol=2e-6)
  ldj = bijector.forward_log_det_jacobian(x, event_ndims=3).numpy()
  np.testing.assert_allclose(ldj, dense_log_det(bijector.forward, x),
                             atol=2e-5)
  assert np.abs(ldj).max() > 0.1  # non-trivial
  ildj = bijector.inverse_log_det_jacobian(tf.identity(y), event_ndims=3)
  np.testing.assert_allclose(ildj.numpy(), -ldj, atol=2e-5)


def test_masked_conditioning_elements_pass_through_exactly():
  bijector = _coupling("checkerboard", "masked", (4, 4, 1))
  x = tf.constant(np.random.default_rng(2).uniform(-1.5, 1.5, (2, 4, 4, 1)),
                  tf.float32)
  y = bijector.forward(x).numpy()
  b = coupling.checkerboard_mask(4, 4, 1, tf.float32).numpy()
  keep = np.broadcast_to(b == 1, y.shape)
  np.testing.assert_array_equal(y[keep], x.numpy()[keep])
  assert np.all(y[~keep] != x.numpy()[~keep])


def _model(seed=0, perturb=0.1, **options):
  keras.utils.set_random_seed(seed)
  model = tfp_realnvp.RealNVP((8, 8, 1), **dict(SMALL, **options))
  if perturb:
    perturb_weights([model], seed=seed, scale=perturb)
  return model


def _images(n=3, seed=0):
  return tf.constant(np.random.default_rng(seed).uniform(
      0, 256, (n, 8, 8, 1)), tf.float32)


def test_spline_model_starts_at_the_identity_coupling():
  """Zero heads: every spline coupling is the identity map at the start
  (to float32 rounding), so the untrained model is the affine one's."""
  x = _images()
  spline_model = _model(perturb=0, num_scales=2)
  affine_model = _model(perturb=0, num_scales=2, coupling="affine")
  np.testing.assert_allclose(spline_model.log_prob(x).numpy(),
                             affine_model.log_prob(x).numpy(), rtol=1e-5)
  flow = spline_model.flow(training=False)
  couplings = [b for b in flow_leaves(flow) if "coupling" in b.name]
  assert len(couplings) == 10
  h = tf.constant(np.random.default_rng(1).normal(size=(2, 8, 8, 1)),
                  tf.float32)
  first, = [b for b in couplings if b.name.startswith("coupling_0_")]
  np.testing.assert_allclose(first.forward(h).numpy(), h.numpy(), atol=1e-5)
  assert abs(first.forward_log_det_jacobian(h, event_ndims=3).numpy()).max(
  ) < 1e-4


@pytest.mark.parametrize("options", [
    dict(),
    dict(num_scales=2, checkerboard="squeezed", actnorm=True,
         permutation="conv1x1", use_batch_norm=False, prior="split"),
    dict(checkerboard="squeezed", permutation="reverse", prior="made",
         made_hidden_units=[16]),
])
def test_spline_model_is_exact_through_encode(options):
  """encode's dense Jacobian covers the whole flow and the learned priors."""
  model = _model(**options)
  x = _images(2)
  eps = model.encode(x)
  np.testing.assert_allclose(model.decode(eps).numpy(), x.numpy(), atol=5e-3)
  np.testing.assert_allclose(
      model.log_prob(x).numpy(),
      (-0.5 * tf.reduce_sum(eps ** 2, axis=1) - 32 * np.log(2 * np.pi)
       ).numpy() + dense_log_det(model.encode, x), rtol=1e-5, atol=2e-2)


def test_class_conditional_spline_model_is_exact():
  model = _model(num_classes=3)
  x, labels = _images(), tf.constant([0, 2, 1])
  eps = model.encode(x, labels)
  np.testing.assert_allclose(model.decode(eps, labels).numpy(), x.numpy(),
                             atol=5e-3)
  lp = model.log_prob(x, labels).numpy()
  assert np.all(np.isfinite(lp))
  assert not np.allclose(lp, model.log_prob(x, tf.constant([1, 0, 2])).numpy())


def test_traced_with_an_unknown_batch_size_every_shape_is_static():
  """A traced `fit` or serving signature has an unknown batch size; the
  couplings after a spline still see their static channel count."""
  model = _model(actnorm=True, permutation="conv1x1")
  x = _images(3)
  traced = tf.function(model.log_prob).get_concrete_function(
      tf.TensorSpec([None, 8, 8, 1], tf.float32))
  assert traced.output_shapes.as_list() == [None]
  np.testing.assert_allclose(traced(x).numpy(), model.log_prob(x).numpy(),
                             rtol=1e-5)


def test_results_follow_the_weights_and_no_spline_entry_outlives_its_call():
  model = _model()
  x = _images()
  f = tf.function(lambda images: model.log_prob(images))
  before = f(x).numpy()
  perturb_weights([model.coupling_networks[0]], seed=5, scale=0.3)
  after = f(x).numpy()
  assert not np.allclose(before, after)
  np.testing.assert_allclose(after, model.log_prob(x).numpy(), rtol=1e-5)
  assert cache.current() is None


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_one_search_map_equals_tfp_spline(dtype):
  """SplineMap computes the value and the log-det from one bin search; both
  directions equal TFP's `RationalQuadraticSpline` (which searches per
  method), inside the interval and in both tails, with non-trivial knots."""
  rng = np.random.default_rng(3)
  bins, bound = 5, 2.0
  params = tf.constant(rng.normal(0, 1.5, (6, 4 * (3 * bins - 1))), dtype)
  x = tf.constant(np.concatenate(
      [rng.uniform(-1.99, 1.99, (6, 3)), [[-2.5], [3.0], [-2.0], [2.0],
                                          [2.5], [-7.0]]], axis=1), dtype)
  ours = spline.SplineMap(params, bins, bound)
  tfp_spline = ours._spline  # pylint: disable=protected-access
  assert isinstance(tfp_spline, tfp.bijectors.RationalQuadraticSpline)
  y = ours.forward(x)
  tol = dict(rtol=1e-5, atol=1e-5) if dtype == tf.float32 else dict(
      rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(y, tfp_spline.forward(x), **tol)
  np.testing.assert_allclose(
      ours.forward_log_det_jacobian(x, 1),
      tfp_spline.forward_log_det_jacobian(x, event_ndims=1), **tol)
  np.testing.assert_allclose(ours.inverse(y), tfp_spline.inverse(y), **tol)
  # Steep random bins lose a few float32 digits on the way back (TFP's
  # inverse as much as ours); float64 is exact to 1e-10.
  np.testing.assert_allclose(ours.inverse(y), x, **(
      dict(rtol=0, atol=1e-3) if dtype == tf.float32 else tol))
  np.testing.assert_allclose(
      ours.inverse_log_det_jacobian(y, 1),
      tfp_spline.inverse_log_det_jacobian(y, event_ndims=1), **tol)
  assert np.all(ours.forward_log_det_jacobian(x, 0).numpy()[:, 3:] == 0)
  assert np.any(np.abs(ours.forward_log_det_jacobian(x, 0).numpy()[:, :3])
                > 1e-2)


def test_a_spline_coupling_searches_its_bins_once_per_direction():
  """The traced log_prob of a spline model has one searchsorted per
  coupling (TFP's spline alone would search again for the log-det)."""
  model = _model()
  x = _images()
  graph = tf.function(lambda v: model.log_prob(v)).get_concrete_function(
      x).graph
  searches = [op for op in graph.get_operations()
              if op.type in ("LowerBound", "UpperBound")]
  assert len(searches) == len(model.coupling_networks) > 0


def test_spline_model_trains_saves_and_loads(tmp_path):
  model = _model(perturb=0, spline_bins=4)
  # One changed channel per element at 8x8x1, 3K - 1 values each.
  assert model.coupling_networks[0].out_channels == 3 * 4 - 1
  model.compile(optimizer="adam")
  x = np.random.default_rng(0).uniform(0, 256, (32, 8, 8, 1)).astype(
      "float32")
  history = model.fit(x, batch_size=16, epochs=2, verbose=0, shuffle=False,
                      score_statistics=False)
  losses = history.history["loss"]
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  path = os.path.join(tmp_path, "spline.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  assert loaded.coupling == "spline" and loaded.spline_bins == 4
  assert loaded.spline_bound == 2.0
  np.testing.assert_allclose(loaded.log_prob(x[:4]).numpy(),
                             model.log_prob(x[:4]).numpy(), rtol=1e-6)
  assert np.all(np.isfinite(model.sample(4, seed=(1, 2)).numpy()))


def test_mixed_precision_spline_keeps_the_spline_in_float32():
  reference = _model(seed=3)
  mixed = _model(seed=3, mixed_precision="mixed_bfloat16")
  for a, b in zip(reference.weights, mixed.weights):
    b.assign(a)
  x = _images(4)
  lp = mixed.log_prob(x)
  assert lp.dtype == tf.float32
  np.testing.assert_allclose(lp.numpy(), reference.log_prob(x).numpy(),
                             rtol=0.01)
  eps = mixed.encode(x)
  np.testing.assert_allclose(mixed.decode(eps).numpy(), x.numpy(), atol=5e-2)


@pytest.mark.parametrize("options, match", [
    (dict(spline_bins=1), "spline_bins must be an integer >= 2"),
    (dict(spline_bins=2.5), "spline_bins must be an integer >= 2"),
    (dict(spline_bound=0.0), "spline_bound must be a finite number > 0"),
    (dict(spline_bound=float("inf")), "spline_bound must be a finite"),
    (dict(coupling="splines"), "coupling must be one of"),
])
def test_bad_spline_options_are_named(options, match):
  with pytest.raises(ValueError, match=match):
    tfp_realnvp.RealNVP((8, 8, 1), **dict(SMALL, **options))


def test_spline_model_exports_and_serves(tmp_path):
  model = _model(actnorm=True, checkerboard="squeezed", name="splinish")
  check_served_like_the_model(model, str(tmp_path / "saved_models"),
                              _images(4).numpy())


def test_command_line_flags_build_a_spline_model():
  from training import builders, configs, flags  # pylint: disable=import-outside-toplevel
  from training import train as train_cli  # pylint: disable=import-outside-toplevel
  args = train_cli.parser().parse_args(
      ["--config", "digits", "--coupling", "spline", "--spline_bins", "4",
       "--spline_bound", "2.5", "--num_scales", "1", "--num_res_blocks", "1",
       "--num_filters", "8"])
  config = flags.config_from_args(args)
  configs.validate(config)
  model = builders.build_model(config, (8, 8, 1), None)
  assert model.coupling == "spline" and model.spline_bins == 4
  assert model.coupling_transform.bound == 2.5
  for key, value, match in (("spline_bins", 1, "spline_bins"),
                            ("spline_bound", 0.0, "spline_bound")):
    with pytest.raises(ValueError, match=match):
      configs.validate(dict(config, **{key: value}))
