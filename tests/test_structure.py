"""The library's seams: the multi-scale bijector on its own, the mask
strategies, the affine formula, the prior / mask / dequantizer extension
points, and `.keras` files written before the restructuring."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_realnvp
from conftest import dense_log_det, perturb_weights
from tfp_realnvp import dequantization, estimators, networks, prior, scores
from tfp_realnvp.bijectors import (cache, coupling, masks, one_pass_chain,
                                   real_nvp_flow)

DATA = os.path.join(os.path.dirname(__file__), "data")


def _flow_layers(shape, num_scales, use_batch_norm=True, seed=0):
  nets, states = [], []
  for step in real_nvp_flow.plan(shape, num_scales):
    if step.kind != "coupling":
      continue
    net = networks.CouplingResNet(step.out_channels, num_filters=8,
                                  num_blocks=1)
    net.build((None,) + tuple(step.shape[:2]) + (step.in_channels,))
    nets.append(net)
    if use_batch_norm:
      state = tfp_realnvp.bijectors.BatchNormState()
      state.build((None,) + tuple(step.shape))
      states.append(state)
  perturb_weights(nets + states, seed=seed, scale=0.3)
  return nets, states


def test_multiscale_bijector_alone_is_exact(rng):
  shape = (4, 4, 2)
  nets, states = _flow_layers(shape, num_scales=2)
  flow = tfp_realnvp.bijectors.MultiScaleRealNVP(
      shape, num_scales=2, coupling_networks=nets, batch_norm_states=states)
  x = tf.constant(rng.normal(size=(3,) + shape), tf.float32)
  z = flow.forward(x)
  assert z.shape == (3, 32)
  np.testing.assert_allclose(flow.inverse(tf.identity(z)).numpy(), x.numpy(),
                             atol=1e-4, rtol=0)
  ldj = flow.forward_log_det_jacobian(x, event_ndims=3).numpy()
  dense = dense_log_det(lambda t: flow.forward(t), x)
  np.testing.assert_allclose(ldj, dense, atol=2e-3, rtol=0)
  assert np.abs(ldj).max() > 0.1  # perturbed weights: a real log-det
  # Named steps, data -> latent order, as in the schematic.
  names = [s.name for s in flow.steps]
  assert names == ([f"coupling_{i}_s0_checkerboard{i % 2}" for i in range(3)]
                   + ["squeeze_s0"] +
                   [f"coupling_{i}_s0_channel{(i - 3) % 2}"
                    for i in range(3, 6)] + ["factor_out_s0"] +
                   [f"coupling_{i}_s1_checkerboard{(i - 6) % 2}"
                    for i in range(6, 10)])
  assert flow.latent_shapes == ((2, 2, 4), (2, 2, 4))


def test_multiscale_bijector_is_the_models_flow(rng):
  model = tfp_realnvp.RealNVP(image_shape=(8, 8, 1), num_scales=2,
                              num_res_blocks=1, num_filters=8)
  perturb_weights(model.coupling_networks + model.batch_norm_states, seed=3)
  x = tf.constant(rng.uniform(0, 256, (2, 8, 8, 1)), tf.float32)
  standalone = tfp_realnvp.bijectors.MultiScaleRealNVP(
      (8, 8, 1), 2, model.coupling_networks, model.batch_norm_states,
      preprocess=tfp_realnvp.bijectors.LogitPreprocess(alpha=model.alpha))
  np.testing.assert_array_equal(standalone.forward(x).numpy(),
                                model.encode(x).numpy())


@pytest.mark.parametrize("options", [
    dict(use_batch_norm=True),
    dict(actnorm=True, permutation="conv1x1", prior="split",
         use_batch_norm=True),
    dict(permutation="reverse", checkerboard="squeezed"),
], ids=["paper", "glow_split_bn", "reverse_squeezed"])
def test_the_flows_one_pass_agrees_with_its_chain(options, rng):
  """`MultiScaleRealNVP` walks its parts once for value and log-det (the
  calls `TransformedDistribution` makes); `tfb.Chain` of the same parts
  (its `bijectors`) gives the same values and log-dets, the inverse log-det
  in the same bits (the same order of the sum). Other event ranks and
  `validate_args` take the Chain's path."""
  model = tfp_realnvp.RealNVP(image_shape=(8, 8, 2), num_scales=2,
                              num_res_blocks=1, num_filters=8, **options)
  perturb_weights(model.layers, seed=5, scale=0.1)
  flow = model.flow()
  chain = cache.Chain(flow.bijectors)
  x = tf.constant(rng.uniform(0, 256, (3, 8, 8, 2)), tf.float32)
  z = flow.forward(x)
  np.testing.assert_array_equal(z.numpy(), chain.forward(x).numpy())
  fldj = flow.forward_log_det_jacobian(x, event_ndims=3).numpy()
  np.testing.assert_allclose(
      fldj, chain.forward_log_det_jacobian(x, event_ndims=3).numpy(),
      rtol=1e-6)
  assert np.abs(fldj).max() > 1.0
  z = tf.identity(z)
  np.testing.assert_allclose(flow.inverse(z).numpy(), x.numpy(), atol=1e-2)
  np.testing.assert_array_equal(flow.inverse(z).numpy(),
                                chain.inverse(z).numpy())
  np.testing.assert_array_equal(
      flow.inverse_log_det_jacobian(z, event_ndims=1).numpy(),
      chain.inverse_log_det_jacobian(z, event_ndims=1).numpy())
  # One evaluation: the log-det of an output is the negated forward one.
  with cache.evaluation():
    out = flow.forward(x)
    np.testing.assert_array_equal(
        flow.inverse_log_det_jacobian(out, event_ndims=1).numpy(), -fldj)
  # A larger event rank (the Chain's path) sums over the extra axis.
  np.testing.assert_allclose(
      flow.forward_log_det_jacobian(x[None], event_ndims=4).numpy(),
      [fldj.sum()], rtol=1e-5)
  assert flow.forward_event_shape_tensor([8, 8, 2]).numpy().tolist() == [128]
  assert flow.inverse_event_shape_tensor([128]).numpy().tolist() == [8, 8, 2]


