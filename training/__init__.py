"""The tfp-realnvp training application (tf.data + Keras fit + CLI)."""
