"""The tfp-realnvp training application (tf.data + Keras fit + CLIs)."""

import os

# The CLIs are quiet about TensorFlow's start-up logging unless asked.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