def test_multiscale_bijector_errors():
  nets, _ = _flow_layers((4, 4, 2), 2, use_batch_norm=False)
  with pytest.raises(ValueError, match="has 10 couplings; got 9"):
    tfp_realnvp.bijectors.MultiScaleRealNVP((4, 4, 2), 2, nets[:9])
  with pytest.raises(ValueError, match="one state per coupling"):
    tfp_realnvp.bijectors.MultiScaleRealNVP(
        (4, 4, 2), 2, nets, batch_norm_states=[object()])
  with pytest.raises(ValueError, match="divisible by 2\\*\\*\\(num_scales-1\\)"):
    real_nvp_flow.plan((6, 6, 1), 3)
  with pytest.raises(ValueError, match="ends with a FLATTEN entry"):
    one_pass_chain.OnePassChain([tfp_realnvp.bijectors.Squeeze((4, 4, 2))],
                                path=[], event_shape_in=(4, 4, 2))


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize("mask_type", ["checkerboard", "channel"])
def test_mask_split_merge_round_trip(mask_type, parity, rng):
  mask = masks.make_mask(mask_type, parity)
  x = tf.constant(rng.normal(size=(2, 4, 4, 5)), tf.float32)
  conditioner_input, part = mask.split(x)
  assert conditioner_input.shape[-1] == mask.conditioner_input_channels(5)
  np.testing.assert_array_equal(mask.merge(x, part).numpy(), x.numpy())
  # Changing the transformed part never touches the conditioning part.
  s = tf.ones_like(part[..., :mask.conditioner_output_channels(5)])
  s, t = mask.restrict(x, s, s)
  y = mask.merge(x, part * tf.exp(s) + t).numpy()
  changed = np.abs(y - x.numpy()) > 0
  if mask_type == "checkerboard":
    b = masks.checkerboard_mask(4, 4, parity).numpy()[0, :, :, 0] > 0
    assert not changed[:, b].any() and changed[:, ~b].all()
  else:
    cond = slice(0, 2) if parity == 0 else slice(3, 5)
    assert not changed[..., cond].any()
    assert changed.sum() == changed.size - 2 * 16 * 2


