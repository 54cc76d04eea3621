"""Squeeze: `(H, W, C) -> (H/2, W/2, 4C)` (Dinh et al., 2017, §3.6, fig. 3).

Each 2×2×C block of the image becomes one 1×1×4C vector. Built only from
TFP's `tfb.Reshape` and `tfb.Transpose`, so the map is a pure permutation of
the elements (volume preserving, log-det 0) and its inverse comes from TFP.

```
  [H, W, C] --Reshape--> [H/2, 2, W/2, 2, C] --Transpose(0,2,1,3,4)-->
  [H/2, W/2, 2, 2, C] --Reshape--> [H/2, W/2, 4C]

  channel order of the output pixel (i, j): (2i, 2j, :), (2i, 2j+1, :),
                                            (2i+1, 2j, :), (2i+1, 2j+1, :)
```
"""

import tensorflow_probability as tfp

from tfp_realnvp.bijectors import cache

tfb = tfp.bijectors


def squeeze_event_shape(event_shape):
  """Shape after the squeeze, with a clear error for odd sides."""
  height, width, channels = (int(d) for d in event_shape)
  if height % 2 or width % 2:
    raise ValueError(f"squeeze needs even height and width, got event shape "
                     f"{(height, width, channels)}")
  return (height // 2, width // 2, 4 * channels)


def Squeeze(event_shape, validate_args=False, name="squeeze"):  # pylint: disable=invalid-name
  """Space-to-depth bijector on events of shape `(H, W, C)`.

  A factory (named like a bijector class) that returns a `tfb.Chain` of
  `tfb.Reshape` and `tfb.Transpose` with TFP's own inverse, each scoped to
  one evaluation (`cache.scoped`: TFP's class caches would keep every graph
  traced through them alive).

  Example:

  ```python
  sq = Squeeze((4, 4, 1))
  y = sq.forward(tf.reshape(tf.range(16.), [1, 4, 4, 1]))   # [1, 2, 2, 4]
  x = sq.inverse(y)
  ```

  Args:
    event_shape: the input `(H, W, C)`; H and W must be even.
  """
  out_h, out_w, out_c = squeeze_event_shape(event_shape)
  channels = out_c // 4
  reshape = cache.scoped(tfb.Reshape)
  return cache.Chain(
      [
          reshape(event_shape_out=[out_h, out_w, out_c],
                  event_shape_in=[out_h, out_w, 2, 2, channels]),
          cache.scoped(tfb.Transpose)(perm=[0, 2, 1, 3, 4]),
          reshape(event_shape_out=[out_h, 2, out_w, 2, channels],
                  event_shape_in=[2 * out_h, 2 * out_w, channels]),
      ],
      validate_args=validate_args, name=name)
