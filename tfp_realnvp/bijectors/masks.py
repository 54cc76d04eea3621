"""Mask strategies of the coupling layer (Dinh et al., 2017, §3.4, fig. 3).

A coupling (eq. 4-9) splits its input in two: one part conditions the s/t
network, the other is transformed by `x·exp(s) + t`. *Which* part is which
is the only thing that differs between coupling layers, so it is a strategy
object here; `AffineCoupling` holds the formula once and asks its mask:

```
  conditioner_input, transformed = mask.split(x)
  s, t = mask.restrict(network(conditioner_input))   # zero where b = 1
  y = mask.merge(x, affine(s, t)(transformed))
```

```
  CheckerboardMask (parity 0)           ChannelMask (parity 0)
     1 0 1 0                              x = [x_a | x_b]   (channel halves)
     0 1 0 1    b(i, j) = 1 where         network sees x_a only;
     1 0 1 0    (i + j) % 2 == parity     x_b is transformed
     0 1 0 1
  network sees concat(b⊙x, b);
  the whole x goes through the formula with s = t = 0 where b = 1
```

A new mask strategy (e.g. the half-resolution checkerboard of issue 15) is
one new subclass of `CouplingMask` plus one entry in `CHECKERBOARDS` (the
`checkerboard=` option of `AffineCoupling` and `RealNVP`).
"""

import functools

import numpy as np
import tensorflow as tf

CHECKERBOARD = "checkerboard"
CHANNEL = "channel"
MASK_TYPES = (CHECKERBOARD, CHANNEL)


def checkerboard_mask(height, width, parity, dtype=tf.float32):
  """`[1, H, W, 1]` mask, 1 where `(i + j) % 2 == parity`."""
  i = tf.range(height)[:, None]
  j = tf.range(width)[None, :]
  mask = tf.cast(tf.equal((i + j) % 2, parity), dtype)
  return mask[None, :, :, None]


@functools.lru_cache(maxsize=None)
def _static_checkerboard(height, width, parity):
  i, j = np.indices((height, width))
  return ((i + j) % 2 == parity).astype(np.float32)[None, :, :, None]


class CouplingMask:
  """Which part of `[N, H, W, C]` conditions a coupling, which is changed.

  Subclasses define the split, the restriction of `s`, `t` to the changed
  part, the merge back, and the channel counts of the s/t network.

  Args:
    parity: 0 or 1, which half conditions.
  """

  mask_type = None

  def __init__(self, parity=0):
    if parity not in (0, 1):
      raise ValueError(f"parity must be 0 or 1, got {parity!r}")
    self.parity = int(parity)

  def conditioner_input_channels(self, channels, spatial=None):
    """Channels of the s/t network's input for a `C`-channel coupling
    (`spatial`: the `(H, W)` it runs at, for strategies that depend on it)."""
    raise NotImplementedError

  def conditioner_output_channels(self, channels, spatial=None):
    """Channels of `s` and of `t`."""
    raise NotImplementedError

  def check(self, x, name):
    """Raises a `ValueError` naming `name` unless `x` suits this mask."""
    if x.shape[-1] is None:
      raise ValueError(f"{name}: the channel dimension must be known "
                       f"statically, got shape {x.shape}")

  def split(self, x):
    """`x [N, H, W, C]` -> `(conditioner input, part to transform)`."""
    raise NotImplementedError

  def restrict(self, x, log_scale, shift):
    """`s`, `t` as the network gave them for input `x` -> zero outside the
    changed part."""
    del x
    return log_scale, shift

  def active(self, x):
    """`None` when every element of the part to transform is changed, else
    a 0/1 tensor broadcastable to it (0: a conditioning element inside the
    part, which `restrict` gives zero parameters)."""
    del x
    return None

  def merge(self, x, transformed):
    """Puts the transformed part back next to the conditioning part of `x`."""
    raise NotImplementedError


class CheckerboardMask(CouplingMask):
  """Spatial checkerboard at full resolution; the mask is an extra input
  channel of the network (`C + 1` in, `C` out)."""

  mask_type = CHECKERBOARD

  def conditioner_input_channels(self, channels, spatial=None):
    return channels + 1  # b⊙x and the mask itself

  def conditioner_output_channels(self, channels, spatial=None):
    return channels

  def _mask(self, x):
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:  # dynamic: build it in the graph
      return checkerboard_mask(tf.shape(x)[1], tf.shape(x)[2], self.parity,
                               x.dtype)
    return tf.constant(_static_checkerboard(height, width, self.parity),
                       x.dtype)

  def split(self, x):
    mask = self._mask(x)
    masked = x * mask  # the same in both directions: y = x where b = 1
    conditioner_input = tf.concat(
        [masked, tf.broadcast_to(mask, tf.shape(masked[..., :1]))], axis=-1)
    return conditioner_input, x

  def restrict(self, x, log_scale, shift):
    inv_mask = 1.0 - self._mask(shift)
    return (None if log_scale is None else log_scale * inv_mask,
            shift * inv_mask)

  def active(self, x):
    return 1.0 - self._mask(x)

  def merge(self, x, transformed):
    del x  # s = t = 0 where b = 1: those pixels passed through unchanged
    return transformed


