"""Exponential moving averages of a `RealNVP`'s weights (`ema_decay`).

With `ema_decay = d` the model owns a second, non-trainable copy of every
layer (`flow_layers`, attributes prefixed `ema_`), and after every training
step `ema ← d_t·ema + (1 − d_t)·w` for trainable weights, with
`d_t = min(d, (1 + t)/(10 + t))`; moving statistics (non-trainable) are
copied, so the averaged copy always uses what training accumulated.
Inference uses the averages while `model.use_ema` is True.

Why not Keras' own (`optimizer(use_ema=True)` + `SwapEMAWeights`), checked
against Keras 3.15:
- Keras keeps the averages in the *optimizer*. This package's `.keras`
  files without optimizer state (best checkpoints, the pretrained models),
  its SavedModel exports and `model.use_ema` all need the averages in the
  *model*, where they are saved, restored and served with it.
- Keras' momentum is constant; the warm-up `min(d, (1 + t)/(10 + t))` (so
  early averages are not dominated by the initial weights) is not offered.
- `.keras` files written with `ema_decay` carry the averages at the
  `ema_*` weight paths; they must keep loading with bit-identical results.
"""

import keras
import tensorflow as tf

from tfp_realnvp import flow_layers


class WeightAverages:
  """The (raw, average) variable pairs of a model's two layer copies."""

  def __init__(self, raw_layers, ema_layers):
    self.pairs = []
    for raw, ema in zip(raw_layers, ema_layers):
      ema.trainable = False
      if [tuple(v.shape) for v in raw.weights] != [tuple(v.shape)
                                                     for v in ema.weights]:
        raise AssertionError(f"EMA copy of {raw.name} differs in shape")
      self.pairs += list(zip(raw.weights, ema.weights))

  def copy(self):
    """Averages ← current weights."""
    for raw, ema in self.pairs:
      ema.assign(raw)

  def update(self, decay):
    """One averaging step with `decay` (trainable weights; the others are
    copied)."""
    for raw, ema in self.pairs:
      if raw.trainable:
        ema.assign(decay * ema + (1.0 - decay) * raw)
      else:
        ema.assign(raw)

  def averaged_variables(self):
    """The variables of the averaged copy."""
    return [ema for _, ema in self.pairs]


def attach_averages(model, steps):
  """With `model.ema_decay`: builds the averaged copy of `model`'s layers
  for the plan `steps` (non-trainable, attributes prefixed `ema_`), sets it
  to the current weights and returns its `WeightAverages`; else `None`.

  The pairs are also tracked by Keras as the model's own variables
  (`model._ema_pairs`), as since EMA exists: they are part of `.keras`
  files and of `model.weights` (so of the typicality digest).
  """
  if model.ema_decay is None:
    return None
  flow_layers.attach(model, flow_layers.build(model, steps, "ema_"), "ema_")
  averages = WeightAverages(flow_layers.of(model).all(),
                            flow_layers.of(model, ema=True).all())
  averages.copy()
  model._ema_pairs = []  # pylint: disable=protected-access
  model._ema_pairs += averages.pairs  # pylint: disable=protected-access
  return averages


def callbacks(model):
  """The callbacks `fit` adds for `model`: `[EMAUpdate()]` with EMA."""
  return [] if model.ema_decay is None else [EMAUpdate()]


def decay_at(ema_decay, step):
  """`d_t = min(d, (1 + t)/(10 + t))`."""
  return tf.minimum(ema_decay, (1.0 + step) / (10.0 + step))


class EMAUpdate(keras.callbacks.Callback):
  """Updates the model's weight averages after every training step.

  Runs outside the train step (in cross-replica context under
  `tf.distribute`, where assigning mirrored variables is allowed), one
  compiled update per call; with `steps_per_execution = k` one call covers
  `k` steps and the decay is raised to the number of steps done.
  """

  def __init__(self):
    super().__init__()
    self._update = None
    self._last = None

  def on_train_begin(self, logs=None):
    self._last = int(self.model.optimizer.iterations.numpy())
    if self._update is None:
      model = self.model

      @tf.function
      def update(t, steps):
        model.update_ema(decay_at(model.ema_decay, t) ** steps)
      self._update = update

  def on_train_batch_end(self, batch, logs=None):
    now = int(self.model.optimizer.iterations.numpy())
    if now > self._last:
      self._update(tf.constant(float(now), tf.float32),
                   tf.constant(float(now - self._last), tf.float32))
    self._last = now
