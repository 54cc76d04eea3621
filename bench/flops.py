"""FLOPs of a traced TensorFlow function, counted from its graph.

TF's graph profiler (`tf.compat.v1.profiler` with `float_operation()`)
sums the registered FLOP counts of every op whose shapes are fully known:
convolutions (forward, and the input/filter back-propagation of a gradient
graph), matmuls and element-wise ops. Trace with a fixed batch size so
every shape is static.
"""


def count_flops(concrete_function):
  """Total floating-point operations of one call of `concrete_function`."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  result = tf.compat.v1.profiler.profile(concrete_function.graph,
                                         options=options)
  return int(result.total_float_ops)
