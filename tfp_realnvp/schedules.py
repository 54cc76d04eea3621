"""Learning-rate warmup in front of any Keras schedule.

```
  lr(step) = after(step) · min(1, (step + 1) / warmup_steps)
```

A linear ramp over the first `warmup_steps` optimizer steps, then the
wrapped schedule (`after`: a number or a
`keras.optimizers.schedules.LearningRateSchedule`, evaluated at the same
`step`, so a decay counts from step 0). Flows start with near-identity
couplings whose first large steps can blow up the log-scales; Glow,
Flow++ and most peers warm up.

```python
import keras
from tfp_realnvp.schedules import Warmup
lr = Warmup(keras.optimizers.schedules.CosineDecay(1e-3, 5000), 200)
optimizer = keras.optimizers.Adamax(lr, global_clipnorm=100.0)
```
"""

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