def test_affine_formula_once(rng):
  s = tf.constant(rng.normal(size=(2, 3, 3, 2)), tf.float32)
  t = tf.constant(rng.normal(size=(2, 3, 3, 2)), tf.float32)
  x = tf.constant(rng.normal(size=(2, 3, 3, 2)), tf.float32)
  bij = coupling.affine(s, t)
  np.testing.assert_allclose(bij.forward(x).numpy(),
                             (x * tf.exp(s) + t).numpy(), rtol=1e-6)
  np.testing.assert_allclose(bij.inverse(bij.forward(x)).numpy(), x.numpy(),
                             atol=1e-5)
  np.testing.assert_allclose(
      bij.forward_log_det_jacobian(x, event_ndims=3).numpy(),
      tf.reduce_sum(s, axis=[1, 2, 3]).numpy(), rtol=1e-6)
  additive = coupling.affine(None, t)
  np.testing.assert_allclose(additive.forward(x).numpy(), (x + t).numpy())
  np.testing.assert_array_equal(
      additive.forward_log_det_jacobian(x, event_ndims=3).numpy(), [0.0, 0.0])
  np.testing.assert_allclose(
      bij.inverse_log_det_jacobian(x, event_ndims=3).numpy(),
      -tf.reduce_sum(s, axis=[1, 2, 3]).numpy(), rtol=1e-6)


def test_keras_file_from_before_the_restructuring_loads():
  """Weight paths of `.keras` files are unchanged (Keras names list items
  by class): a conditional model saved by the previous layout (perturbed
  weights and moving statistics) gives the log_prob it gave then."""
  model = keras.saving.load_model(
      os.path.join(DATA, "pre_issue14_conditional.keras"))
  data = np.load(os.path.join(DATA, "pre_issue14_conditional.npz"))
  lp = model.log_prob(data["x"], labels=data["y"]).numpy()
  np.testing.assert_allclose(lp, data["lp"], rtol=1e-6, atol=1e-3)


class _ShiftedPrior(prior.Prior):
  """N(1, I): a prior defined by one class (the extension point)."""

  def loc_and_log_scale(self, labels):
    return tf.ones([self.latent_dim]), tf.zeros([self.latent_dim])


