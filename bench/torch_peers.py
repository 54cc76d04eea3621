"""The PyTorch peers: normflows 1.7.3 Glow and a normflows Real NVP.

Installed by `pip install -e ".[bench]"` (torch, CPU build, and normflows).
Both are `normflows.MultiscaleFlow`s built the way normflows' own Glow
example builds them: `L` levels, each `K` flow steps then a `Squeeze`, a
`Merge` between levels, a `GlowBase` (learned per-channel diagonal
Gaussian) per level, no class conditioning. `L` is 3 for sides divisible by
8 and 2 otherwise (28×28 → 7×7), `K` = 8 (the TFP Glow row's 8 steps per
block). The hidden width of the 3×3 → 1×1 → 3×3 ConvNet2d is searched in
multiples of 8 to the target parameter count.

- `nf_glow`: `GlowBlock` steps, i.e. affine coupling (sigmoid scale, split
  by channel) → invertible 1×1 convolution (LU) → ActNorm; normflows' Glow.
- `nf_realnvp`: the Real NVP step in normflows' parts: `AffineCouplingBlock`
  with a checkerboard split (normflows' form: alternating pixels of each
  row gathered into a half-width tensor) for the first half of each level
  (levels of odd width, 7×7 on MNIST, have none: normflows needs an even
  width) and a channel split for the second half, parities alternating, each
  followed by ActNorm (normflows has no batch-norm flow; ActNorm is its
  per-channel affine stand-in). Scale map `sigmoid` by default: with the
  paper's `exp` (`scale_map="exp"`) this model diverged to NaN in training
  here at learning rates 1e-3, 3e-4 and 1e-4 (issue 15); the sigmoid scale
  is stable.

Both model y = x/256 − 0.5 for dequantized pixels x ∈ [0, 256), so
log p(x) = log p(y) − D·log 256, the same convention as the TFP Glow row.
Best settings for CPU PyTorch: `torch.set_flush_denormal(True)` (without
it this model runs 5–14× slower here) and intra-op threads = cores.
"""

import os

import numpy as np

from bench import models
from bench.common import PRESETS

STEPS_PER_LEVEL = 8


def _levels(shape):
  return 3 if shape[0] % 8 == 0 and shape[1] % 8 == 0 else 2


def configure_torch():
  """The peer's best CPU settings (module docstring); returns torch."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_flush_denormal(True)
  torch.set_num_threads(os.cpu_count() or 1)
  return torch


def _flow(kind, shape, hidden, scale_map):
  import normflows as nf  # pylint: disable=import-outside-toplevel
  height, width, channels = shape
  levels, steps = _levels(shape), STEPS_PER_LEVEL
  q0, merges, flows = [], [], []
  for i in range(levels):
    c = channels * 2 ** (levels + 1 - i)
    level = []
    for j in range(steps):
      if kind == "nf_glow":
        level.append(nf.flows.GlowBlock(c, hidden, split_mode="channel",
                                        scale=True, scale_map="sigmoid"))
        continue
      # normflows' checkerboard needs an even width: odd levels (7×7 on
      # MNIST) use channel splits only.
      checker = j < steps // 2 and (width // 2 ** (levels - i)) % 2 == 0
      mode = ("checkerboard" if checker else "channel") + (
          "_inv" if j % 2 else "")
      c_in = c if checker else c // 2
      c_out = 2 * (c if checker else c // 2)
      net = nf.nets.ConvNet2d((c_in, hidden, hidden, c_out), (3, 1, 3),
                              0.0, True)
      # Composite keeps a per-example log-det (ActNorm alone returns one
      # for the whole batch), as GlowBlock does.
      level.append(nf.flows.Composite([nf.flows.AffineCouplingBlock(
          net, scale=True, scale_map=scale_map, split_mode=mode),
                                       nf.flows.ActNorm((c, 1, 1))]))
    level.append(nf.flows.Squeeze())
    flows.append(level)
    if i > 0:
      merges.append(nf.flows.Merge())
      factor = 2 ** (levels - i)
      latent = (channels * factor, height // factor, width // factor)
    else:
      factor = 2 ** levels
      latent = (channels * 2 * factor, height // factor, width // factor)
    q0.append(nf.distributions.GlowBase(latent))
  return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


def to_model_space(torch, pixels):
  """NHWC dequantized pixels in [0, 256) (numpy) → the NCHW x/256 − 0.5
  float32 tensor the peers model."""
  return torch.from_numpy(np.ascontiguousarray(
      np.transpose(pixels, (0, 3, 1, 2)), np.float32)) / 256.0 - 0.5


def pixel_nll(flow, y, shape):
  """−log p(x) in nats per image, pixel units: −(log p(y) − D·log 256)."""
  return float(np.prod(shape)) * float(np.log(256.0)) - flow.log_prob(y, None)


def build_flow(kind, shape, target, scale_map="sigmoid"):
  """(flow, parameters, hidden width): the normflows model of `kind`
  nearest `target` trainable parameters."""
  configure_torch()
  if kind not in ("nf_glow", "nf_realnvp"):
    raise ValueError(f"kind must be 'nf_glow' or 'nf_realnvp', got {kind!r}")
  best = None
  for hidden in range(models.WIDTH_STEP, 2049, models.WIDTH_STEP):
    flow = _flow(kind, shape, hidden, scale_map)
    n = sum(p.numel() for p in flow.parameters() if p.requires_grad)
    if best is None or abs(n - target) < abs(best[1] - target):
      best = (flow, n, hidden)
    if n > target:
      break
  return best


def build(spec, shape, batch):
  """The bench's handle dict (see `bench.contestants.build`) for a torch peer:
  no-argument `train`, `log_prob`, `sample` callables on one fixed batch,
  `raw_sample(n, seed)` in pixel space before any clipping, and `flops()`."""
  torch = configure_torch()
  target = spec.get("target") or PRESETS[spec["preset"]]
  flow, params, hidden = build_flow(spec["impl"], shape, target,
                                    spec.get("scale_map", "sigmoid"))
  rng = np.random.default_rng(0)
  y = to_model_space(torch, rng.uniform(0, 256, (batch,) + tuple(shape)))
  optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)

  def loss_fn(t):
    return torch.mean(pixel_nll(flow, t, shape))

  def train():
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())

  def log_prob():
    with torch.no_grad():
      return -pixel_nll(flow, y, shape)

  def sample(n=batch):
    with torch.no_grad():
      return flow.sample(n)[0]

  def raw_sample(n, seed):
    torch.manual_seed(int(seed[0]) * 1000003 + int(seed[1]))
    with torch.no_grad():
      s = flow.sample(n)[0]
    return ((s.permute(0, 2, 3, 1) + 0.5) * 256.0).numpy()

  def flops():
    from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=import-outside-toplevel
    counts = []
    for fn in (log_prob, lambda: loss_fn(y).backward(), sample):
      with FlopCounterMode(display=False) as counter:
        fn()
      counts.append(counter.get_total_flops() / batch)
    optimizer.zero_grad(set_to_none=True)
    return tuple(counts)

  return dict(params=params, size=hidden, train=train, log_prob=log_prob,
              sample=sample, raw_sample=raw_sample, flops=flops,
              scales=_levels(shape), torch=torch.__version__)
