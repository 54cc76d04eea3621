"""Real NVP bijectors (TFP `Bijector`s whose state lives in Keras 3 layers).

Direction convention: `forward` is data -> latent (the paper's `f`).
Results are cached for one evaluation only (`evaluation()`): every call sees
the current weights.
"""

from tfp_realnvp.bijectors.batch_norm import BatchNormalization
from tfp_realnvp.bijectors.batch_norm import BatchNormState
from tfp_realnvp.bijectors.coupling import AffineCoupling
from tfp_realnvp.bijectors.coupling import checkerboard_mask
from tfp_realnvp.bijectors.cache import evaluation
from tfp_realnvp.bijectors.logit import LogitPreprocess
from tfp_realnvp.bijectors.multiscale import factor_out
from tfp_realnvp.bijectors.multiscale import flatten
from tfp_realnvp.bijectors.multiscale import merge_latent
from tfp_realnvp.bijectors.multiscale import split_latent
from tfp_realnvp.bijectors.squeeze import Squeeze

__all__ = [
    "AffineCoupling", "BatchNormalization", "BatchNormState",
    "LogitPreprocess", "Squeeze", "checkerboard_mask", "evaluation", "factor_out",
    "flatten", "merge_latent", "split_latent",
]
