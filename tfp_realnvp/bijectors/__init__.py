"""Real NVP bijectors (TFP `Bijector`s whose state lives in Keras 3 layers).

Direction convention: `forward` is data -> latent (the paper's `f`).
Results are cached for one evaluation only (`evaluation()`): every call sees
the current weights.

- `MultiScaleRealNVP`: the whole multi-scale architecture (`real_nvp_flow`).
- `AffineCoupling`: eq. 4-9, the affine formula once; its mask strategy is a
  `masks.CouplingMask` (`CheckerboardMask`, `ChannelMask`).
- `FlowBatchNorm` (+ `BatchNormState`, its Keras variables): eq. 17-18.
- `Squeeze`, `factor_out`, `flatten`: the multi-scale plumbing (§3.6).
- `LogitPreprocess`: pixels -> logit space (§4.1).
"""

from tfp_realnvp.bijectors.batch_norm import FlowBatchNorm
from tfp_realnvp.bijectors.batch_norm import BatchNormState
from tfp_realnvp.bijectors.cache import evaluation
from tfp_realnvp.bijectors.coupling import AffineCoupling
from tfp_realnvp.bijectors.logit import LogitPreprocess
from tfp_realnvp.bijectors.masks import ChannelMask
from tfp_realnvp.bijectors.masks import CheckerboardMask
from tfp_realnvp.bijectors.masks import CouplingMask
from tfp_realnvp.bijectors.masks import checkerboard_mask
from tfp_realnvp.bijectors.multiscale import factor_out
from tfp_realnvp.bijectors.multiscale import flatten
from tfp_realnvp.bijectors.multiscale import merge_latent
from tfp_realnvp.bijectors.multiscale import split_latent
from tfp_realnvp.bijectors.real_nvp_flow import MultiScaleRealNVP
from tfp_realnvp.bijectors.squeeze import Squeeze

__all__ = [
    "AffineCoupling", "ChannelMask", "CheckerboardMask", "CouplingMask",
    "FlowBatchNorm", "BatchNormState", "LogitPreprocess",
    "MultiScaleRealNVP", "Squeeze", "checkerboard_mask", "evaluation",
    "factor_out", "flatten", "merge_latent", "split_latent",
]