class ChannelMask(CouplingMask):
  """First (parity 0) or second (parity 1) channel half conditions; the
  network sees that half only (`⌊C/2⌋` in, `C − ⌊C/2⌋` out)."""

  mask_type = CHANNEL

  def conditioner_input_channels(self, channels, spatial=None):
    return channels // 2

  def conditioner_output_channels(self, channels, spatial=None):
    return channels - channels // 2

  def check(self, x, name):
    super().check(x, name)
    if x.shape[-1] < 2:
      raise ValueError(f"{name}: a channel coupling needs at least 2 "
                       f"channels, got shape {x.shape}")

  def _halves(self, channels):
    return (channels // 2 if self.parity == 0 else
            channels - channels // 2)

  def split(self, x):
    first, second = tf.split(x, [self._halves(x.shape[-1]),
                                 x.shape[-1] - self._halves(x.shape[-1])],
                             axis=-1)
    return (first, second) if self.parity == 0 else (second, first)

  def merge(self, x, transformed):
    conditioning, _ = self.split(x)
    parts = ([conditioning, transformed] if self.parity == 0 else
             [transformed, conditioning])
    return tf.concat(parts, axis=-1)


class SqueezedCheckerboardMask(CheckerboardMask):
  """The checkerboard partition computed at half resolution.

  With `tf.nn.space_to_depth(x, 2)` (channel `(dy·2 + dx)·C + c`) the
  checkerboard is a channel partition: parity 0 (`(i + j)` even) is
  channels `[0, C) ∪ [3C, 4C)`, parity 1 is `[C, 3C)`. The same pixels
  condition the same pixels as `CheckerboardMask`, but the s/t network runs
  on the `2C` conditioning channels at `H/2 × W/2` (a quarter of the
  positions, no masked zeros) and returns `s`, `t` for the other `2C`;
  `merge` maps back with `depth_to_space`. (The authors' TF1 code orders
  its squeeze the same way, `squeeze_2x2_ordered`.)

  Rule for odd sizes: a 2×2 squeeze needs even H and W, so a coupling whose
  input has an odd (or statically unknown) height or width is computed as
  the masked `CheckerboardMask` at full resolution (`C + 1` in, `C` out),
  e.g. the 7×7 last scale of a 28×28 model. `plan` and the coupling apply
  the same rule from the static shape.
  """

  @staticmethod
  def squeezable(spatial):
    """True when `(H, W)` are both known and even."""
    return (spatial is not None and None not in tuple(spatial) and
            all(int(d) % 2 == 0 for d in spatial))

  def conditioner_input_channels(self, channels, spatial=None):
    if spatial is not None and not self.squeezable(spatial):
      return super().conditioner_input_channels(channels)
    return 2 * channels

  def conditioner_output_channels(self, channels, spatial=None):
    if spatial is not None and not self.squeezable(spatial):
      return super().conditioner_output_channels(channels)
    return 2 * channels

  def _halves(self, x):
    """(conditioning, changed) halves of the squeezed `x`."""
    b0, b1, b2, b3 = tf.split(tf.nn.space_to_depth(x, 2), 4, axis=-1)
    even = tf.concat([b0, b3], axis=-1)  # (0,0), (1,1): (i + j) even
    odd = tf.concat([b1, b2], axis=-1)   # (0,1), (1,0): (i + j) odd
    return (even, odd) if self.parity == 0 else (odd, even)

  def split(self, x):
    if not self.squeezable(x.shape[1:3]):
      return super().split(x)
    return self._halves(x)

  def restrict(self, x, log_scale, shift):
    if not self.squeezable(x.shape[1:3]):
      return super().restrict(x, log_scale, shift)
    return log_scale, shift

  def active(self, x):
    if not self.squeezable(x.shape[1:3]):
      return super().active(x)
    return None

  def merge(self, x, transformed):
    if not self.squeezable(x.shape[1:3]):
      return super().merge(x, transformed)
    conditioning, _ = self._halves(x)
    even, odd = ((conditioning, transformed) if self.parity == 0 else
                 (transformed, conditioning))
    b0, b3 = tf.split(even, 2, axis=-1)
    b1, b2 = tf.split(odd, 2, axis=-1)
    return tf.nn.depth_to_space(tf.concat([b0, b1, b2, b3], axis=-1), 2)


# `checkerboard=` option -> the strategy of the checkerboard couplings.
CHECKERBOARDS = {"masked": CheckerboardMask,
                 "squeezed": SqueezedCheckerboardMask}


def make_mask(mask_type, parity, checkerboard="masked"):
  """The `CouplingMask` for `mask_type` ('checkerboard' or 'channel')."""
  if mask_type not in MASK_TYPES:
    raise ValueError(f"mask_type must be one of {MASK_TYPES}, got "
                     f"{mask_type!r}")
  if checkerboard not in CHECKERBOARDS:
    raise ValueError(f"checkerboard must be one of {tuple(CHECKERBOARDS)}, "
                     f"got {checkerboard!r}")
  if mask_type == CHANNEL:
    return ChannelMask(parity)
  return CHECKERBOARDS[checkerboard](parity)
