"""Learning-rate schedules: warmup in front of any Keras schedule
(`Warmup`, keyed to optimizer steps) and a schedule keyed to a time budget
(`BudgetSchedule`, keyed to the fraction of the budget elapsed).

```
  Warmup:          lr(step) = after(step) · min(1, (step + 1) / warmup_steps)
```

A linear ramp over the first `warmup_steps` optimizer steps, then the
wrapped schedule (`after`: a number or a
`keras.optimizers.schedules.LearningRateSchedule`, evaluated at the same
`step`, so a decay counts from step 0). Flows start with near-identity
couplings whose first large steps can blow up the log-scales; Glow,
Flow++ and most peers warm up.

```python
import keras
import tfp_realnvp
from tfp_realnvp.schedules import Warmup
lr = Warmup(keras.optimizers.schedules.CosineDecay(1e-3, 5000), 200)
optimizer = tfp_realnvp.optimizers.Adamax(lr, global_clipnorm=100.0)
```

With a wall-clock budget the number of steps is not known in advance (a
slow machine runs a fifth of a fast one's), so a decay over `decay_steps`
ends too early or never. `BudgetSchedule` is a function of the budget's
progress `p ∈ [0, 1]` (seconds elapsed / budget seconds), held in a
`tf.Variable` (`schedule.progress`) that the trainer sets before every step
(`training.callbacks.BudgetProgress`, from the wall clock):

```
  BudgetSchedule:  lr(p) = learning_rate · ramp(p) · decay(q),
                   ramp(p) = min(1, p / warmup_fraction)   (1 without warmup)
                   q = clip((p − warmup_fraction) / (1 − warmup_fraction), 0, 1)
                   decay(q) = final_fraction + (1 − final_fraction) · (1 + cos πq) / 2
                              (cosine; 1 for decay="none")
```

so the rate reaches `final_fraction · learning_rate` when the budget runs
out, whatever the step rate. The variable is read inside the traced train
step (never a constant baked in at tracing); created under a
`tf.distribute` strategy's scope it is mirrored and its assignments from
cross-replica context (a callback) reach every replica. It is not part of
the config: a deserialized schedule starts at progress 0.

```python
from tfp_realnvp.schedules import BudgetSchedule
lr = BudgetSchedule(2e-3, warmup_fraction=0.05, decay="cosine",
                    final_fraction=0.05)
lr.progress.assign(0.5)   # half the budget gone
```
"""

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
  """Linear learning-rate warmup, then `after` (see module docstring).

  Args:
    after: the learning rate (a number > 0) or schedule after warmup.
    warmup_steps: steps of the ramp (>= 1).
  """

  def __init__(self, after, warmup_steps):
    if isinstance(after, dict):  # from a saved config
      after = keras.optimizers.schedules.deserialize(after)
    if not isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
      if isinstance(after, bool) or not isinstance(after, (int, float)) or not (
          after > 0):
        raise ValueError(f"after must be a learning rate > 0 or a Keras "
                         f"LearningRateSchedule, got {after!r}")
      after = float(after)
    if isinstance(warmup_steps, bool) or not isinstance(
        warmup_steps, int) or warmup_steps < 1:
      raise ValueError(f"warmup_steps must be an integer >= 1, got "
                       f"{warmup_steps!r}")
    self.after = after
    self.warmup_steps = warmup_steps

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    ramp = tf.minimum(1.0, (step + 1.0) / float(self.warmup_steps))
    after = (self.after(step) if callable(self.after) else
             tf.constant(self.after, tf.float32))
    return tf.cast(after, tf.float32) * ramp

  def get_config(self):
    after = (keras.optimizers.schedules.serialize(self.after)
             if callable(self.after) else self.after)
    return {"after": after, "warmup_steps": self.warmup_steps}


BUDGET_DECAYS = ("none", "cosine")


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class BudgetSchedule(keras.optimizers.schedules.LearningRateSchedule):
  """A learning rate keyed to the elapsed fraction of a time budget (see
  module docstring): linear warmup over `warmup_fraction` of the budget,
  then `decay` to `final_fraction · learning_rate` at its end.

  Args:
    learning_rate: the peak learning rate (> 0).
    warmup_fraction: fraction of the budget for the linear ramp, in [0, 1)
      (0 = no warmup; the rate starts at its peak).
    decay: "cosine" (to the end of the budget) or "none" (the peak after
      warmup).
    final_fraction: the cosine's end value as a fraction of the peak, in
      [0, 1].

  `progress` (float32 `tf.Variable`, in [0, 1]) is the budget's elapsed
  fraction; the step count passed by the optimizer is not used.
  """

  def __init__(self, learning_rate, warmup_fraction=0.0, decay="cosine",
               final_fraction=0.0):
    if isinstance(learning_rate, bool) or not isinstance(
        learning_rate, (int, float)) or not learning_rate > 0:
      raise ValueError(f"learning_rate must be a number > 0, got "
                       f"{learning_rate!r}")
    if isinstance(warmup_fraction, bool) or not isinstance(
        warmup_fraction, (int, float)) or not 0 <= warmup_fraction < 1:
      raise ValueError(f"warmup_fraction must be a number in [0, 1), got "
                       f"{warmup_fraction!r}")
    if decay not in BUDGET_DECAYS:
      raise ValueError(f"decay must be one of {BUDGET_DECAYS}, got "
                       f"{decay!r}")
    if isinstance(final_fraction, bool) or not isinstance(
        final_fraction, (int, float)) or not 0 <= final_fraction <= 1:
      raise ValueError(f"final_fraction must be a number in [0, 1], got "
                       f"{final_fraction!r}")
    self.learning_rate = float(learning_rate)
    self.warmup_fraction = float(warmup_fraction)
    self.decay = decay
    self.final_fraction = float(final_fraction)
    self.progress = tf.Variable(0.0, trainable=False, dtype=tf.float32,
                                name="budget_progress")

  def value_at(self, progress):
    """The learning rate at budget progress `progress` (a float32 tensor;
    clipped to [0, 1])."""
    p = tf.clip_by_value(tf.cast(progress, tf.float32), 0.0, 1.0)
    w = self.warmup_fraction
    ramp = tf.minimum(1.0, p / w) if w > 0 else tf.constant(1.0)
    if self.decay == "cosine":
      q = tf.clip_by_value((p - w) / (1.0 - w), 0.0, 1.0)
      f = self.final_fraction
      factor = f + (1.0 - f) * 0.5 * (1.0 + tf.cos(math.pi * q))
    else:
      factor = tf.constant(1.0)
    return self.learning_rate * ramp * factor

  def __call__(self, step):
    del step  # keyed to the budget's progress, not to steps
    return self.value_at(self.progress.read_value())

  def get_config(self):
    return {"learning_rate": self.learning_rate,
            "warmup_fraction": self.warmup_fraction, "decay": self.decay,
            "final_fraction": self.final_fraction}
