"""The config keys of issue 29: the learning rate keyed to the time budget
(warmup_fraction, lr_decay cosine_to_budget), the evaluation subsets
(test_iw_images, score_reference_images), their validation, flags and the
optimizer they build."""

import math

import pytest

from tfp_realnvp.schedules import BudgetSchedule
from tfp_realnvp.schedules import Warmup
from training import builders
from training import configs
from training import flags
from training import train as train_cli


# --- config keys, validation, flags ----------------------------------------------


def _config(**overrides):
  return dict(configs.load("digits"), **overrides)


TIME_KEYED = dict(max_train_minutes=10, warmup_fraction=0.05,
                  lr_decay="cosine_to_budget", lr_decay_rate=0.05)


def test_config_builds_the_time_keyed_schedule():
  config = configs.validate(_config(**TIME_KEYED))
  assert configs.time_keyed_schedule(config)
  lr = builders.learning_rate(config)
  assert isinstance(lr, BudgetSchedule)
  assert lr.get_config() == {"learning_rate": 1e-3, "warmup_fraction": 0.05,
                             "decay": "cosine", "final_fraction": 0.05}
  # Step-keyed warmup in front of a decay to the budget's end.
  config = configs.validate(_config(**dict(TIME_KEYED, warmup_fraction=0.0,
                                           warmup_steps=100)))
  lr = builders.learning_rate(config)
  assert isinstance(lr, Warmup) and isinstance(lr.after, BudgetSchedule)
  assert builders.budget_schedule(lr) is lr.after
  assert builders.budget_schedule(1e-3) is None
  optimizer = builders.build_optimizer(config, lr)
  assert float(optimizer.learning_rate) == pytest.approx(1e-3 / 100)
  # Time-keyed warmup, then the peak.
  config = configs.validate(_config(max_train_minutes=5, warmup_fraction=0.1))
  lr = builders.learning_rate(config)
  assert isinstance(lr, BudgetSchedule) and lr.decay == "none"
  assert not configs.time_keyed_schedule(configs.load("mnist_fast"))


@pytest.mark.parametrize("overrides, message", [
    (dict(TIME_KEYED, max_train_minutes=0), "warmup_fraction > 0 is keyed to "
     "the time budget and needs max_train_minutes > 0"),
    (dict(lr_decay="cosine_to_budget"), "lr_decay cosine_to_budget is keyed "
     "to the time budget and needs max_train_minutes > 0"),
    (dict(TIME_KEYED, warmup_steps=100), "are two warmups"),
    (dict(max_train_minutes=10, warmup_fraction=0.1, lr_decay="cosine",
          decay_steps=100), "cannot precede the step-keyed lr_decay"),
    (dict(TIME_KEYED, decay_steps=3500), "decay_steps must be 0 with lr_decay "
     "cosine_to_budget"),
    (dict(TIME_KEYED, warmup_fraction=1.0), "warmup_fraction must be a finite "
     "number in [0, 1)"),
    (dict(test_iw_images=-1), "test_iw_images must be an integer >= 0"),
    (dict(score_reference_images=1.5), "score_reference_images must be an "
     "integer >= 0"),
])
def test_invalid_schedule_and_subset_keys(overrides, message):
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(
      ")", r"\)").replace("(", r"\(")):
    configs.validate(_config(**overrides))


def test_flags_and_evaluation_subsets():
  args = train_cli.parser().parse_args(
      ["--max_train_minutes", "10", "--warmup_fraction", "0.05",
       "--lr_decay", "cosine_to_budget", "--test_iw_images", "500",
       "--score_reference_images", "0"])
  config = configs.validate(flags.config_from_args(args))
  assert config["warmup_fraction"] == 0.05
  assert configs.evaluation_subset(config, "test_iw_images") == 500
  assert configs.evaluation_subset(config, "score_reference_images") == 0
  # Unset: fixed-size subsets with a budget, everything without one.
  budget = _config(max_train_minutes=10)
  assert configs.evaluation_subset(budget, "test_iw_images") == 500
  assert configs.evaluation_subset(budget, "score_reference_images") == 2048
  assert configs.evaluation_subset(_config(), "test_iw_images") == 0
  assert configs.evaluation_subset(_config(), "score_reference_images") == 0
  for key in ("test_iw_images", "score_reference_images"):
    assert key in configs.MAY_CHANGE_ON_RESUME
  assert math.isclose(configs.FIELDS["warmup_fraction"][0], 0.0)
