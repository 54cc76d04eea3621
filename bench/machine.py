"""The machine and the clock: timed repeats, peak RSS, the matmul peak and
the machine line every bench table starts from."""

import os
import time

from bench import cpu_model, isa


def timed(fn, repeats, steps):
  """Seconds per call of `fn`: the median of `repeats` repeats of `steps`
  calls, after one warm-up call."""
  fn()  # warm-up (tracing)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      fn()
    times.append((time.perf_counter() - start) / steps)
  times.sort()
  return times[len(times) // 2]


def peak_rss_mb():
  """This process's peak resident set size in MB."""
  import resource  # pylint: disable=import-outside-toplevel
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_gflops(n=4096, repeats=5, dtype="float32"):
  """GEMM GFLOP/s: the practical compute peak of this machine (float32; the
  bfloat16 one is the peak for mixed-precision rows)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  a = tf.cast(tf.random.normal([n, n]), dtype)
  b = tf.cast(tf.random.normal([n, n]), dtype)
  mm = tf.function(lambda: tf.matmul(a, b))
  mm().numpy()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    mm().numpy()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best / 1e9


def describe(peaks=True):
  """CPU, its ISA flags (`bench.isa.FLAGS`), cores, the libraries'
  versions, date, thread pools and (`peaks`) the float32 and bfloat16
  matmul peaks of this process."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tensorflow_probability as tfp  # pylint: disable=import-outside-toplevel
  machine = {"cpu": cpu_model(), "cores": os.cpu_count(),
             "cpu_flags": isa.flag_summary(isa.cpu_flags()),
             "tensorflow": tf.__version__,
             "tensorflow_probability": tfp.__version__,
             "versions": isa.versions(),
             "date": time.strftime("%Y-%m-%d"),
             "intra_op_threads":
                 tf.config.threading.get_intra_op_parallelism_threads(),
             "inter_op_threads":
                 tf.config.threading.get_inter_op_parallelism_threads()}
  if peaks:
    machine.update(matmul_gflops=matmul_gflops(),
                   matmul_gflops_bfloat16=matmul_gflops(dtype="bfloat16"))
  return machine
