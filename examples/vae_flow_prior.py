"""A Real NVP prior inside someone else's model: a convolutional VAE on MNIST.

The VAE (Kingma & Welling, 2014) has a small convolutional encoder
`q(z | x)` (diagonal Gaussian), a deconvolutional Bernoulli decoder
`p(x | z)` on binarized pixels and a latent `z` of shape `(4, 4, 2)`. Its
prior `p(z)` is either the usual `N(0, I)` or a Real NVP over the latent,
built from this package's bijectors and used as an ordinary
`tfd.TransformedDistribution`:

```python
flow = bijectors.MultiScaleRealNVP((4, 4, 2), num_scales=2,
                                   coupling_networks=nets)   # z -> ε (flat)
prior = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros([32])),
                                    tfb.Invert(flow))        # ε -> z
with bijectors.evaluation():      # one pass of the s/t networks per log_prob
  log_pz = prior.log_prob(z)
```

The flow's s/t networks are Keras 3 layers of the VAE, so `fit` trains them
jointly with the encoder and decoder. Both VAEs are trained for the same
number of steps on the same batches, and the test ELBO (nats per image, one
posterior sample per image, the full test split) of each is printed:

    python examples/vae_flow_prior.py --data_dir ../shared/data/tfds --no_download
    python examples/vae_flow_prior.py --dataset digits --steps 200   # offline

`--dataset digits` uses scikit-learn's 8×8 digits resized to 28×28 (no
download). `run()` is the same as a function (the test calls it).
"""

import argparse
import json
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_realnvp
from tfp_realnvp import bijectors
from tfp_realnvp import networks
from tfp_realnvp.bijectors import real_nvp_flow

tfd = tfp.distributions
tfb = tfp.bijectors

IMAGE_SHAPE = (28, 28, 1)
PRIORS = ("gaussian", "realnvp")


class VAE(keras.Model):
  """Convolutional VAE whose `call(x)` is the per-image ELBO (nats).

  Args:
    prior: 'gaussian' (`N(0, I)`) or 'realnvp' (a `MultiScaleRealNVP` over
      the latent, through `tfd.TransformedDistribution`).
    latent_shape: `(h, w, c)` of `z`.
    flow_scales, flow_filters, flow_blocks: of the Real NVP prior.
  """

  def __init__(self, prior="realnvp", latent_shape=(4, 4, 2), flow_scales=2,
               flow_filters=32, flow_blocks=1, **kwargs):
    super().__init__(**kwargs)
    if prior not in PRIORS:
      raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    self.prior_name = prior
    self.latent_shape = tuple(int(d) for d in latent_shape)
    self.latent_size = int(np.prod(self.latent_shape))
    self.flow_scales = int(flow_scales)
    self.encoder = keras.Sequential([
        keras.Input(IMAGE_SHAPE),
        keras.layers.Conv2D(32, 3, strides=2, padding="same",
                            activation="relu"),
        keras.layers.Conv2D(64, 3, strides=2, padding="same",
                            activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(2 * self.latent_size),
    ], name="encoder")
    self.decoder = keras.Sequential([
        keras.Input((self.latent_size,)),
        keras.layers.Dense(7 * 7 * 64, activation="relu"),
        keras.layers.Reshape((7, 7, 64)),
        keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same",
                                     activation="relu"),
        keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same"),
    ], name="decoder")
    self.flow_networks = []
    if prior == "realnvp":
      steps = real_nvp_flow.plan(self.latent_shape, self.flow_scales)
      self.flow_networks = [
          networks.CouplingResNet.for_step(
              step, flow_filters, flow_blocks, use_batch_norm=False,
              name=f"prior_st_net_{step.index}")
          for step in steps if step.kind == real_nvp_flow.COUPLING]

  def prior(self):
    """`p(z)` over `latent_shape`: a `tfd.TransformedDistribution`."""
    base = tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_size]))
    if self.prior_name == "gaussian":
      return tfd.TransformedDistribution(
          base, tfb.Reshape(self.latent_shape, [self.latent_size]))
    flow = bijectors.MultiScaleRealNVP(self.latent_shape, self.flow_scales,
                                       self.flow_networks)
    return tfd.TransformedDistribution(base, tfb.Invert(flow))

  def posterior(self, x):
    """`q(z | x)`, diagonal Gaussian over `latent_shape`."""
    params = self.encoder(x)
    loc, raw_scale = tf.split(params, 2, axis=-1)
    shape = [-1] + list(self.latent_shape)
    return tfd.Independent(
        tfd.Normal(tf.reshape(loc, shape),
                   tf.reshape(tf.nn.softplus(raw_scale) + 1e-4, shape)),
        reinterpreted_batch_ndims=3)

  def call(self, x, training=False):
    """ELBO per image: `log p(x|z) + log p(z) − log q(z|x)`, `z ~ q(z|x)`."""
    q = self.posterior(x)
    z = q.sample()
    logits = self.decoder(tf.reshape(z, [-1, self.latent_size]))
    log_px = tf.reduce_sum(
        -tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits),
        axis=[1, 2, 3])
    with bijectors.evaluation():  # the flow's results live for this pass
      log_pz = self.prior().log_prob(z)
    return log_px + log_pz - q.log_prob(z)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    return -tf.reduce_mean(y_pred)