def test_a_new_prior_is_one_class_and_one_option(monkeypatch, rng):
  monkeypatch.setitem(prior.PRIORS, "shifted", _ShiftedPrior)
  kwargs = dict(image_shape=(4, 4, 1), num_scales=1, num_res_blocks=1,
                num_filters=8)
  shifted = tfp_realnvp.RealNVP(prior="shifted", **kwargs)
  plain = tfp_realnvp.RealNVP(**kwargs)
  plain.set_weights(shifted.get_weights())
  x = tf.constant(rng.uniform(0, 256, (3, 4, 4, 1)), tf.float32)
  z = plain.encode(x)
  # log N(z; 1, I) - log N(z; 0, I) = Σ z - D/2.
  expected = tf.reduce_sum(z, axis=1) - 8.0
  np.testing.assert_allclose(
      (shifted.log_prob(x) - plain.log_prob(x)).numpy(), expected.numpy(),
      rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(shifted.decode(shifted.encode(x)).numpy(),
                             x.numpy(), atol=1e-3)
  assert shifted.get_config()["prior"] == "shifted"
  with pytest.raises(ValueError, match="prior must be one of"):
    tfp_realnvp.RealNVP(prior="vampprior", **kwargs)
  with pytest.raises(ValueError, match="unconditional"):
    tfp_realnvp.RealNVP(prior="standard_normal", num_classes=3, **kwargs)


def _assert_flow_is_exact(flow, rng):
  """Inverse and log-det (dense Jacobian) of `flow` on (2, 4, 4, 2) pixels;
  returns the pixels."""
  x = tf.constant(rng.uniform(1, 255, (2, 4, 4, 2)), tf.float32)
  z = flow.forward(x)
  np.testing.assert_allclose(flow.inverse(tf.identity(z)).numpy(), x.numpy(),
                             atol=2e-3)
  ldj = flow.forward_log_det_jacobian(x, event_ndims=3).numpy()
  np.testing.assert_allclose(ldj, dense_log_det(flow.forward, x), atol=5e-3,
                             rtol=1e-5)
  return x


class _DoubledCheckerboard(masks.CheckerboardMask):
  """A checkerboard whose conditioner also sees x itself (new strategy)."""

  def conditioner_input_channels(self, channels, spatial=None):
    return 2 * channels + 1

  def split(self, x):
    h, part = super().split(x)
    return tf.concat([h, x * self._mask(x)], axis=-1), part


def test_a_new_mask_strategy_is_one_class_and_one_option(monkeypatch, rng):
  monkeypatch.setitem(masks.CHECKERBOARDS, "doubled", _DoubledCheckerboard)
  model = tfp_realnvp.RealNVP(image_shape=(4, 4, 2), num_scales=2,
                              num_res_blocks=1, num_filters=8,
                              checkerboard="doubled")
  assert model.coupling_networks[0].in_conv.v.shape[2] == 5
  perturb_weights(model.coupling_networks + model.batch_norm_states, seed=1)
  _assert_flow_is_exact(model.flow(), rng)
  with pytest.raises(ValueError, match="checkerboard must be one of"):
    tfp_realnvp.RealNVP(image_shape=(4, 4, 2), checkerboard="diagonal",
                        num_scales=2)


def test_uniform_dequantizer_option(rng):
  kwargs = dict(image_shape=(4, 4, 1), num_scales=1, num_res_blocks=1,
                num_filters=8)
  model = tfp_realnvp.RealNVP(dequantizer="uniform", **kwargs)
  levels = tf.constant(rng.integers(0, 256, (3, 4, 4, 1)), tf.float32)
  # Inference: the fixed noise of the layer's seed, log q = 0.
  u = tf.minimum(tf.random.stateless_uniform(levels.shape, seed=[0, 0]),
                 dequantization.MAX_NOISE)
  np.testing.assert_allclose(model(levels).numpy(),
                             model.log_prob(levels + u).numpy(), rtol=1e-6)
  np.testing.assert_array_equal(model(levels).numpy(), model(levels).numpy())
  # Training: fresh noise inside [k, k + 1).
  x1, _ = model.dequantizer(levels, training=True)
  x2, _ = model.dequantizer(levels, training=True)
  assert not np.array_equal(x1.numpy(), x2.numpy())
  assert (np.floor(x1.numpy()) == levels.numpy()).all()
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="expected integer pixel levels 0..255"):
    model(levels + 0.5)
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  history = model.fit(levels, epochs=2, batch_size=3, verbose=0,
                      score_statistics=False)
  assert np.isfinite(history.history["loss"]).all()
  clone = tfp_realnvp.RealNVP.from_config(model.get_config())
  assert isinstance(clone.dequantizer, dequantization.UniformDequantizer)
  with pytest.raises(ValueError, match="dequantizer must be one of"):
    tfp_realnvp.RealNVP(dequantizer="flowpp", **kwargs)


