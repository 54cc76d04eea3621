"""The typicality reference of a model, and whether it is current.

`ScoreStatistics` is a Keras 3 layer of `RealNVP` (saved, exported): mean
and std of the per-image bin-centre bits/dim over the training data, and a
digest of the weights they were computed with (`reference_digest`: every
other weight, and `use_ema`). `check_reference` refuses a reference that
does not belong to the current weights, so a stale one is never served.
`scores.compute_statistics` computes it.
"""

import keras
import numpy as np

from tfp_realnvp import digests


def weights_digest(variables):
  """Two int32 of `digests.weights_sha256(variables)` (order matters)."""
  return digests.digest_words(digests.weights_sha256(variables))


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ScoreStatistics(keras.layers.Layer):
  """The typicality reference of a model: statistics of its per-image
  bin-centre bits/dim over the training data, and the weights they belong to.

  Variables (non-trainable, saved and exported): `mean`, `std`, `count`
  (images; 0 = not computed) and `weights_digest` (`weights_digest` of the
  model's other weights at the time, plus whether the averaged weights were
  in use). Files saved before this layer existed load with `count = 0`.
  """

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.mean = self.add_weight(name="train_bpd_mean", shape=(),
                                initializer="zeros", trainable=False)
    self.std = self.add_weight(name="train_bpd_std", shape=(),
                               initializer="zeros", trainable=False)
    self.count = self.add_weight(name="train_bpd_count", shape=(),
                                 initializer="zeros", dtype="int32",
                                 trainable=False)
    self.digest = self.add_weight(name="weights_digest", shape=(2,),
                                  initializer="zeros", dtype="int32",
                                  trainable=False)
    self.built = True

  def load_own_variables(self, store):
    if not list(store.keys()):
      return  # saved before score statistics existed: stays "not computed"
    super().load_own_variables(store)

  def is_set(self):
    return int(self.count.numpy()) > 0

  def record(self, mean, std, count, digest):
    self.mean.assign(float(mean))
    self.std.assign(float(std))
    self.count.assign(int(count))
    self.digest.assign(np.asarray(digest, np.int32))

  def is_current(self, digest):
    """True when set and computed with the weights `digest` describes."""
    return self.is_set() and np.array_equal(self.digest.numpy(),
                                            np.asarray(digest, np.int32))

  def as_dict(self):
    return {"train_bpd_mean": float(self.mean.numpy()),
            "train_bpd_std": float(self.std.numpy()),
            "train_images": int(self.count.numpy())}


def reference_digest(model):
  """Digest of every weight of `model` but its score statistics, and of
  `use_ema`: what the typicality reference records and is checked against."""
  own = {id(v) for v in model.score_statistics.weights}
  return weights_digest(
      [v for v in model.weights if id(v) not in own] +
      [np.array([int(bool(model.use_ema))], np.int8)])


def reference_is_current(model):
  """True when the model's typicality reference is set and belongs to its
  current weights (and `use_ema`)."""
  return model.score_statistics.is_current(reference_digest(model))


def check_reference(model):
  """A `ValueError` unless the typicality reference is set and belongs to
  the current weights (and the current `use_ema`)."""
  if not model.score_statistics.is_set():
    raise ValueError(
        "score(kind='typicality') needs the mean training bits/dim, which "
        "this model does not have (fit() computes it at its end): call "
        "model.compute_score_statistics(training_data)")
  if not reference_is_current(model):
    raise ValueError(
        "the typicality reference was computed with other weights (they "
        "changed since, or use_ema was switched): call "
        "model.compute_score_statistics(training_data) again")
