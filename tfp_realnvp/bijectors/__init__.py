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
- Glow's steps: `ActNorm` (+ `ActNormState`), `InvertibleConv1x1`
  (+ `Conv1x1State`, LU form), `reverse_channels`; Glow's split prior
  `ConditionalGaussianSplit`.
- `MaskedAutoregressiveAffine`: a MAF with a MADE conditioner (the 'made'
  prior).
"""

from tfp_realnvp.bijectors.actnorm import ActNorm
from tfp_realnvp.bijectors.actnorm import ActNormState
from tfp_realnvp.bijectors.autoregressive import MaskedAutoregressiveAffine
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
from tfp_realnvp.bijectors.permutation import Conv1x1State
from tfp_realnvp.bijectors.permutation import InvertibleConv1x1
from tfp_realnvp.bijectors.permutation import reverse_channels
from tfp_realnvp.bijectors.real_nvp_flow import MultiScaleRealNVP
from tfp_realnvp.bijectors.split_prior import ConditionalGaussianSplit
from tfp_realnvp.bijectors.squeeze import Squeeze

__all__ = [
    "ActNorm", "ActNormState", "AffineCoupling", "ChannelMask",
    "CheckerboardMask", "ConditionalGaussianSplit", "Conv1x1State",
    "CouplingMask", "FlowBatchNorm", "BatchNormState", "InvertibleConv1x1",
    "LogitPreprocess", "MaskedAutoregressiveAffine", "MultiScaleRealNVP",
    "Squeeze", "checkerboard_mask", "evaluation", "factor_out", "flatten",
    "merge_latent", "reverse_channels", "split_latent",
]
