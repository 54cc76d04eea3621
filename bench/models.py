"""The two contestants, built at a target parameter count.

Both contestants get hidden widths in multiples of 8, the vector width of
oneDNN's and cuDNN's blocked layouts (the previous search, any width and 2
residual blocks, had picked 11-12 maps for ours, off those blocks). The
speed-ups once quoted here for that change were not measured side by side
by a recorded command and were removed (2026-12-01); time the layouts with
`python -m bench` before relying on either.

Ours: `tfp_realnvp.RealNVP`, 3 scales when the side allows, 1 residual
block, per-scale widths `(f, 2f, w)`: the smallest finest-scale width `f`
(compute is at full resolution) for which some coarsest width `w` in
`[2f, 4f]` lands within 5% of the target (parameters sit at the coarsest
scale). Peer: TFP's `tfb.Glow` with `GlowDefaultNetwork` couplings,
`GlowDefaultExitNetwork` exits, 2 blocks of 8 steps, its width searched to
*our* parameter count, in a `tfd.TransformedDistribution` over a standard
normal; the same peer layout on every workload so ratios compare.
"""

import numpy as np

# The paper's CIFAR-10 model (§4.1): 8 residual blocks, 64 feature maps,
# one downscale (two scales).
PAPER_CIFAR = dict(num_scales=2, num_res_blocks=8, num_filters=64)
GLOW_LAYOUT = dict(num_glow_blocks=2, num_steps_per_block=8)


def _num_scales(shape):
  return 3 if shape[0] % 4 == 0 and shape[0] // 4 >= 2 else 2


WIDTH_STEP = 8
OURS_BLOCKS = 1


def ours(shape, target=None, **config):
  """(model, parameters, num_filters) nearest `target` parameters (see the
  module docstring; `config` adds e.g. `mixed_precision`), or the fixed
  `config` when `target` is None."""
  import tfp_realnvp  # pylint: disable=import-outside-toplevel
  if target is None:
    model = tfp_realnvp.RealNVP(shape, **config)
    return model, model.count_params(), config["num_filters"]
  scales = _num_scales(shape)

  def build(finest, coarsest):
    widths = [finest * 2 ** s for s in range(scales - 1)] + [coarsest]
    model = tfp_realnvp.RealNVP(shape, num_scales=scales,
                                num_res_blocks=OURS_BLOCKS,
                                num_filters=widths, **config)
    return model, model.count_params(), widths

  for finest in range(2 * WIDTH_STEP, 513, WIDTH_STEP):
    low = 2 ** (scales - 2) * finest
    if build(finest, 2 * low)[1] < 0.95 * target:
      continue  # even the widest coarsest scale is too small
    best = None
    for coarsest in range(low, 2 * low + 1, WIDTH_STEP):
      candidate = build(finest, coarsest)
      if best is None or abs(candidate[1] - target) < abs(best[1] - target):
        best = candidate
      if candidate[1] > target:
        break
    if abs(best[1] - target) <= 0.05 * target:
      return best
  raise ValueError(f"no layout of ours within 5% of {target} parameters")


def glow(shape, target):
  """(distribution, bijector, parameters, width): `tfb.Glow` nearest
  `target` trainable parameters, on pixels scaled to [-0.5, 0.5]."""
  import tensorflow_probability as tfp  # pylint: disable=import-outside-toplevel
  tfb, tfd = tfp.bijectors, tfp.distributions
  best = None
  for width in range(WIDTH_STEP, 1025, WIDTH_STEP):
    def coupling(input_shape, w=width):
      return tfb.GlowDefaultNetwork(input_shape, num_hidden=w)

    bijector = tfb.Glow(output_shape=shape, coupling_bijector_fn=coupling,
                        exit_bijector_fn=tfb.GlowDefaultExitNetwork,
                        **GLOW_LAYOUT)
    n = sum(int(v.shape.num_elements())
            for v in bijector.trainable_variables)
    if best is None or abs(n - target) < abs(best[1] - target):
      best = (bijector, n, width)
    if n > target:
      break
  bijector, n, width = best
  dist = tfd.TransformedDistribution(
      tfd.Sample(tfd.Normal(0.0, 1.0), [int(np.prod(shape))]), bijector)
  return dist, bijector, n, width


def glow_log_prob_pixels(dist, x, shape):
  """log p(x) in nats for dequantized pixels x ∈ [0, 256): Glow models
  y = x/256 − 0.5, so log p(x) = log p(y) − D·log 256."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  d = float(np.prod(shape))
  return dist.log_prob(x / 256.0 - 0.5) - d * tf.math.log(256.0)


def glow_train_step(dist, shape, jit_compile=False):
  """The peer's training step: −mean log p(x) in pixel units, Adam 1e-3
  (tf_keras' Adam: the bijector's variables are tf.Variables)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  variables = dist.bijector.trainable_variables
  optimizer = tf_keras.optimizers.Adam(1e-3)

  @tf.function(jit_compile=jit_compile)
  def step(x):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(glow_log_prob_pixels(dist, x, shape))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss
  return step


def export_glow(dist, shape, path, batch_sizes=(1, 64)):
  """A SavedModel of the peer with one log_prob signature per batch size,
  `log_prob_n<N>` (images float32 [N, H, W, C] in [0, 256) → log_prob [N]),
  for the same C-API latency measurement as ours. Fixed batch sizes because
  `tfb.Glow.log_prob` does not trace with an unknown batch dimension
  (TFP concatenates int32 and int64 shapes: TypeError in ConcatV2)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  module = tf.Module()
  module.dist_variables = list(dist.bijector.variables)

  @tf.function
  def serve(images):
    return {"log_prob": glow_log_prob_pixels(dist, images, shape)}

  module.serve = serve
  signatures = {
      f"log_prob_n{n}": serve.get_concrete_function(
          tf.TensorSpec([n] + list(shape), tf.float32, name="images"))
      for n in batch_sizes}
  tf.saved_model.save(module, path, signatures=signatures)
  return path
