"""The contestants of `python -m bench`: one handle dict per contestant.

`build(spec, shape, x)` builds ours (`bench.models.ours`), TFP's Glow
(`bench.models.glow`) or a PyTorch peer (`bench.torch_peers.build`) at the
spec's size; `bench.measure` times what it returns.
"""

from bench import models
from bench.common import PRESETS


def build(spec, shape, x):
  """The handle dict of one contestant: parameters, `size` (ours: per-scale
  widths; the peers: their width), no-argument `train`, `log_prob` and
  `sample` callables on the fixed batch `x`, `raw_sample(n, seed)` (numpy,
  pixel space, before any clipping) and `flops()` → FLOPs per image of
  (log_prob, training step, sample)."""
  if spec["impl"] == "ours":
    return _ours(spec, shape, x)
  if spec["impl"] == "tfp_glow":
    return _tfp_glow(spec, shape, x)
  from bench import torch_peers  # pylint: disable=import-outside-toplevel
  return torch_peers.build(spec, shape, int(x.shape[0]))


def ours_options(spec):
  """Our constructor options besides the layout for `spec`: its
  checkerboard (default masked), its structure's options
  (`bench.models.STRUCTURES`, default plain) and its mixed precision."""
  config = {"checkerboard": spec.get("checkerboard", "masked"),
            **models.structure_options(spec.get("structure", "plain"))}
  if spec.get("mixed_precision"):
    config["mixed_precision"] = spec["mixed_precision"]
  return config


def _ours(spec, shape, x):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  config = ours_options(spec)
  if spec["preset"] == "paper":
    model, params, size = models.ours(shape, None, **models.PAPER_CIFAR,
                                      **config)
  elif "size" in spec:
    model, params, size = models.ours(shape, None, num_scales=spec["scales"],
                                      num_res_blocks=models.OURS_BLOCKS,
                                      num_filters=spec["size"], **config)
  else:
    model, params, size = models.ours(shape, spec.get("target") or
                                      PRESETS[spec["preset"]], **config)
  models.initialize(model, x)  # the Glow step's actnorms, as fit would
  import tfp_realnvp  # pylint: disable=import-outside-toplevel
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3),
                jit_compile=spec["jit"])
  model.make_train_function()
  train_fn = model.train_function
  iterator = iter(tf.data.Dataset.from_tensors(x).repeat())
  batch = int(x.shape[0])
  log_prob = tf.function(lambda t: model.log_prob(t))
  sample = tf.function(lambda: model.sample(batch, seed=(1, 2)))
  # Unclipped, pixel space: what the flow itself produces.
  raw = tf.function(lambda seed: model.sample(batch, seed=seed, clip=False))

  def loss(t):
    return -tf.reduce_mean(model.log_prob(t, training=True))
  return dict(
      params=params, size=size, train=lambda: train_fn(iterator),
      log_prob=lambda: log_prob(x), sample=sample,
      raw_sample=lambda n, seed: raw(tf.constant(seed, tf.int32)).numpy(),
      flops=lambda: _tf_flops(model.log_prob, loss, model.trainable_variables,
                              lambda n: model.sample(n, seed=(1, 2)), x),
      model=model, scales=model.num_scales)


def _tfp_glow(spec, shape, x):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  # A pinned "target" (our size, or the scaling sweep's) keeps one width.
  dist, _, params, size = models.glow(shape, spec.get("target") or
                                      PRESETS[spec["preset"]])
  variables = dist.bijector.trainable_variables
  step = models.glow_train_step(dist, shape, jit_compile=spec["jit"])
  batch = int(x.shape[0])

  def log_prob_fn(t):
    return models.glow_log_prob_pixels(dist, t, shape)

  def loss(t):
    return -tf.reduce_mean(log_prob_fn(t))
  log_prob = tf.function(log_prob_fn)
  sample = tf.function(lambda: dist.sample(batch, seed=(1, 2)))
  # Glow models y = x/256 − 0.5: back to pixels, unclipped.
  raw = tf.function(lambda seed: (dist.sample(batch, seed=seed) + 0.5) *
                    256.0)
  return dict(
      params=params, size=size, train=lambda: step(x),
      log_prob=lambda: log_prob(x), sample=sample,
      raw_sample=lambda n, seed: raw(tf.constant(seed, tf.int32)).numpy(),
      flops=lambda: _tf_flops(log_prob_fn, loss, variables,
                              lambda n: dist.sample(n, seed=(1, 2)), x),
      dist=dist)


def _tf_flops(log_prob, loss, variables, sample, x):
  """FLOPs per image of (log_prob, training step gradient, sample), counted
  from the traced TF graphs."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from bench.flops import count_flops  # pylint: disable=import-outside-toplevel
  n = int(x.shape[0])
  forward = tf.function(log_prob).get_concrete_function(x)

  @tf.function
  def gradient(t):
    with tf.GradientTape() as tape:
      value = loss(t)
    return tape.gradient(value, variables)
  sampled = tf.function(lambda: sample(n)).get_concrete_function()
  return (count_flops(forward) / n,
          count_flops(gradient.get_concrete_function(x)) / n,
          count_flops(sampled) / n)