def test_multiscale_docstring_example_runs():
  import re  # pylint: disable=import-outside-toplevel
  code = re.search(r"```python\n(.*?)```", real_nvp_flow.__doc__,
                   re.S).group(1)
  namespace = {}
  exec(code, namespace)  # pylint: disable=exec-used
  assert namespace["z"].shape == (4, 64)
  np.testing.assert_allclose(namespace["x_back"].numpy(),
                             namespace["x"].numpy(), atol=1e-4)


def test_dequantizer_takes_uint8_levels_and_any_global_policy(rng):
  levels = rng.integers(0, 256, (2, 4, 4, 1)).astype(np.uint8)
  kwargs = dict(image_shape=(4, 4, 1), num_scales=1, num_res_blocks=1,
                num_filters=8, dequantizer="uniform")
  model = tfp_realnvp.RealNVP(**kwargs)
  np.testing.assert_array_equal(model(levels).numpy(),
                                model(levels.astype(np.float32)).numpy())
  previous = keras.config.dtype_policy()
  try:
    keras.config.set_dtype_policy("mixed_bfloat16")
    mixed = tfp_realnvp.RealNVP(**kwargs)
    assert np.isfinite(mixed(levels).numpy()).all()
  finally:
    keras.config.set_dtype_policy(previous)
  with pytest.raises(ValueError, match="prior='class_conditional' is "
                     "conditional but num_classes=None"):
    tfp_realnvp.RealNVP(image_shape=(4, 4, 1), num_scales=1,
                        prior="class_conditional")


def test_keras_file_from_before_issue_27_loads_bit_identically():
  """A Glow-step model (actnorm, 1×1 conv, split prior) with EMA weights and
  a typicality reference, saved by main 0826db5 (before the restructuring of
  issue 27; /tmp script in the stop-26 note): the same log_prob bit for bit,
  averaged and raw weights, and the reference still belongs to its weights."""
  model = keras.saving.load_model(os.path.join(DATA, "pre_issue27_glow.keras"))
  data = np.load(os.path.join(DATA, "pre_issue27_glow.npz"))
  assert model.actnorm and model.permutation == "conv1x1"
  assert model.prior_name == "split" and model.use_ema
  np.testing.assert_array_equal(model.log_prob(data["x"]).numpy(), data["lp"])
  np.testing.assert_array_equal(model.score(data["levels"], "typicality"),
                                data["typicality"])
  model.use_ema = False
  np.testing.assert_array_equal(model.log_prob(data["x"]).numpy(),
                                data["lp_raw"])
  assert np.abs(data["lp"] - data["lp_raw"]).max() > 1e-3


class _SigmoidScale(coupling.CouplingTransform):
  """Glow's coupling map `x·σ(s + 2) + t`, normalised by σ(2) so that zero
  parameters are the identity (the contract of `CouplingTransform`): a
  transform defined by one class (the extension point of `coupling=`)."""

  class _Map:

    def __init__(self, log_scale, shift):
      self.log_gate = (tf.math.log_sigmoid(log_scale + 2.0) -
                       tf.math.log_sigmoid(2.0))
      self.shift = shift

    def forward(self, x):
      return x * tf.exp(self.log_gate) + self.shift

    def inverse(self, y):
      return (y - self.shift) * tf.exp(-self.log_gate)

    def forward_log_det_jacobian(self, x, event_ndims):
      del x
      return tf.reduce_sum(self.log_gate, axis=list(range(-event_ndims, 0)))

    def inverse_log_det_jacobian(self, y, event_ndims):
      return -self.forward_log_det_jacobian(y, event_ndims)

  def __call__(self, log_scale, shift, active=None):
    del active  # zero parameters are exactly the identity
    return self._Map(log_scale, shift)


