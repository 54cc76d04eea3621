"""The learning rate keyed to the time budget (issue 29): the schedule's
values, its serialization and its variable read inside traced functions and
under a strategy; the callback that feeds it (a fake clock)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_realnvp
from tfp_realnvp.schedules import BudgetSchedule
from tfp_realnvp.schedules import Warmup
from training import callbacks as callbacks_lib

PEAK = 2e-3


def _at(schedule, progress):
  return float(schedule.value_at(progress))


def test_values_at_start_warmup_end_and_budget_end():
  s = BudgetSchedule(PEAK, warmup_fraction=0.1, decay="cosine",
                     final_fraction=0.05)
  assert _at(s, 0.0) == 0.0
  assert _at(s, 0.05) == pytest.approx(PEAK / 2)
  assert _at(s, 0.1) == pytest.approx(PEAK)  # warmup end: the peak
  # Half-way through the decay: the cosine's midpoint.
  assert _at(s, 0.55) == pytest.approx(PEAK * (0.05 + 0.95 * 0.5))
  assert _at(s, 1.0) == pytest.approx(0.05 * PEAK)  # the budget's end
  assert _at(s, 1.7) == pytest.approx(0.05 * PEAK)  # clipped
  values = [_at(s, p) for p in np.linspace(0.1, 1.0, 20)]
  assert all(a >= b for a, b in zip(values, values[1:]))
  # No warmup: the peak at once; no decay: the peak after the warmup.
  assert _at(BudgetSchedule(PEAK, decay="cosine"), 0.0) == pytest.approx(PEAK)
  flat = BudgetSchedule(PEAK, warmup_fraction=0.2, decay="none")
  assert _at(flat, 0.1) == pytest.approx(PEAK / 2)
  assert _at(flat, 0.2) == _at(flat, 1.0) == pytest.approx(PEAK)


def test_the_optimizer_step_reads_the_progress_variable():
  s = BudgetSchedule(PEAK, warmup_fraction=0.0, decay="cosine")
  traced = tf.function(lambda step: s(step))
  step = tf.constant(7, tf.int64)
  assert float(traced(step)) == pytest.approx(PEAK)
  s.progress.assign(1.0)  # not a constant baked in at tracing
  assert float(traced(step)) == pytest.approx(0.0, abs=1e-12)
  s.progress.assign(0.5)
  assert float(s(step)) == pytest.approx(PEAK / 2)
  # A Keras optimizer's learning rate follows it.
  optimizer = tfp_realnvp.optimizers.Adam(s)
  assert float(optimizer.learning_rate) == pytest.approx(PEAK / 2)


def test_serialization_round_trip_alone_and_behind_warmup():
  s = BudgetSchedule(PEAK, warmup_fraction=0.05, decay="cosine",
                     final_fraction=0.1)
  s.progress.assign(0.7)
  again = keras.optimizers.schedules.deserialize(
      keras.optimizers.schedules.serialize(s))
  assert isinstance(again, BudgetSchedule)
  assert again.get_config() == s.get_config()
  assert float(again.progress) == 0.0  # progress is not config
  wrapped = keras.optimizers.schedules.deserialize(
      keras.optimizers.schedules.serialize(Warmup(s, 10)))
  assert isinstance(wrapped.after, BudgetSchedule)


@pytest.mark.parametrize("kwargs, match", [
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(learning_rate=PEAK, warmup_fraction=1.0), "warmup_fraction"),
    (dict(learning_rate=PEAK, decay="linear"), "decay"),
    (dict(learning_rate=PEAK, final_fraction=1.5), "final_fraction"),
])
def test_invalid_schedule_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    BudgetSchedule(**kwargs)


def test_progress_variable_under_a_mirrored_strategy():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    s = BudgetSchedule(PEAK, warmup_fraction=0.5, decay="none")
  assert isinstance(s.progress, tf.distribute.DistributedValues)
  s.progress.assign(0.25)  # cross-replica context, as from a callback
  per_replica = strategy.run(tf.function(lambda: s(tf.constant(0))))
  values = strategy.experimental_local_results(per_replica)
  assert all(float(v) == pytest.approx(PEAK / 2) for v in values)


# --- the callback, on a fake clock ---------------------------------------------


class _Clock:
  """A fake perf_counter advanced by `_Tick`: every step takes 1 s."""

  def __init__(self):
    self.now = 0.0

  def perf_counter(self):
    return self.now


class _Tick(keras.callbacks.Callback):
  def __init__(self, clock, schedule):
    super().__init__()
    self.clock = clock
    self.schedule = schedule
    self.seen = []  # progress read at each step's start
    self.rates = []
    self.moved = []  # did the step change the trainable weights?
    self._before = None

  def on_train_batch_begin(self, batch, logs=None):
    self.seen.append(float(self.schedule.progress.numpy()))
    self.rates.append(float(self.model.optimizer.learning_rate))
    self._before = [w.numpy() for w in self.model.trainable_weights]

  def on_train_batch_end(self, batch, logs=None):
    self.clock.now += 1.0
    self.moved.append(any(
        not np.array_equal(a, w.numpy())
        for a, w in zip(self._before, self.model.trainable_weights)))


def test_callback_moves_progress_with_the_clock(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(callbacks_lib, "time", clock)
  schedule = BudgetSchedule(PEAK, warmup_fraction=0.2, decay="cosine",
                            final_fraction=0.0)
  model = tfp_realnvp.RealNVP((4, 4, 1), num_scales=1, num_res_blocks=0,
                              num_filters=4)
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(schedule))
  progress = callbacks_lib.BudgetProgress(schedule, minutes=10 / 60)  # 10 s
  tick = _Tick(clock, schedule)
  budget = callbacks_lib.TimeBudget(minutes=10 / 60)
  x = np.random.default_rng(0).integers(0, 256, (64, 4, 4, 1)) + 0.5
  model.fit(x.astype(np.float32), batch_size=4, epochs=3, verbose=0,
            callbacks=[progress, tick, budget], score_statistics=False)
  # 16 steps per epoch; the budget is reached after the 10th step.
  assert tick.seen == pytest.approx([i / 10 for i in range(10)])
  assert progress.progress == pytest.approx(0.9)
  assert progress.final_progress == 1.0
  assert tick.rates[0] == 0.0 and tick.rates[2] == pytest.approx(PEAK)
  assert tick.rates == pytest.approx([_at(schedule, p) for p in tick.seen])
  # The traced train step reads the variable: the first step, at progress 0
  # (rate 0), leaves the weights alone; the next ones move them.
  assert tick.moved == [False] + [True] * 9
  assert progress.learning_rate == pytest.approx(_at(schedule, 0.9))
  with pytest.raises(ValueError, match="minutes"):
    callbacks_lib.BudgetProgress(schedule, 0)


def test_callback_feeds_the_schedule_under_a_mirrored_strategy(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(callbacks_lib, "time", clock)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    schedule = BudgetSchedule(PEAK, warmup_fraction=0.5, decay="cosine")
    model = tfp_realnvp.RealNVP((4, 4, 1), num_scales=1, num_res_blocks=0,
                                num_filters=4)
    model.compile(optimizer=tfp_realnvp.optimizers.Adam(schedule))
  tick = _Tick(clock, schedule)
  x = np.random.default_rng(0).integers(0, 256, (16, 4, 4, 1)) + 0.5
  model.fit(x.astype(np.float32), batch_size=4, epochs=1, verbose=0,
            callbacks=[callbacks_lib.BudgetProgress(schedule, 8 / 60), tick],
            score_statistics=False)
  assert tick.seen == pytest.approx([0.0, 0.125, 0.25, 0.375])
  assert tick.moved == [False, True, True, True]
