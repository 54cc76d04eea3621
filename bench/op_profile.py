"""Where a traced step's time goes by op category, from TF's profiler.

`profile(fn, steps, logdir)` runs `fn` `steps` times between
`tf.profiler.experimental.start` and `stop` (warm it up first) and returns
the TF op events of the written `.xplane.pb` (`read_xspace`); `summarize`
adds them up per `CATEGORIES` entry and per step (`classify`), and `table`
prints the Markdown table with the check against the measured step time.

An event is one TF op executed by the executor, named `scope/op:OpType`
(e.g. `StatefulPartitionedCall/gradient_tape/real_nvp_1/RealNVP/log_prob/
real_nvp_flow/forward/scale_0/forward/coupling_2_s0_checkerboard0/forward/
st_net_2_1/in_conv_1/Conv2DBackpropFilter:_MklNativeConv2DBackpropFilter
WithBias`); gradient ops keep the scope of the op they differentiate.
`classify` takes the innermost scope segment it knows:

- an s/t network's convolution layer (`in_conv`, `blockI_convJ`,
  `out_conv`): its convolution ops (Conv2D and its backprop ops, MatMul,
  fused or not, and the bias add) are **convolutions**, everything else
  there (the norm ‖v‖, g·v/‖v‖, casts, reads of v and g) **weight norm**;
- an s/t network's batch norm (`blockI_bnJ`, `out_bn`, with their fused
  ReLU) and the flow's batch-norm bijector (`batch_norm_I_sS`):
  **batch norm**;
- the rest of an s/t network (ReLU gradients, residual adds, `scale·tanh`)
  and the coupling bijector (`coupling_I_sS_...`: masks, exp, mul, add,
  log-det sums): **coupling arithmetic**;
- `actnorm_I_sS`: **actnorm**; `conv1x1_I_sS` (its matmul included):
  **1×1 conv**; `split_prior_sS` / `split_net_I` (its conv included) and
  the base distribution's log-density (`IndependentNormal`, `Normal`):
  **split prior + base density**; `logit_preprocess`: **logit
  preprocessing**; the optimizer's update ops (`adam`): **Adam**;
- anything else (gradient AddN, the L2 penalty, squeeze transposes,
  factor-out splits, loss and metric): **other**.

An op event's duration includes the intra-op threads' work on it. Ops on
the executor's inter-op threads run at the same time (on 2 cores the summed
op time of a train step exceeded its wall time by ~40% here), so
`summarize` splits the wall clock: while k ops run at once each gets 1/k of
that time. The categories then add up to the time some op was running,
which `table` checks against the step time measured without the profiler;
the summed durations are reported beside them.
"""

import collections
import glob
import os
import re
import time

CONVOLUTIONS = "convolutions"
WEIGHT_NORM = "weight norm"
BATCH_NORM = "batch norm"
COUPLING = "coupling arithmetic"
ACTNORM = "actnorm"
CONV1X1 = "1×1 conv"
SPLIT_PRIOR = "split prior + base density"
LOGIT = "logit preprocessing"
ADAM = "Adam"
OTHER = "other"
CATEGORIES = (CONVOLUTIONS, WEIGHT_NORM, BATCH_NORM, COUPLING, ACTNORM,
              CONV1X1, SPLIT_PRIOR, LOGIT, ADAM, OTHER)

_CONV_LAYER = "conv layer"  # split into CONVOLUTIONS / WEIGHT_NORM by type
# (scope segment, category), tried on each segment from the innermost out.
_SCOPES = [(re.compile(p), c) for p, c in (
    (r"^(in_conv|out_conv|block\d+_conv\d+)(_\d+)?$", _CONV_LAYER),
    (r"^(block\d+_bn\d+|out_bn)(_\d+)?$", BATCH_NORM),
    (r"^(batch_norm_\d+_s\d+|flow_bn_\d+)", BATCH_NORM),
    (r"^actnorm_\d+", ACTNORM),
    (r"^conv1x1_\d+", CONV1X1),
    (r"^(split_prior_s\d+|split_net_\d+)", SPLIT_PRIOR),
    (r"^(IndependentNormal|Normal)(_\d+)?$", SPLIT_PRIOR),
    (r"^logit_preprocess", LOGIT),
    (r"^(st_net_\d+|coupling_\d+_s\d+|affine_coupling)", COUPLING),
    (r"^adam(_\d+)?$", ADAM),
)]
_CONV_TYPES = re.compile(r"Conv2D|Conv3D|MatMul|Einsum|^BiasAdd")
# Ops that only call a function whose own ops are events too.
CONTAINERS = frozenset({"StatefulPartitionedCall", "PartitionedCall", "While",
                        "StatelessWhile", "If", "StatelessIf", "Case",
                        "StatelessCase"})


def classify(name, op_type):
  """The `CATEGORIES` entry of the op `name` (its scope path) of type
  `op_type` (module docstring)."""
  for segment in reversed(name.split("/")):
    for pattern, category in _SCOPES:
      if pattern.match(segment):
        if category == _CONV_LAYER:
          return (CONVOLUTIONS if _CONV_TYPES.search(op_type) else
                  WEIGHT_NORM)
        return category
  return OTHER


