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
`[f, 16f]` lands within 5% of the target (parameters sit at the coarsest
scale); when none does, `f` = 8 with any `w`.
A structure (`STRUCTURES`, `python -m bench --structure`) adds its
constructor options to every layout tried, so the count searched is that
of the model as built, with its extra parameters (`glow`, mnist_fast's
Glow step: per-step actnorm and LU-factored 1×1 convolution, Glow's split
prior); `initialize` gives its actnorms their data-dependent init. The
count is `RealNVP.count_params()`: every weight of the density model, the
non-trainable ones included (batch-norm moving statistics; with the Glow
step also the 1×1 convolutions' fixed permutation and signs and the
actnorms' `initialized` flags), 0.2-0.6% above its trainable count at the
bench's presets; the peers count trainable parameters.
`python -m bench.models` prints the layouts found for 0.2M-5M
parameters on 28×28×1, 32×32×3 and 64×64×3. Peer: TFP's `tfb.Glow` with `GlowDefaultNetwork` couplings,
`GlowDefaultExitNetwork` exits, 2 blocks of 8 steps, its width searched to
*our* parameter count, in a `tfd.TransformedDistribution` over a standard
normal; the same peer layout on every workload so ratios compare.
"""

import numpy as np

# The paper's CIFAR-10 model (§4.1): 8 residual blocks, 64 feature maps,
# one downscale (two scales).
PAPER_CIFAR = dict(num_scales=2, num_res_blocks=8, num_filters=64)
GLOW_LAYOUT = dict(num_glow_blocks=2, num_steps_per_block=8)
# mnist_fast's Glow step (training/configs/mnist_fast.json): actnorm, 1×1
# convolution (LU), split prior.
GLOW_STEP = {"actnorm": True, "permutation": "conv1x1", "prior": "split"}
# The rational-quadratic spline coupling (issue 30) with 4 bins: its head
# has 11 values per element (affine: 2), so at equal parameters its
# networks are narrower.
SPLINE = {"coupling": "spline", "spline_bins": 4}
# Our flow's structures (`--structure` of `python -m bench`, `--glow_step`
# of `bench.profile`): the constructor options each adds to ours.
STRUCTURES = {"plain": {}, "glow": GLOW_STEP, "spline": SPLINE,
              "glow_spline": dict(GLOW_STEP, **SPLINE)}


def structure_options(name):
  """The constructor options of structure `name` (`STRUCTURES`), a copy;
  ValueError naming the known ones otherwise."""
  if name not in STRUCTURES:
    raise ValueError(f"unknown structure {name!r}; expected one of "
                     f"{sorted(STRUCTURES)}")
  return dict(STRUCTURES[name])


def initialize(model, x):
  """Glow's data-dependent actnorm init from the batch `x` (what `fit` does
  on its first batch; the bench calls the train function directly), when
  `model` has actnorms; otherwise nothing."""
  if model.actnorm:
    model.initialize_actnorm(x)


def _num_scales(shape):
  return 3 if shape[0] % 4 == 0 and shape[0] // 4 >= 2 else 2


WIDTH_STEP = 8
OURS_BLOCKS = 1


def ours(shape, target=None, **config):
  """(model, parameters, num_filters) nearest `target` parameters (see the
  module docstring; `config` adds e.g. `mixed_precision`, `checkerboard`,
  a structure's options),
  or the fixed `config` when `target` is None. Raises ValueError naming the
  reachable range when no layout lands within 5%."""
  import tfp_realnvp  # pylint: disable=import-outside-toplevel
  if target is None:
    model = tfp_realnvp.RealNVP(shape, **config)
    return model, model.count_params(), config["num_filters"]
  scales = _num_scales(shape)
  cache = {}

  def build(finest, coarsest):
    if (finest, coarsest) not in cache:
      widths = [finest * 2 ** s for s in range(scales - 1)] + [coarsest]
      model = tfp_realnvp.RealNVP(shape, num_scales=scales,
                                  num_res_blocks=OURS_BLOCKS,
                                  num_filters=widths, **config)
      cache[(finest, coarsest)] = (model, model.count_params(), widths)
    return cache[(finest, coarsest)]

  smallest, overshot = None, False
  for finest, step in [(f, WIDTH_STEP) for f in range(
      WIDTH_STEP, 513, WIDTH_STEP)] + [(WIDTH_STEP, 1)]:
    if overshot and step == WIDTH_STEP:
      continue
    # Coarsest width from the finest one up to 16× it (parameters sit at
    # the coarsest scale, compute at the finest): a binary search for the
    # first layout above the target, then the nearer of it and the one
    # below. Parameters grow with both widths.
    grid = list(range(finest, 16 * finest + 1, step))
    if smallest is None:
      smallest = build(finest, grid[0])[1]
    if build(finest, grid[-1])[1] < 0.95 * target:
      continue  # even the widest coarsest scale is too small
    if build(finest, grid[0])[1] > 1.05 * target:
      # Every wider finest scale is larger still. Last, the narrowest
      # finest scale with any coarsest width (a step of 8 there moves the
      # count by up to ~20% near 0.2M on 3 channels; the coarsest scale is
      # 7×7 or 8×8, where vector alignment matters least).
      overshot = True
      continue
    lo, hi = 0, len(grid) - 1
    while lo < hi:
      mid = (lo + hi) // 2
      if build(finest, grid[mid])[1] < target:
        lo = mid + 1
      else:
        hi = mid
    candidates = [build(finest, grid[i]) for i in {max(lo - 1, 0), lo}]
    best = min(candidates, key=lambda c: abs(c[1] - target))
    if abs(best[1] - target) <= 0.05 * target:
      return best
  raise ValueError(
      f"no layout of ours within 5% of {target:,} parameters for "
      f"{tuple(shape)} (smallest layout: {smallest:,})")


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


LAYOUT_SHAPES = ((28, 28, 1), (32, 32, 3), (64, 64, 3))
# 25 targets from 0.2M to 5M, each 14.4% above the one before.
LAYOUT_TARGETS = tuple(0.2e6 * 25 ** (i / 24) for i in range(25))


def main(argv=None):
  """`python -m bench.models [--checkerboard masked,squeezed] [--structure
  plain,glow]`: the layout `ours` finds for each target in LAYOUT_TARGETS
  on LAYOUT_SHAPES."""
  import argparse  # pylint: disable=import-outside-toplevel
  p = argparse.ArgumentParser(prog="python -m bench.models",
                              description=main.__doc__.split("\n")[0])
  p.add_argument("--checkerboard", default="masked,squeezed")
  p.add_argument("--structure", default="plain",
                 help=f"comma list of {', '.join(STRUCTURES)} (plain: "
                      "Real NVP's; glow: mnist_fast's Glow step)")
  args = p.parse_args(argv)
  structures = args.structure.split(",")
  for name in structures:
    if name not in STRUCTURES:
      p.error(f"--structure: unknown {name!r}; expected some of "
              f"{list(STRUCTURES)}")
  print("| checkerboard | shape | target | parameters | off by | widths |")
  print("|---|---|---|---|---|---|")
  misses = 0
  for checkerboard in args.checkerboard.split(","):
    for structure in structures:
      # The plain structure keeps the checkerboard's own label.
      label = checkerboard + ("" if structure == "plain" else
                              f" {structure}")
      for shape in LAYOUT_SHAPES:
        for target in LAYOUT_TARGETS:
          try:
            _, n, widths = ours(shape, int(target), checkerboard=checkerboard,
                                **structure_options(structure))
            row = f"{n:,} | {100 * (n - target) / target:+.1f}% | {widths}"
          except ValueError as e:
            misses += 1
            row = f"none | – | {e}"
          print(f"| {label} | {'×'.join(map(str, shape))} | "
                f"{int(target):,} | {row} |", flush=True)
  return 1 if misses else 0


if __name__ == "__main__":
  import sys  # pylint: disable=import-outside-toplevel
  sys.exit(main())
