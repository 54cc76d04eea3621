"""Multi-scale factor-out (Dinh et al., 2017, §3.6, eq. 13-16).

After the couplings and the squeeze of a scale, half of the channels leave
the flow and are modelled directly by the Gaussian base; the other half goes
on to the next scale:

```
  h(0) = x
  (z(i+1), h(i+1)) = f(i+1)(h(i))          (eq. 13-14)
  z(L) = f(L)(h(L-1))                      (eq. 15)
  z = (z(1), ..., z(L))                    (eq. 16)

            ┌─ first half of the channels ─ Reshape([n_i]) ──────────┐
  h ─ Split ┤                                                        ├─ concat ─ z (flat)
            └─ second half ─ next scale ... ─ flat [n_rest] ─────────┘
          tfb.Split(2)       tfb.JointMap                       tfb.Invert(tfb.Split([n_i, n_rest]))
```

Everything is composed from TFP bijectors (`Split`, `JointMap`, `Reshape`,
`Invert`), so the latent of the whole flow is one flat vector of
`D = H·W·C` numbers whose first `n_1` entries are the first factored-out
part, and so on. `split_latent` / `merge_latent` convert between that
vector and the per-scale latents.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp.bijectors import cache


def flatten(event_shape, name="flatten"):
  """`tfb.Reshape` from `event_shape` to `[prod(event_shape)]`."""
  return cache.scoped(tfp.bijectors.Reshape)(
      event_shape_out=[int(np.prod(event_shape))],
      event_shape_in=[int(d) for d in event_shape], name=name)


def factor_out(event_shape, rest, name="factor_out"):
  """Bijector `[..., H, W, C] -> [..., H·W·C]` that factors out half.

  The first `C // 2` channels are flattened into the latent directly; the
  remaining channels go through `rest`, which must map
  `(H, W, C - C // 2)` to a flat vector of the same size.

  Args:
    event_shape: `(H, W, C)` of the input; C must be even.
    rest: the bijector of all later scales (ends flat).
  """
  height, width, channels = (int(d) for d in event_shape)
  if channels % 2:
    raise ValueError(f"factor-out splits the channels in two halves and needs "
                     f"an even channel count, got event shape {event_shape}")
  half = channels // 2
  n_out = height * width * half
  n_rest = height * width * (channels - half)
  # The composites hold `rest` (whose layers' weights change): their cache
  # entries must not outlive one evaluation either, nor the splits' (TFP's
  # class cache would keep every traced graph alive).
  split = cache.scoped(tfp.bijectors.Split)
  return cache.Chain(
      [
          cache.Invert(split([n_out, n_rest], axis=-1)),
          cache.JointMap([flatten((height, width, half)), rest]),
          split(2, axis=-1),
      ],
      name=name)


def split_latent(z, latent_shapes):
  """Splits flat latents `[..., D]` into per-scale parts `[..., h, w, c]`.

  Args:
    z: `[..., D]` with `D = sum(h·w·c)`.
    latent_shapes: the per-scale shapes, first factored-out scale first
      (`RealNVP.latent_shapes`).
  """
  z = tf.convert_to_tensor(z)
  sizes = [int(np.prod(s)) for s in latent_shapes]
  if z.shape[-1] is not None and z.shape[-1] != sum(sizes):
    raise ValueError(f"expected latents with last dimension {sum(sizes)} "
                     f"(= sum of {list(latent_shapes)}), got shape {z.shape}")
  batch = tf.shape(z)[:-1]
  return [tf.reshape(part, tf.concat([batch, list(shape)], axis=0))
          for part, shape in zip(tf.split(z, sizes, axis=-1), latent_shapes)]


def merge_latent(parts):
  """Inverse of `split_latent`: per-scale parts -> flat `[..., D]`."""
  flat = []
  for part in parts:
    part = tf.convert_to_tensor(part)
    batch = tf.shape(part)[:-3]
    flat.append(tf.reshape(part, tf.concat([batch, [-1]], axis=0)))
  return tf.concat(flat, axis=-1)
