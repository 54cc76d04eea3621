"""Glow's learned split prior as a bijector (Kingma & Dhariwal, 2018, §3).

At a factor-out the event `(H, W, 2c)` splits into the half that leaves,
`z` (first `c` channels), and the half that is kept, `h`. Glow models
`p(z | h) = N(z; μ(h), σ(h)²)`. Equivalently, the flow applies

```
  forward:     ε = (z − μ(h)) · exp(−log σ(h)),   h unchanged
  log|det J|:  −Σ log σ(h)
```

and the factored-out `ε` is `N(0, I)`. That is an affine coupling (eq. 9)
whose channel mask conditions on the second half (parity 1) with
`s = −log σ`, `t = −μ·exp(−log σ)`: `ConditionalGaussianSplit` is exactly
`AffineCoupling(network, 'channel', parity=1)`, with the network a
`tfp_realnvp.prior.SplitPriorNet`. The formula exists once, in `coupling`.
"""

from tfp_realnvp.bijectors import coupling
from tfp_realnvp.bijectors import masks


class ConditionalGaussianSplit(coupling.AffineCoupling):
  """Standardizes the first channel half given the second (see module).

  Args:
    network: `s, t = network(h)` on the kept half (`SplitPriorNet`).
    training: as `AffineCoupling`.
  """

  def __init__(self, network, training=False, validate_args=False,
               name="split_prior"):
    super().__init__(network, mask_type=masks.CHANNEL, parity=1,
                     training=training, validate_args=validate_args,
                     name=name)
