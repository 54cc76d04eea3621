"""The RealNVP model: exactness of the whole flow, the paper's architecture,
the public API, class conditioning, serialization and input errors."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tensorflow_probability.python.bijectors import chain as chain_lib
from tensorflow_probability.python.bijectors import invert as invert_lib
from tensorflow_probability.python.bijectors import joint_map as joint_map_lib
from tensorflow_probability.python.distributions import (
    transformed_distribution as td_lib)

import tfp_realnvp
from conftest import dense_log_det, perturb_weights
from tfp_realnvp import bijectors

tfb = tfp.bijectors
tfd = tfp.distributions
# TFP returns the non-composite-tensor variants (`_Chain`, ...) when a part
# holds Keras layers; these are the classes every variant derives from.
Chain = chain_lib._Chain  # pylint: disable=protected-access
JointMap = joint_map_lib._JointMap  # pylint: disable=protected-access
Invert = invert_lib._Invert  # pylint: disable=protected-access
TransformedDistribution = td_lib._TransformedDistribution  # pylint: disable=protected-access

SMALL = dict(num_res_blocks=1, num_filters=8)


def _model(shape, num_scales, seed=0, **kwargs):
  args = dict(SMALL)
  args.update(kwargs)
  model = tfp_realnvp.RealNVP(image_shape=shape, num_scales=num_scales,
                              **args)
  perturb_weights([model], seed=seed, scale=0.2)
  return model


def _images(rng, n, shape):
  return tf.constant(rng.uniform(0, 256, size=(n,) + shape), tf.float32)


@pytest.mark.parametrize("shape,num_scales", [((4, 4, 1), 2), ((8, 8, 3), 2),
                                              ((8, 8, 1), 2), ((4, 4, 1), 1)])
def test_full_flow_inverse_and_log_det(shape, num_scales, rng):
  keras.utils.set_random_seed(0)  # the x-dependence check below is not
  model = _model(shape, num_scales)  # met by every initialisation
  x = _images(rng, 3, shape)
  flow = model.flow(training=False)
  z = flow.forward(x)
  assert z.shape == (3, int(np.prod(shape)))
  # Round trip in the flow's working coordinates (after the fixed logit
  # preprocessing, which LogitPreprocess's own test covers): max abs < 1e-4.
  core, preprocess = flow.bijectors
  y = preprocess.forward(x)
  y_back = core.inverse(tf.identity(core.forward(y)))
  np.testing.assert_allclose(y_back.numpy(), y.numpy(), atol=1e-4, rtol=0)
  # In pixel units d(pixel)/d(logit) = p(1-p)·256/(1-2α) reaches 71, which
  # magnifies the float32 round-off above; 1e-3 is still a thousandth of a
  # quantization bin.
  x_back = flow.inverse(tf.identity(z))
  np.testing.assert_allclose(x_back.numpy(), x.numpy(), atol=1e-3, rtol=0)
  ldj = flow.forward_log_det_jacobian(x, event_ndims=3).numpy()
  dense = dense_log_det(model.flow(training=False).forward, x)
  np.testing.assert_allclose(ldj, dense, atol=1e-3, rtol=0)
  # The perturbed coupling and batch-norm layers contribute real volume
  # change beyond the fixed logit preprocessing.
  logit_ldj = bijectors.LogitPreprocess(model.alpha).forward_log_det_jacobian(
      x, event_ndims=3).numpy()
  assert np.abs(ldj - logit_ldj).max() > 0.5
  assert np.ptp(ldj - logit_ldj) > 0.1  # and it depends on x (couplings)


def test_change_of_variables(rng):
  keras.utils.set_random_seed(1)
  model = _model((8, 8, 1), 2, seed=1)
  # Temperature 0.5: the perturbed model maps N(0, I) latents onto the
  # saturated ends of the logit (x = -14.2 or 270.2, where float32 cannot
  # invert it); these latents stay inside its invertible range.
  z = tf.constant(0.5 * rng.normal(size=(4, 64)), tf.float32)
  x = model.decode(z)
  dist = model.distribution(training=False)
  flow = model.flow(training=False)
  fldj = flow.forward_log_det_jacobian(tf.identity(x), event_ndims=3)
  # The latent of x itself: decode -> encode round-trip error (1e-4 in z)
  # times |z| would otherwise blur a 1e-2 comparison.
  z_of_x = flow.forward(tf.identity(x))
  np.testing.assert_allclose(z_of_x.numpy(), z.numpy(), atol=1e-3)
  base = tfd.Independent(tfd.Normal(tf.zeros(64), 1.0), 1).log_prob(z_of_x)
  np.testing.assert_allclose(dist.log_prob(tf.identity(x)).numpy(),
                             (base + fldj).numpy(), rtol=1e-5, atol=1e-2)
  # ... and the model's own log_prob / bits_per_dim agree with the dist
  # (on images inside the pixel range, which the model checks).
  images = _images(rng, 4, (8, 8, 1))
  lp = model.log_prob(images).numpy()
  np.testing.assert_allclose(lp, dist.log_prob(images).numpy(), rtol=1e-6)
  np.testing.assert_allclose(model.bits_per_dim(images).numpy(),
                             -lp / (64 * math.log(2)), rtol=1e-6)


def test_distribution_is_a_tfp_transformed_distribution(rng):
  model = _model((8, 8, 1), 2)
  dist = model.distribution()
  assert isinstance(dist, TransformedDistribution)
  assert dist.event_shape == (8, 8, 1)
  assert isinstance(dist.bijector, Invert)
  samples = dist.sample(5, seed=(3, 4))
  assert samples.shape == (5, 8, 8, 1)
  inside = tf.clip_by_value(samples, 0.0, 255.9)
  assert np.all(np.isfinite(dist.log_prob(inside).numpy()))
  # A raw sample of this random flow leaves the pixel range [0, 256]: no
  # density is made up there (no cache answers from the sampling pass);
  # model.sample clips.
  outside = np.any((samples.numpy() < 0) | (samples.numpy() > 256),
                   axis=(1, 2, 3))
  assert outside.any()
  assert not np.isfinite(dist.log_prob(samples).numpy()[outside]).any()
  assert dist.sample(seed=(1, 1)).shape == (8, 8, 1)  # no batch dimension


def _couplings_in_order(bij):
  """Walks the bijector tree, yielding leaf bijectors in data->latent order."""
  if isinstance(bij, Chain) and not bij.name.startswith("squeeze"):
    for b in reversed(bij.bijectors):
      yield from _couplings_in_order(b)
  elif isinstance(bij, JointMap):
    for b in bij.bijectors:
      yield from _couplings_in_order(b)
  else:
    yield bij


def test_architecture_matches_section_3_6():
  model = tfp_realnvp.RealNVP((16, 16, 3), num_scales=3, **SMALL)
  leaves = list(_couplings_in_order(model.flow()))
  assert isinstance(leaves[0], bijectors.LogitPreprocess)
  per_scale = {}
  shapes = {}
  scale = 0
  for leaf in leaves[1:]:
    if isinstance(leaf, bijectors.AffineCoupling):
      per_scale.setdefault(scale, []).append((leaf.mask_type, leaf.parity))
      shapes.setdefault(scale, []).append(leaf.network.out_channels)
    elif isinstance(leaf, Invert):  # the concat closing a factor-out
      pass
    elif isinstance(leaf, tfb.Split):
      scale += 1
  cb, ch = "checkerboard", "channel"
  assert per_scale[0] == [(cb, 0), (cb, 1), (cb, 0), (ch, 0), (ch, 1), (ch, 0)]
  assert per_scale[1] == per_scale[0]
  assert per_scale[2] == [(cb, 0), (cb, 1), (cb, 0), (cb, 1)]
  # channels transformed: 3 at 16x16, 12/2 after squeeze, 6, 24/2, 12 (last).
  assert shapes[0] == [3, 3, 3, 6, 6, 6]
  assert shapes[1] == [6, 6, 6, 12, 12, 12]
  assert shapes[2] == [12, 12, 12, 12]
  # A batch-norm bijector follows every coupling.
  kinds = [type(b).__name__ for b in leaves]
  for i, kind in enumerate(kinds):
    if kind == "AffineCoupling":
      assert kinds[i + 1] == "FlowBatchNorm"
  # Factored dims: 16*16*3 = 768 = 384 (scale 1) + 192 (scale 2) + 192.
  assert model.latent_shapes == ((8, 8, 6), (4, 4, 12), (4, 4, 12))
  assert [int(np.prod(s)) for s in model.latent_shapes] == [384, 192, 192]
  # Feature maps double at each coarser scale.
  filters = [net.num_filters for net in model.coupling_networks]
  assert filters == [8] * 6 + [16] * 6 + [32] * 4


def test_per_scale_widths_build_each_scale_and_round_trip(tmp_path, rng):
  model = _model((16, 16, 3), 3, num_filters=[8, 16, 24])
  filters = [net.num_filters for net in model.coupling_networks]
  assert filters == [8] * 6 + [16] * 6 + [24] * 4
  assert model.get_config()["num_filters"] == [8, 16, 24]
  # The .keras round trip rebuilds the same widths and the same density.
  x = _images(rng, 2, (16, 16, 3))
  path = str(tmp_path / "widths.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert [n.num_filters for n in loaded.coupling_networks] == filters
  np.testing.assert_allclose(loaded.log_prob(x).numpy(),
                             model.log_prob(x).numpy(), rtol=1e-6)


def test_per_scale_latents(rng):
  model = _model((8, 8, 1), 2)
  x = _images(rng, 2, (8, 8, 1))
  z = model.encode(x)
  parts = model.split_latent(z)
  assert [tuple(p.shape) for p in parts] == [(2, 4, 4, 2), (2, 4, 4, 2)]
  np.testing.assert_array_equal(model.merge_latent(parts).numpy(), z.numpy())
  # The first part is exactly the factored-out half after scale 1.
  flow = model.flow()
  scale0 = flow.bijectors[0]  # Chain([scale chain, logit])
  factor = scale0.bijectors[0]
  inner = tfb.Chain(list(scale0.bijectors[1:]))
  h = inner.forward(model.flow().bijectors[1].forward(x))
  np.testing.assert_allclose(parts[0].numpy(), h[..., :2].numpy(), atol=1e-5)
  assert factor.name.startswith("factor_out")


def test_sample_interpolate_shapes_and_determinism():
  model = _model((8, 8, 1), 2)
  a = model.sample(6, temperature=0.7, seed=(1, 2))
  b = model.sample(6, temperature=0.7, seed=(1, 2))
  c = model.sample(6, temperature=0.7, seed=(1, 3))
  assert a.shape == (6, 8, 8, 1)
  np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not np.array_equal(a.numpy(), c.numpy())
  assert np.all(np.isfinite(a.numpy()))
  assert a.numpy().min() >= 0 and a.numpy().max() < 256
  four = model.sample(4, seed=(5, 6))
  grid = model.interpolate(four, steps=5)
  assert grid.shape == (5, 5, 8, 8, 1)
  # Corners of the eq. 19 manifold are the inputs (φ, φ' ∈ {0, π/2}).
  np.testing.assert_allclose(grid[0, 0].numpy(), four[0].numpy(), atol=1e-3)
  np.testing.assert_allclose(grid[0, -1].numpy(), four[1].numpy(), atol=1e-3)
  np.testing.assert_allclose(grid[-1, 0].numpy(), four[2].numpy(), atol=1e-3)
  np.testing.assert_allclose(grid[-1, -1].numpy(), four[3].numpy(), atol=1e-3)


def test_temperature_scales_latents():
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, **SMALL)
  # Unclipped samples may leave [0, 256) slightly, so use the flow itself.
  flow = model.flow()
  cold = flow.forward(model.sample(4, temperature=0.5, seed=(7, 7),
                                   clip=False))
  hot = flow.forward(model.sample(4, temperature=1.0, seed=(7, 7),
                                  clip=False))
  np.testing.assert_allclose(cold.numpy(), 0.5 * hot.numpy(), atol=1e-3)


def test_call_returns_log_prob_and_training_flag_follows_keras(rng):
  model = _model((8, 8, 1), 2)
  x = _images(rng, 8, (8, 8, 1))
  state = model.batch_norm_states[0]
  before = state.moving_mean.numpy().copy()
  inference = model(x, training=False)
  np.testing.assert_array_equal(state.moving_mean.numpy(), before)
  np.testing.assert_allclose(inference.numpy(), model.log_prob(x).numpy(),
                             rtol=1e-6)
  training = model(x, training=True)
  assert training.shape == (8,)
  assert not np.allclose(state.moving_mean.numpy(), before)
  assert not np.allclose(training.numpy(), inference.numpy())


def test_class_conditional(rng):
  model = _model((8, 8, 1), 2, num_classes=3)
  x = _images(rng, 4, (8, 8, 1))
  lp0 = model((x, tf.constant([0, 0, 0, 0])), training=False).numpy()
  lp1 = model((x, tf.constant([1, 1, 1, 1])), training=False).numpy()
  assert np.all(np.abs(lp0 - lp1) > 1e-3)
  dist = model.distribution(labels=tf.constant([2, 2, 2, 2]))
  assert dist.batch_shape == (4,)
  np.testing.assert_allclose(
      dist.log_prob(x).numpy(),
      model.log_prob(x, labels=tf.constant([2, 2, 2, 2])).numpy(), rtol=1e-6)
  bpd = model.bits_per_dim((x, tf.constant([1, 1, 1, 1]))).numpy()
  np.testing.assert_allclose(bpd, -lp1 / (64 * math.log(2)), rtol=1e-6)
  labels = tf.constant([0, 1, 2, 1])
  z = model.encode(x, labels)
  np.testing.assert_allclose(model.decode(z, labels).numpy(), x.numpy(),
                             atol=1e-3)
  for k in range(3):
    s = model.sample(5, labels=tf.fill([5], k), seed=(k, 1))
    assert s.shape == (5, 8, 8, 1)
    assert np.all(np.isfinite(s.numpy()))
  # Different classes decode the same latent differently.
  eps = tf.constant(rng.normal(size=(1, 64)), tf.float32)
  assert not np.allclose(model.decode(eps, [0]).numpy(),
                         model.decode(eps, [1]).numpy())
  assert model.interpolate(x, steps=3, labels=1).shape == (3, 3, 8, 8, 1)
  with pytest.raises(ValueError, match=r"\(images, labels\)"):
    model(x)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 3\)"):
    model.log_prob(x, labels=tf.constant([0, 1, 3, 0]))
  with pytest.raises(TypeError, match="integers"):
    model.log_prob(x, labels=tf.constant([0.0, 1.0, 2.0, 0.0]))


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_shape=(28, 28, 1), num_scales=4), "divisible by"),
    (dict(image_shape=(12, 10, 1), num_scales=3), "divisible by"),
    (dict(image_shape=(8, 8, 1), num_scales=4), "at least 2x2"),
    (dict(image_shape=(4, 4, 1), num_scales=3), "at least 2x2"),
    (dict(image_shape=(8, 8), num_scales=1), "three positive integers"),
    (dict(image_shape=(8, 8, 1), coupling="glow"), "coupling must be"),
    (dict(image_shape=(8, 8, 1), num_scales=0), "num_scales"),
    (dict(image_shape=(8, 8, 1), num_classes=1), "num_classes"),
    (dict(image_shape=(8, 8, 1), alpha=0.7), "alpha"),
    (dict(image_shape=(8, 8, 1), num_filters=0), "num_filters"),
    (dict(image_shape=(8, 8, 1), num_scales=2, num_filters=[16, 32, 64]),
     "num_filters has 3 widths but num_scales=2"),
    (dict(image_shape=(8, 8, 1), num_scales=2, num_filters=[16, 0]),
     "every num_filters entry must be an integer >= 1, got 0"),
    (dict(image_shape=(8, 8, 1), num_filters="wide"), "num_filters"),
    (dict(image_shape=(8, 8, 1), mixed_precision="float16"), "mixed_precision"),
])
def test_constructor_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    tfp_realnvp.RealNVP(**kwargs)


def test_bad_inputs_get_clear_errors():
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, **SMALL)
  good = tf.fill([2, 8, 8, 1], 100.0)
  with pytest.raises(ValueError, match=r"\[N, 8, 8, 1\]"):
    model.log_prob(tf.zeros([2, 8, 8, 3]))
  with pytest.raises(TypeError, match="float32 images"):
    model.log_prob(tf.zeros([2, 8, 8, 1], tf.uint8))
  with pytest.raises(tf.errors.InvalidArgumentError, match="above 256"):
    model.log_prob(tf.fill([2, 8, 8, 1], 300.0))
  with pytest.raises(tf.errors.InvalidArgumentError, match="below 0"):
    model.log_prob(tf.fill([2, 8, 8, 1], -1.0))
  with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or inf"):
    model.log_prob(tf.fill([2, 8, 8, 1], float("nan")))
  with pytest.raises(ValueError, match=r"\[N, 64\]"):
    model.decode(tf.zeros([2, 63]))
  with pytest.raises(ValueError, match="unconditional"):
    model.log_prob(good, labels=[0, 1])
  with pytest.raises(ValueError, match="4 images"):
    model.interpolate(good)
  assert np.all(np.isfinite(model.log_prob(good).numpy()))


def test_loss_is_the_nll_plus_the_papers_l2_penalty(rng):
  """The loss `fit` minimises: mean NLL + l2·Σw² over the s/t networks'
  kernels and scales (`networks.L2Penalty`, Keras' `L2` as TF's fused
  L2Loss), each penalty added once."""
  from tfp_realnvp import _keras_glue
  from tfp_realnvp import networks
  x = tf.constant(rng.normal(size=(3, 4, 2, 5)).astype("float32"))
  np.testing.assert_allclose(networks.L2Penalty(0.3)(x).numpy(),
                             keras.regularizers.L2(0.3)(x).numpy(),
                             rtol=1e-6)
  model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, num_res_blocks=1,
                              num_filters=4, l2_reg=1e-2)
  images = rng.uniform(0, 256, (4, 8, 8, 1)).astype("float32")
  log_prob = model(images)
  regularized = [v for v in model.trainable_weights
                 if getattr(v, "regularizer", None) is not None]
  # v and g of the 4 weight-normalised convolutions of 4 couplings
  # (in, residual block x2, out).
  assert len(regularized) == len(model.losses) == 32
  assert {v.path.rsplit("/", 1)[-1] for v in regularized} == {"kernel", "g"}
  want = -np.mean(log_prob.numpy()) + 1e-2 * sum(
      float(np.sum(np.square(v.numpy()))) for v in regularized)
  got = model.compute_loss(images, y_pred=log_prob)
  np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
  # Any tensor penalty (a user's add_loss) is summed first.
  loss = _keras_glue.nll_loss(log_prob, None, [tf.ones([2, 3]),
                                               tf.constant(0.5)])
  np.testing.assert_allclose(loss.numpy(),
                             -np.mean(log_prob.numpy()) + 6.5, rtol=1e-6)


def test_save_and_restore_give_identical_log_prob(tmp_path, rng):
  model = _model((8, 8, 1), 2, num_classes=2)
  x = _images(rng, 3, (8, 8, 1))
  labels = tf.constant([0, 1, 1])
  expected = model.log_prob(x, labels).numpy()

  path = str(tmp_path / "realnvp.weights.h5")
  model.save_weights(path)
  other = tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, num_classes=2, **SMALL)
  assert not np.allclose(other.log_prob(x, labels).numpy(), expected)
  other.load_weights(path)
  np.testing.assert_array_equal(other.log_prob(x, labels).numpy(), expected)

  keras_path = str(tmp_path / "realnvp.keras")
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  model.save(keras_path)
  loaded = keras.models.load_model(keras_path)
  assert isinstance(loaded, tfp_realnvp.RealNVP)
  assert loaded.get_config() == model.get_config()
  np.testing.assert_array_equal(loaded.log_prob(x, labels).numpy(), expected)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_and_keeps_the_flow_in_float32(policy, rng):
  """Half-precision s/t networks; bijector arithmetic, log-dets and loss in
  float32. bf16/f16 run on CPU here (slowly); the point is correctness."""
  x = _images(rng, 32, (8, 8, 1))
  reference = _model((8, 8, 1), 2, seed=3)
  mixed = _model((8, 8, 1), 2, seed=3, mixed_precision=policy)
  for a, b in zip(reference.weights, mixed.weights):
    b.assign(a)
  half = policy.split("_")[1]
  assert mixed.coupling_networks[0].compute_dtype == half
  # (the typicality reference's count and digest are int32)
  assert all(v.dtype == "float32" for v in mixed.weights
             if "int" not in v.dtype)
  # The FLOPs really run in half precision: every convolution and batch norm
  # of the traced graph (a sublayer left at float32 would cast back).
  graph = tf.function(mixed.log_prob).get_concrete_function(
      tf.TensorSpec([2, 8, 8, 1], tf.float32)).graph
  convs = [op for op in graph.get_operations() if op.type == "Conv2D"]
  norms = [op for op in graph.get_operations()
           if op.type == "FusedBatchNormV3"]
  nets = mixed.coupling_networks
  assert len(convs) == sum(2 + len(n.block_convs) for n in nets)
  assert len(norms) == sum(1 + len(n.block_norms) for n in nets)
  assert {op.outputs[0].dtype.name for op in convs + norms} == {half}
  lp_ref = reference.log_prob(x).numpy()
  lp = mixed.log_prob(x)
  assert lp.dtype == tf.float32
  # Half precision only enters through s and t: the densities agree to the
  # networks' rounding (bf16 has 8 mantissa bits), not to float32 round-off.
  tolerance = 0.01 if policy == "mixed_bfloat16" else 0.002
  np.testing.assert_allclose(lp.numpy(), lp_ref, rtol=tolerance)
  assert not np.allclose(lp.numpy(), lp_ref, rtol=1e-6, atol=0)
  mixed.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer) == (
      policy == "mixed_float16")
  history = mixed.fit(x, batch_size=16, epochs=3, verbose=0, shuffle=False,
                      score_statistics=False)
  losses = history.history["loss"]
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  assert np.all(np.isfinite(mixed.log_prob(x).numpy()))
  assert np.all(np.isfinite(mixed.sample(4, seed=(1, 2)).numpy()))


def test_mixed_precision_follows_the_global_policy():
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("mixed_bfloat16")
  try:
    model = tfp_realnvp.RealNVP((4, 4, 1), num_scales=1, **SMALL)
  finally:
    keras.config.set_dtype_policy(previous)
  assert model.mixed_precision == "mixed_bfloat16"
  assert model.dtype_policy.name == "float32"
  assert model.batch_norm_states[0].dtype_policy.name == "float32"
  assert model.get_config()["mixed_precision"] == "mixed_bfloat16"


def test_fit_traces_its_train_step_once(rng):
  """No retracing: Keras' train and test steps are traced once for the whole
  fit (same input signature every step). The Python bodies of `train_step`
  and `test_step` run only while TF traces them, so counting their runs
  counts traces."""
  model = _model((8, 8, 1), 2)
  traces = {"train": 0, "test": 0}

  def counting(kind, step):
    def wrapped(data):
      assert not tf.executing_eagerly()
      traces[kind] += 1
      return step(data)
    return wrapped
  model.train_step = counting("train", model.train_step)
  model.test_step = counting("test", model.test_step)
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  data = tf.data.Dataset.from_tensor_slices(
      _images(rng, 64, (8, 8, 1))).batch(16, drop_remainder=True)
  history = model.fit(data, epochs=3, validation_data=data, verbose=0,
                      score_statistics=False)
  assert len(history.history["loss"]) == 3
  assert traces == {"train": 1, "test": 1}
