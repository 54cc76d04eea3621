"""Latent interpolation between four images (Dinh et al., 2017, eq. 19).

```
  z(φ, φ') = cos φ (cos φ' z1 + sin φ' z2) + sin φ (cos φ' z3 + sin φ' z4)
```

for φ, φ' on an even grid over `[0, π/2]`; the corners are the four inputs.
`RealNVP.interpolate` encodes the images, calls `manifold` and decodes.
"""

import math

import tensorflow as tf

from tfp_realnvp import validation


def manifold(z1, z2, z3, z4, steps):
  """`[steps, steps, D]` latents of eq. 19 from four `[D]` latents."""
  angles = tf.linspace(0.0, math.pi / 2, steps)
  phi = angles[:, None, None]
  phi2 = angles[None, :, None]
  return (tf.cos(phi) * (tf.cos(phi2) * z1 + tf.sin(phi2) * z2) +
          tf.sin(phi) * (tf.cos(phi2) * z3 + tf.sin(phi2) * z4))


def interpolate(model, images, steps, labels=None):
  """`RealNVP.interpolate`: encode four images, `manifold`, decode."""
  validation.check_positive_int("steps", steps)
  images = validation.check_images(images, model.image_shape,
                                   check_values=model.validate_inputs)
  if images.shape[0] != 4:
    raise ValueError(f"interpolate needs exactly 4 images, got shape "
                     f"{images.shape}")
  grid_labels = None
  if model.num_classes or labels is not None:
    label = validation.check_one_class(labels, model.num_classes,
                                       model.validate_inputs)
    labels, grid_labels = tf.fill([4], label), tf.fill([steps**2], label)
  grid = manifold(*tf.unstack(model.encode(images, labels)), steps)
  out = model.decode(tf.reshape(grid, [steps * steps, model.event_size]),
                     grid_labels)
  return tf.reshape(out, [steps, steps] + list(model.image_shape))