def binarized(dataset, data_dir=None, download=False, seed=0):
  """`(train, test)` float32 `[N, 28, 28, 1]` arrays of 0/1 pixels
  (pixel > 127), from tfds MNIST or from scikit-learn's digits resized."""
  if dataset == "digits":
    from sklearn import datasets as sk  # pylint: disable=import-outside-toplevel
    images = sk.load_digits().images[..., None].astype(np.float32) / 16.0
    images = tf.image.resize(images, IMAGE_SHAPE[:2]).numpy() * 255.0
    order = np.random.default_rng(seed).permutation(len(images))
    images = images[order]
    n_test = len(images) // 5
    train, test = images[n_test:], images[:n_test]
  elif dataset == "mnist":
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    splits = tfds.load("mnist", split=["train", "test"], data_dir=data_dir,
                       download=download, batch_size=-1, as_supervised=True)
    train, test = (np.asarray(images, np.float32)
                   for images, _ in tfds.as_numpy(splits))
  else:
    raise ValueError(f"dataset must be 'mnist' or 'digits', got {dataset!r}")
  return ((train > 127.5).astype(np.float32),
          (test > 127.5).astype(np.float32))


def run(dataset="mnist", data_dir=None, download=False, steps=3000,
        batch_size=64, learning_rate=1e-3, seed=0, priors=PRIORS,
        verbose=0):
  """Trains one VAE per prior for `steps` steps on the same batches; returns
  `{prior: {"test_elbo": nats per image, "parameters", "seconds"}}`."""
  train, test = binarized(dataset, data_dir, download, seed)
  results = {}
  for prior in priors:
    keras.utils.set_random_seed(seed)
    model = VAE(prior)
    model.compile(optimizer=tfp_realnvp.optimizers.Adam(learning_rate))
    batches = (tf.data.Dataset.from_tensor_slices(train)
               .shuffle(len(train), seed=seed).repeat()
               .batch(batch_size, drop_remainder=True))
    start = time.perf_counter()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=verbose)
    seconds = time.perf_counter() - start
    elbo = model.predict(test, batch_size=500, verbose=0)
    if not np.all(np.isfinite(elbo)):
      raise FloatingPointError(f"{prior}: non-finite test ELBO")
    results[prior] = {"test_elbo": float(np.mean(elbo)),
                      "parameters": int(model.count_params()),
                      "train_seconds": round(seconds, 1),
                      "test_images": int(len(test))}
  return results


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--dataset", default="mnist", choices=("mnist", "digits"))
  p.add_argument("--data_dir", default=None,
                 help="tensorflow-datasets data directory")
  p.add_argument("--no_download", action="store_true")
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--learning_rate", type=float, default=1e-3)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  results = run(args.dataset, args.data_dir, not args.no_download,
                args.steps, args.batch_size, args.learning_rate, args.seed,
                verbose=2)
  print(json.dumps(results, indent=1))
  print(f"{'prior':>10} {'params':>9} {'train s':>8} {'test ELBO (nats)':>17}")
  for prior, row in results.items():
    print(f"{prior:>10} {row['parameters']:>9,} {row['train_seconds']:>8} "
          f"{row['test_elbo']:>17.2f}")


if __name__ == "__main__":
  main()