def test_a_new_coupling_transform_is_one_class_and_one_option(monkeypatch,
                                                              rng):
  monkeypatch.setitem(coupling.COUPLINGS, "sigmoid", _SigmoidScale)
  model = tfp_realnvp.RealNVP(image_shape=(4, 4, 2), num_scales=2,
                              num_res_blocks=1, num_filters=8,
                              coupling="sigmoid", use_batch_norm=False)
  assert model.get_config()["coupling"] == "sigmoid"
  perturb_weights(model.coupling_networks, seed=4, scale=0.3)
  x = _assert_flow_is_exact(model.flow(), rng)
  affine = tfp_realnvp.RealNVP(image_shape=(4, 4, 2), num_scales=2,
                               num_res_blocks=1, num_filters=8,
                               use_batch_norm=False)
  affine.set_weights(model.get_weights())
  assert np.abs(affine.log_prob(x).numpy() - model.log_prob(x).numpy()).max(
  ) > 1e-2  # the transform is what differs
  with pytest.raises(ValueError, match="coupling must be one of"):
    tfp_realnvp.RealNVP(image_shape=(4, 4, 2), num_scales=2,
                        coupling="spline2")


class _CentreDequantizer(dequantization.Dequantizer):
  """`x = k + ½`, `log q = 0`: a dequantizer defined by one class."""

  seed = 0

  def call(self, levels, training=False, seed=None):
    levels = tf.convert_to_tensor(levels, tf.float32)
    return levels + 0.5, tf.zeros(tf.shape(levels)[:1])


class _CentreEstimator(estimators.Estimator):
  """`log p(k + ½)` in float64: an estimator defined by one class."""

  def __call__(self, model, inputs):
    x = tf.cast(inputs, tf.float32) + 0.5
    return tf.cast(model.log_prob(x), tf.float64)


class _Nats(scores.Score):
  """`−log p(k + ½)` in nats: a score defined by one class."""

  output = "nats"

  def __call__(self, inputs):
    return {self.output: inputs.bpd * float(
        inputs.model.event_size * np.log(2.0))}


def test_a_new_dequantizer_estimator_and_score_are_one_class_each(
    monkeypatch, rng, tmp_path):
  monkeypatch.setitem(dequantization.DEQUANTIZERS, "centre",
                      _CentreDequantizer)
  monkeypatch.setitem(estimators.ESTIMATORS, "centre", _CentreEstimator)
  monkeypatch.setitem(scores.SCORES, "nats", _Nats)
  model = tfp_realnvp.RealNVP(image_shape=(4, 4, 1), num_scales=1,
                              num_res_blocks=1, num_filters=8,
                              dequantizer="centre")
  perturb_weights(model.coupling_networks + model.batch_norm_states, seed=6)
  levels = rng.integers(0, 256, (3, 4, 4, 1)).astype(np.float32)
  centre = model.log_prob(levels + 0.5).numpy()
  assert model.get_config()["dequantizer"] == "centre"
  np.testing.assert_allclose(model(levels).numpy(), centre, rtol=1e-6)
  # Every draw of this dequantizer is the same: IW over K = 3 changes nothing.
  np.testing.assert_allclose(
      estimators.estimate(model, levels, "importance_weighted",
                          num_samples=3).numpy(), centre, rtol=1e-6)
  np.testing.assert_allclose(
      estimators.estimate(model, levels, "centre").numpy(), centre,
      rtol=1e-6)
  nats = model.score(levels.astype(np.uint8), kind="nats").numpy()
  np.testing.assert_allclose(nats, -centre, rtol=1e-5)
  assert scores.output_names(False)[-1] == "nats"
  # The export's score signature carries the new output.
  from tfp_realnvp import export as export_lib  # pylint: disable=import-outside-toplevel
  export_lib.write_saved_model(model, str(tmp_path / "m"))
  served = tf.saved_model.load(str(tmp_path / "m")).signatures["score"](
      images=tf.constant(levels.astype(np.uint8)))
  np.testing.assert_allclose(served["nats"].numpy(), nats, rtol=1e-5)
  with pytest.raises(ValueError, match="estimator must be one of"):
    estimators.estimate(model, levels, "jackknife")
  with pytest.raises(ValueError, match="unknown score kind"):
    model.score(levels, kind="likelihood_ratio")
