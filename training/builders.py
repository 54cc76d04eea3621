"""What a config builds: the `RealNVP` model, its optimizer (learning rate
schedule, gradient clipping), the `compile(jit_compile=...)` setting and the
tf.data pipelines. Library calls only; `training/train.py` runs them."""

import keras

import tfp_realnvp
from training import configs
from training import data


def build_model(config, image_shape, num_classes):
  """The `RealNVP` a config describes (library call only)."""
  return tfp_realnvp.RealNVP(
      image_shape=image_shape, num_scales=config["num_scales"],
      num_res_blocks=config["num_res_blocks"],
      num_filters=config["num_filters"], coupling=config["coupling"],
      use_batch_norm=config["use_batch_norm"],
      num_classes=num_classes if config["conditional"] else None,
      alpha=config["alpha"], bn_momentum=config["bn_momentum"],
      log_scale_init=config["log_scale_init"], l2_reg=config["l2_reg"],
      synchronized_batch_norm=config["synchronized_batch_norm"],
      mixed_precision=(None if config["mixed_precision"] == "none"
                       else config["mixed_precision"]),
      checkerboard=config["checkerboard"],
      dequantizer=(None if config["dequantizer"] == "none"
                   else config["dequantizer"]),
      ema_decay=config["ema_decay"] or None, bn_lag=config["bn_lag"],
      prior=config["prior"], made_hidden_units=config["made_hidden_units"],
      actnorm=config["actnorm"], permutation=config["permutation"],
      spline_bins=config["spline_bins"], spline_bound=config["spline_bound"])


def learning_rate(config):
  """The config's learning rate: a number, or a Keras schedule (decay, then
  `tfp_realnvp.schedules.Warmup` in front when `warmup_steps` > 0). A
  schedule keyed to the time budget (`configs.time_keyed_schedule`) is a
  `tfp_realnvp.schedules.BudgetSchedule` (`budget_schedule` finds it; the
  trainer feeds its progress)."""
  lr = config["learning_rate"]
  decay = config["lr_decay"]
  if configs.time_keyed_schedule(config):
    lr = tfp_realnvp.schedules.BudgetSchedule(
        lr, warmup_fraction=config["warmup_fraction"],
        decay="cosine" if decay == "cosine_to_budget" else "none",
        final_fraction=config["lr_decay_rate"])
  elif decay == "cosine":
    lr = keras.optimizers.schedules.CosineDecay(
        lr, config["decay_steps"], alpha=config["lr_decay_rate"])
  elif decay == "exponential":
    lr = keras.optimizers.schedules.ExponentialDecay(
        lr, config["decay_steps"], config["lr_decay_rate"])
  elif decay != "none":
    raise ValueError(f"lr_decay must be one of {configs.LR_DECAYS}, got "
                     f"{decay!r}")
  if config["warmup_steps"]:
    lr = tfp_realnvp.schedules.Warmup(lr, config["warmup_steps"])
  return lr


def budget_schedule(lr):
  """The `BudgetSchedule` of a `learning_rate(config)` value (also behind a
  `Warmup`), or None."""
  while isinstance(lr, tfp_realnvp.schedules.Warmup):
    lr = lr.after
  return lr if isinstance(lr, tfp_realnvp.schedules.BudgetSchedule) else None


def build_optimizer(config, lr=None):
  """The config's optimizer (fused Adam or Adamax, its schedule, Keras' global
  gradient-norm clipping); `lr`: the `learning_rate(config)` to use (built
  here when None)."""
  classes = tfp_realnvp.optimizers.OPTIMIZERS
  if config["optimizer"] not in classes:
    raise ValueError(f"optimizer must be one of {sorted(classes)}, got "
                     f"{config['optimizer']!r}")
  return classes[config["optimizer"]](
      learning_rate(config) if lr is None else lr,
      global_clipnorm=config["clipnorm"] or None)


def jit_compile_setting(text):
  """The `compile(jit_compile=...)` value of the `jit_compile` config."""
  values = {"auto": "auto", "true": True, "false": False}
  if str(text).lower() not in values:
    raise ValueError(f"jit_compile must be auto, true or false, got {text!r}")
  return values[str(text).lower()]


def load_datasets(config, data_dir=None, manual_dir=None, download=True,
                  multi_worker=False, noise_draws=None):
  """The config's pipelines. Under several workers Keras auto-shards them
  (tf.data AUTO policy: by file when the source has at least one file per
  worker, else by element); element sharding needs the same element order
  on every worker, so the order is then made deterministic (the shuffle is
  seeded identically everywhere)."""
  return data.load(
      config["dataset"], batch_size=config["batch_size"], seed=config["seed"],
      conditional=config["conditional"], data_dir=data_dir,
      manual_dir=manual_dir, download=download,
      deterministic=config["deterministic"] or multi_worker,
      image_size=config["image_size"],
      shuffle_buffer=config["shuffle_buffer"],
      dequantize=config["dequantizer"] == "none", noise_draws=noise_draws)
