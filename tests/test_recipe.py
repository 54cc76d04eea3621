"""The levers of bits/dim per minute (issue 16): EMA weights, warmup and
decay schedules, Adamax, the paper's running-average batch norm, variational
dequantization, importance-weighted evaluation and the time budget."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_realnvp
from conftest import (dense_log_det, frozen_batch_norm_dense_log_det,
                      perturb_weights)
from tfp_realnvp import bijectors, dequantization
from tfp_realnvp.schedules import Warmup
from training import callbacks as callbacks_lib
from training import configs
from training import data
from training import evaluate as evaluate_cli
from training import train as train_cli

SMALL = dict(num_scales=2, num_res_blocks=1, num_filters=8)


def _levels(rng, n, shape=(8, 8, 1)):
  return rng.integers(0, 256, size=(n,) + shape).astype(np.float32)


# --- learning-rate schedule and optimizer -----------------------------------


def test_warmup_ramps_then_follows_the_wrapped_schedule():
  cosine = keras.optimizers.schedules.CosineDecay(1e-3, 100, alpha=0.1)
  lr = Warmup(cosine, 10)
  values = [float(lr(s)) for s in (0, 4, 9, 10, 50, 100, 500)]
  np.testing.assert_allclose(values[:3], [1e-4 * float(cosine(0)) / 1e-3,
                                          5e-4 * float(cosine(4)) / 1e-3,
                                          float(cosine(9))], rtol=1e-5)
  np.testing.assert_allclose(values[3:], [float(cosine(s)) for s in
                                          (10, 50, 100, 500)], rtol=1e-5)
  assert values[-1] == pytest.approx(1e-4, rel=1e-4)  # alpha · lr at the end
  constant = Warmup(2e-3, 4)
  assert [float(constant(s)) for s in (0, 3, 9)] == pytest.approx(
      [5e-4, 2e-3, 2e-3])
  # Round trip through the optimizer config (what a .keras file stores).
  opt = keras.optimizers.Adamax(lr)
  again = keras.optimizers.Adamax.from_config(opt.get_config())
  assert float(again.learning_rate) == pytest.approx(
      float(opt.learning_rate))
  with pytest.raises(ValueError, match="warmup_steps"):
    Warmup(1e-3, 0)
  with pytest.raises(ValueError, match="learning rate > 0"):
    Warmup(-1.0, 5)


def test_config_builds_optimizer_and_schedule():
  config = configs.load("digits")
  config.update(optimizer="adamax", warmup_steps=5, lr_decay="exponential",
                decay_steps=10, lr_decay_rate=0.5, learning_rate=2e-3,
                clipnorm=7.0)
  configs.validate(config)
  opt = train_cli.build_optimizer(config)
  assert isinstance(opt, tfp_realnvp.optimizers.Adamax)  # fused
  assert opt.global_clipnorm == 7.0
  schedule = opt._learning_rate  # pylint: disable=protected-access
  assert float(schedule(0)) == pytest.approx(2e-3 / 5)
  assert float(schedule(20)) == pytest.approx(2e-3 * 0.25, rel=1e-5)
  plain = train_cli.build_optimizer(configs.load("digits"))
  assert isinstance(plain, tfp_realnvp.optimizers.Adam)
  assert float(plain.learning_rate) == pytest.approx(1e-3)
  for key, value, match in (("optimizer", "sgd", "optimizer must be one of"),
                            ("lr_decay", "cosine", "decay_steps must be an "
                             "integer >= 1"),
                            ("ema_decay", 1.0, "ema_decay must be"),
                            ("bn_lag", -0.1, "bn_lag must be"),
                            ("test_iw_samples", -1, "test_iw_samples")):
    bad = dict(configs.load("digits"), **{key: value})
    with pytest.raises(ValueError, match=match):
      configs.validate(bad)


# --- the paper's running-average batch norm (appendix E) ---------------------


def test_bn_lag_formula_gradient_and_exact_log_det(rng):
  shape = (4, 4, 2)
  lag = 0.7
  state = bijectors.BatchNormState(momentum=0.9, epsilon=1e-4, bn_lag=lag)
  state.build((None,) + shape)
  perturb_weights([state], seed=3, scale=0.5)
  state.num_updates.assign(0.0)
  bij = bijectors.FlowBatchNorm(state, training=True)
  x1 = rng.normal(1.0, 2.0, size=(6,) + shape)
  # First step: no running average yet -> batch statistics, which become it.
  with bijectors.evaluation():
    bij.forward(tf.constant(x1, tf.float32))
  m1, v1 = x1.mean(axis=(0, 1, 2)), x1.var(axis=(0, 1, 2))
  np.testing.assert_allclose(state.moving_mean.numpy(), m1, atol=1e-5)
  np.testing.assert_allclose(state.moving_variance.numpy(), v1, rtol=1e-4)
  # Second step: the blend λ·running + (1 − λ)·batch normalizes.
  x2 = rng.normal(-1.0, 0.5, size=(6,) + shape)
  x = tf.constant(x2, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    with bijectors.evaluation():
      y = bij.forward(x)
      ldj = bij.forward_log_det_jacobian(x, event_ndims=3)
    loss = tf.reduce_sum(y[..., 0])
  m2, v2 = x2.mean(axis=(0, 1, 2)), x2.var(axis=(0, 1, 2))
  mean = lag * m1 + (1 - lag) * m2
  var = lag * v1 + (1 - lag) * v2
  g, b = state.log_gamma.numpy(), state.beta.numpy()
  expected = (x2 - mean) / np.sqrt(var + 1e-4) * np.exp(g) + b
  np.testing.assert_allclose(y.numpy(), expected, atol=1e-4)
  np.testing.assert_allclose(
      ldj.numpy(), np.full(6, 16 * np.sum(g - 0.5 * np.log(var + 1e-4))),
      atol=1e-3)
  # The moving averages continue m ← 0.9·m + 0.1·batch.
  np.testing.assert_allclose(state.moving_mean.numpy(), 0.9 * m1 + 0.1 * m2,
                             atol=1e-5)
  # Gradient flows through the batch part only: d/dx of Σ y[...,0] through
  # the (1 − λ)-weighted mean and variance, not through the running part.
  grad = tape.gradient(loss, x).numpy()
  xt = tf.constant(x2, tf.float64)
  with tf.GradientTape() as ref:
    ref.watch(xt)
    bm, bv = tf.nn.moments(xt, axes=[0, 1, 2])
    used_m = lag * m1 + (1 - lag) * bm
    used_v = lag * v1 + (1 - lag) * bv
    yt = (xt - used_m) / tf.sqrt(used_v + 1e-4) * np.exp(g) + b
    ref_loss = tf.reduce_sum(yt[..., 0])
  np.testing.assert_allclose(grad, ref.gradient(ref_loss, xt).numpy(),
                             atol=1e-4)
  # Dense Jacobian with the statistics it used held fixed equals the log-det.
  dense = frozen_batch_norm_dense_log_det(mean, var, g, b, x)
  np.testing.assert_allclose(ldj.numpy(), dense, atol=1e-3)


def test_bn_lag_model_is_exact_and_trains(rng):
  model = tfp_realnvp.RealNVP((8, 8, 1), bn_lag=0.95, **SMALL)
  perturb_weights([model], seed=1, scale=0.2)
  x = tf.constant(rng.uniform(0, 256, (3, 8, 8, 1)), tf.float32)
  flow = model.flow(training=False)
  z = flow.forward(x)
  np.testing.assert_allclose(flow.inverse(tf.identity(z)).numpy(), x.numpy(),
                             atol=1e-3)
  np.testing.assert_allclose(
      flow.forward_log_det_jacobian(x, event_ndims=3).numpy(),
      dense_log_det(model.flow(training=False).forward, x), atol=1e-3)
  assert model.get_config()["bn_lag"] == 0.95
  for state in model.batch_norm_states:
    state.num_updates.assign(0.0)
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  model.fit(_levels(rng, 32) + 0.5, batch_size=16, epochs=1, verbose=0,
            score_statistics=False)
  assert all(float(s.num_updates.numpy()) == 2.0
             for s in model.batch_norm_states)


# --- EMA (Polyak) weights ----------------------------------------------------


class _Record(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.weights = []

  def on_train_batch_end(self, batch, logs=None):
    self.weights.append([v.numpy().copy()
                         for v in self.model.coupling_networks[0].weights])


def test_ema_follows_the_recursion_and_serves_inference(rng, tmp_path):
  model = tfp_realnvp.RealNVP((8, 8, 1), ema_decay=0.9, **SMALL)
  statistics = sum(int(np.prod(v.shape))
                   for v in model.score_statistics.weights)  # not copied
  assert model.count_params() * 2 == pytest.approx(
      sum(int(np.prod(v.shape)) for v in model.weights) - statistics, rel=0)
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-2))
  initial = [v.numpy().copy() for v in model.coupling_networks[0].weights]
  record = _Record()
  x = _levels(rng, 48) + 0.5
  # The recorder runs before the EMA update (user callbacks come first).
  model.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False,
            callbacks=[record], score_statistics=False)
  expected = initial
  for t, raw in enumerate(record.weights, start=1):
    d = min(0.9, (1.0 + t) / (10.0 + t))
    expected = [d * e + (1 - d) * w if v.trainable else w
                for e, w, v in zip(expected, raw,
                                   model.coupling_networks[0].weights)]
  for e, v in zip(expected, model.ema_coupling_networks[0].weights):
    np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)
  raw_net = model.coupling_networks[0].weights
  assert not np.allclose(raw_net[1].numpy(),
                         model.ema_coupling_networks[0].weights[1].numpy())
  # Inference uses the averages; the switch gives the raw weights (and the
  # traced evaluate function follows the switch, no stale answer).
  probe = tf.constant(x[:8])
  ema_lp = model.log_prob(probe).numpy()
  ema_eval = model.evaluate(probe, verbose=0, return_dict=True)
  model.use_ema = False
  raw_lp = model.log_prob(probe).numpy()
  raw_eval = model.evaluate(probe, verbose=0, return_dict=True)
  assert np.abs(ema_lp - raw_lp).max() > 1e-3
  assert ema_eval["bits_per_dim"] != pytest.approx(raw_eval["bits_per_dim"])
  np.testing.assert_allclose(
      raw_eval["bits_per_dim"],
      np.mean(-raw_lp) / (64 * math.log(2)), rtol=1e-5)
  model.use_ema = True
  # A plain model holding the averages as its weights gives the same answer.
  plain = tfp_realnvp.RealNVP((8, 8, 1), **SMALL)
  for dst, src in zip(plain.flow_layers(training=True).all(),
                      model.flow_layers().all()):
    for a, b in zip(dst.weights, src.weights):
      a.assign(b)
  np.testing.assert_allclose(plain.log_prob(probe).numpy(), ema_lp,
                             rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(
      plain.sample(4, seed=(1, 2)).numpy(),
      model.sample(4, seed=(1, 2)).numpy(), atol=1e-3)
  # Saved and restored: .keras and the backup's weights file.
  model.save(tmp_path / "m.keras")
  loaded = keras.saving.load_model(tmp_path / "m.keras")
  np.testing.assert_allclose(loaded.log_prob(probe).numpy(), ema_lp,
                             rtol=1e-5, atol=1e-3)
  backup = callbacks_lib.ResumableBackup(str(tmp_path / "backup"))
  backup.set_model(model)
  backup._save_model()  # pylint: disable=protected-access
  fresh = tfp_realnvp.RealNVP((8, 8, 1), ema_decay=0.9, **SMALL)
  fresh.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-2))
  callbacks_lib.ResumableBackup(str(tmp_path / "backup")).restore(fresh)
  for a, b in zip(fresh.weights, model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  with pytest.raises(ValueError, match="ema_decay"):
    plain.use_ema = True


def test_export_serves_the_averaged_weights(rng, tmp_path):
  from tfp_realnvp import export as export_lib  # pylint: disable=import-outside-toplevel
  model = tfp_realnvp.RealNVP((8, 8, 1), ema_decay=0.5, **SMALL)
  perturb_weights(model.flow_layers().all(), seed=2, scale=0.2)
  x = tf.constant(_levels(rng, 4) + 0.5)
  path = str(tmp_path / "export")
  export_lib.write_saved_model(model, path)
  served = tf.saved_model.load(path).signatures["serving_default"]
  out = served(images=x)["log_prob"].numpy()
  np.testing.assert_allclose(out, model.log_prob(x).numpy(), rtol=1e-5,
                             atol=1e-3)
  model.use_ema = False
  assert np.abs(out - model.log_prob(x).numpy()).max() > 1e-2


# --- variational dequantization ---------------------------------------------


def test_variational_dequantizer_log_q_is_exact(rng):
  deq = dequantization.VariationalDequantizer(num_steps=2, num_filters=8)
  deq.build((None, 4, 4, 2))
  perturb_weights([deq], seed=5, scale=0.3)
  levels = tf.constant(_levels(rng, 3, (4, 4, 2)))
  eps = tf.constant(rng.normal(size=(3, 4, 4, 2)), tf.float32)
  v, log_det = deq.transform(levels, eps)
  dense = dense_log_det(lambda e, k: deq.transform(k, e)[0], eps, levels)
  np.testing.assert_allclose(log_det.numpy(), dense, atol=1e-3)
  assert np.ptp(log_det.numpy()) > 0.01  # the couplings do change volume
  # log q(u|k) = log N(ε) − log|det ∂u/∂ε| with u = sigmoid(v(ε)).
  seed = tf.constant([7, 0], tf.int64)
  x, log_q = deq(levels, seed=seed)
  eps = tf.random.stateless_normal(tf.shape(levels), seed=seed)
  u_dense = dense_log_det(
      lambda e, k: tf.sigmoid(deq.transform(k, e)[0]), eps, levels)
  log_normal = (-0.5 * np.sum(eps.numpy() ** 2, axis=(1, 2, 3)) -
                0.5 * 32 * math.log(2 * math.pi))
  np.testing.assert_allclose(log_q.numpy(), log_normal - u_dense, atol=2e-3)
  u = (x - levels).numpy()
  assert u.min() >= 0.0 and u.max() < 1.0
  # Inference draws are fixed by the seed; training draws are fresh.
  np.testing.assert_array_equal(deq(levels)[0].numpy(),
                                deq(levels)[0].numpy())
  assert not np.array_equal(deq(levels, training=True)[0].numpy(),
                            deq(levels, training=True)[0].numpy())


def test_variational_dequantization_trains_jointly_and_names_its_bound(rng):
  model = tfp_realnvp.RealNVP((8, 8, 1), dequantizer="variational", **SMALL)
  assert model.bits_per_dim_name == "variational_bits_per_dim"
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  before = [v.numpy().copy() for v in model.dequantizer.trainable_weights]
  assert before
  history = model.fit(_levels(rng, 32), batch_size=16, epochs=1, verbose=0,
                      score_statistics=False)
  assert "variational_bits_per_dim" in history.history
  assert "bits_per_dim" not in history.history
  changed = [not np.allclose(b, v.numpy()) for b, v in
             zip(before, model.dequantizer.trainable_weights)]
  assert all(changed)
  # The reported figure is −(log p(k + u) − log q(u|k)) of the fixed draw.
  levels = _levels(rng, 4)
  x, log_q = model.dequantizer(levels)
  bound = -(model.log_prob(x) - log_q).numpy() / (64 * math.log(2))
  got = model.evaluate(levels, verbose=0, return_dict=True)
  assert got["variational_bits_per_dim"] == pytest.approx(bound.mean(),
                                                          rel=1e-5)
  assert np.abs(log_q.numpy()).max() > 0  # not the uniform q = 1
  loaded = tfp_realnvp.RealNVP.from_config(model.get_config())
  assert loaded.dequantizer_name == "variational"


# --- importance-weighted evaluation ------------------------------------------


@pytest.mark.parametrize("dequantizer", ["uniform", "variational"])
def test_importance_weighted_is_a_float64_log_mean_exp(dequantizer, rng):
  model = tfp_realnvp.RealNVP((8, 8, 1), dequantizer=dequantizer, **SMALL)
  perturb_weights([model], seed=4, scale=0.1)
  levels = _levels(rng, 5)
  one = model.importance_weighted_log_prob(levels, num_samples=1)
  assert one.dtype == tf.float64
  np.testing.assert_allclose(one.numpy(), model(levels).numpy(), rtol=1e-6)
  k = 6
  weights = []
  for j in range(k):
    x, log_q = model.dequantizer(levels, seed=tf.constant([0, j], tf.int64))
    weights.append((model.log_prob(x) - log_q).numpy().astype(np.float64))
  weights = np.stack(weights)
  top = weights.max(axis=0)
  expected = top + np.log(np.mean(np.exp(weights - top), axis=0))
  got = model.importance_weighted_log_prob(levels, num_samples=k).numpy()
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
  assert np.all(got >= weights.mean(axis=0) - 1e-6)  # Jensen, per image
  with pytest.raises(ValueError, match="num_samples"):
    model.importance_weighted_log_prob(levels, num_samples=0)


def test_iw_pipeline_draw_zero_is_the_evaluation_noise_and_k1_is_today(rng):
  one = data.load("digits", batch_size=16)
  many = data.load("digits", batch_size=16, noise_draws=3)
  single = next(iter(one.test)).numpy()
  draws = next(iter(many.test)).numpy()
  assert draws.shape == (16, 3) + single.shape[1:]
  np.testing.assert_array_equal(draws[:, 0], single)
  assert not np.array_equal(draws[:, 1], draws[:, 0])
  np.testing.assert_array_equal(np.floor(draws[:, 1]), np.floor(single))
  model = tfp_realnvp.RealNVP(one.image_shape, **SMALL)
  perturb_weights([model], seed=6, scale=0.1)
  model.compile()
  today = model.evaluate(one.test, verbose=0, return_dict=True)
  k1 = evaluate_cli.importance_weighted_bits_per_dim(
      model, data.load("digits", batch_size=16, noise_draws=1).test, 1)
  assert k1 == pytest.approx(today["bits_per_dim"], rel=1e-6)
  k3 = evaluate_cli.importance_weighted_bits_per_dim(model, many.test, 3)
  assert k3 < today["bits_per_dim"]
  with pytest.raises(ValueError, match="noise_draws"):
    data.load("digits", noise_draws=0)
  with pytest.raises(ValueError, match="dequantize=True"):
    data.load("digits", noise_draws=2, dequantize=False)


# --- the time budget ---------------------------------------------------------


class _Clock:
  """A fake perf_counter: every training step takes one second."""

  def __init__(self):
    self.now = 0.0

  def perf_counter(self):
    return self.now


class _Tick(keras.callbacks.Callback):
  def __init__(self, clock):
    super().__init__()
    self.clock = clock
    self.steps = 0

  def on_train_batch_end(self, batch, logs=None):
    self.steps += 1
    self.clock.now += 1.0


def test_time_budget_stops_within_one_step(monkeypatch, rng):
  clock = _Clock()
  monkeypatch.setattr(callbacks_lib, "time", clock)
  model = tfp_realnvp.RealNVP((4, 4, 1), num_scales=1, num_res_blocks=0,
                              num_filters=4)
  model.compile()
  tick = _Tick(clock)
  budget = callbacks_lib.TimeBudget(minutes=7.5 / 60)  # 7.5 s
  x = _levels(rng, 64, (4, 4, 1)) + 0.5
  model.fit(x, batch_size=2, epochs=3, verbose=0, callbacks=[tick, budget],
            score_statistics=False)
  # 32 steps per epoch; the budget is reached after the 8th step.
  assert tick.steps == 8 and budget.stopped_step == 8
  assert budget.stopped_epoch == 0
  with pytest.raises(ValueError, match="minutes"):
    callbacks_lib.TimeBudget(0)


# --- the recipe ---------------------------------------------------------------


def test_mnist_fast_config_is_valid_and_about_042m_parameters():
  config = configs.validate(configs.load("mnist_fast"))
  assert config["batch_size"] == 64 and config["dataset"] == "mnist"
  assert config["max_train_minutes"] == 10
  model = train_cli.build_model(config, (28, 28, 1), 10)
  assert 0.38e6 <= model.count_params() <= 0.46e6