def _xplane_pb2():
  try:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=import-outside-toplevel
  except ImportError:  # a TF that ships tsl at the top level
    from tsl.profiler.protobuf import xplane_pb2  # pylint: disable=import-outside-toplevel
  return xplane_pb2


def read_xspace(path):
  """TF op events of an `.xplane.pb`: (name, type, start ps, duration ps)."""
  space = _xplane_pb2().XSpace()
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  events = []
  for plane in space.planes:
    if plane.name != "/host:CPU":
      continue
    metadata = plane.event_metadata
    for line in plane.lines:
      if line.name == "python" or line.name.startswith("tf_data"):
        continue
      for event in line.events:
        meta = metadata[event.metadata_id]
        name, _, op_type = meta.name.rpartition(":")
        if not name or op_type != meta.display_name:
          continue  # not a TF op (executor, thread pool, tf.data events)
        if op_type in CONTAINERS:
          continue
        events.append((name, op_type,
                       line.timestamp_ns * 1000 + event.offset_ps,
                       event.duration_ps))
  return events


def profile(fn, steps, logdir):
  """(op events, wall seconds per call) of `steps` calls of `fn` under TF's
  profiler, written to `logdir` (TensorBoard's profile plugin reads it)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.profiler.experimental.start(logdir)
  try:
    start = time.perf_counter()
    for _ in range(steps):
      fn()
    seconds = (time.perf_counter() - start) / steps
  finally:
    tf.profiler.experimental.stop()
  found = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                           recursive=True), key=os.path.getmtime)
  if not found:
    raise RuntimeError(f"the profiler wrote no .xplane.pb under {logdir}")
  return read_xspace(found[-1]), seconds


def _wall_shares(events):
  """Per event, its share of the wall clock in ps: while k ops run at once
  (on different inter-op threads) each gets 1/k of the time."""
  points = sorted([(e[2], 1, i) for i, e in enumerate(events)] +
                  [(e[2] + e[3], 0, i) for i, e in enumerate(events)])
  shares = [0.0] * len(events)
  active, last = set(), None
  for t, starts, i in points:  # at equal times, ends (0) before starts
    if active and t > last:
      each = (t - last) / len(active)
      for j in active:
        shares[j] += each
    last = t
    if starts:
      active.add(i)
    else:
      active.discard(i)
  return shares


def summarize(events, steps):
  """Per step: {category: (wall ms, summed op ms, ops)} in `CATEGORIES`
  order (wall ms: `_wall_shares`, so the categories add up to the time
  some op was running), the totals, and the biggest 'other' ops."""
  wall, summed, ops = (collections.Counter() for _ in range(3))
  others = collections.Counter()
  for (name, op_type, _, duration), share in zip(events,
                                                  _wall_shares(events)):
    category = classify(name, op_type)
    wall[category] += share / 1e9 / steps
    summed[category] += duration / 1e9 / steps
    ops[category] += 1 / steps
    if category == OTHER:
      others[re.sub(r"_\d+", "_N", name) + ":" + op_type] += (
          share / 1e9 / steps)
  return {"categories": {c: (wall[c], summed[c], ops[c])
                         for c in CATEGORIES},
          "wall_ms": sum(wall.values()), "op_ms": sum(summed.values()),
          "ops": sum(ops.values()), "top_other": others.most_common(5)}


# |step − the categories' total| above this fraction of the step: WARNING.
MISMATCH = 0.25


def table(title, summary, step_ms, profiled_ms):
  """The Markdown table of `summary`, then the check against `step_ms`
  (without the profiler) and `profiled_ms` (the profiled steps' wall time
  per step)."""
  total = summary["wall_ms"]
  print(f"\n{title}\n")
  print("| category | ms per step | share % | summed op ms | ops per step |")
  print("|---|---|---|---|---|")
  for category, (ms, summed, ops) in summary["categories"].items():
    print(f"| {category} | {ms:.2f} | {100 * ms / total:.1f}% | "
          f"{summed:.2f} | {ops:.0f} |")
  print(f"| **all ops** | **{total:.2f}** | 100% | {summary['op_ms']:.2f} | "
        f"{summary['ops']:.0f} |")
  remainder = step_ms - total
  print(f"\nms per step: wall-clock time while the category's ops ran, "
        f"split evenly between ops running at once on the executor's "
        f"threads (summed op ms counts each op's whole duration). Step "
        f"{step_ms:.2f} ms without the profiler, {profiled_ms:.2f} ms under "
        f"it; the categories add up to {total:.2f} ms; unattributed (step "
        f"without the profiler − categories): {remainder:+.2f} ms "
        f"({100 * remainder / step_ms:+.0f}%); under the profiler no op ran "
        f"for {profiled_ms - total:.2f} ms per step (executor, Python, "
        "waiting)")
  if abs(remainder) > MISMATCH * step_ms:
    print(f"WARNING: the categories do not add up to the step within "
          f"{100 * MISMATCH:.0f}% ({total:.2f} vs {step_ms:.2f} ms)")
  if summary["top_other"]:
    print("largest 'other' ops (ms per step): " + "; ".join(
        f"{name} {ms:.2f}" for name, ms in summary["top_other"]))
