"""How long a bijector result may be reused: one evaluation, never longer.

TFP caches every bijector call: `forward(x)` remembers `y` (and, for the
bijectors of this package, the log-det computed with it) keyed on the input
tensor and on the bijector, and bijectors compare equal by their parameters.
That is what lets `TransformedDistribution.log_prob` call `inverse(x)` and
then `inverse_log_det_jacobian(x)` while the s/t networks run once. But the
parameters of our bijectors are Keras layers whose *weights change*: a cache
entry keyed on (tensor, layer) outlives a training step, and a later call
with the same tensor object would return the answer of the old weights.

Here a cache entry is keyed on the tensor, the bijector *and the evaluation*
it was computed in, and removed when that evaluation closes:

```
  with evaluation():            # one evaluation (a token)
    y = flow.forward(x)         #   computes; entry (x, flow, token)
    ldj = flow.forward_log_det_jacobian(x, 3)   # hit: same evaluation
  flow.forward(x)               # a new evaluation: computed again
```

Every public method of a bijector of this package (`forward`, `inverse`
and both log-dets) and of `RealNVP.distribution()` (`log_prob`, `sample`,
...) opens an evaluation unless one is already open, so one `log_prob` is
one pass through the networks (and, in training mode, exactly one update of
the moving statistics), while two calls always see the current weights,
eagerly and when traced in a `tf.function`. Open an evaluation yourself to
share work across several calls whose weights do not change in between.

Composites that TFP builds around these bijectors (`tfb.Chain`,
`tfb.Invert`, ...) keep TFP's own cache, keyed through our bijectors' hash:
that hash is per evaluation, so their entries do not outlive one either.

Private TFP APIs this module needs (TFP has no public hook for what a cache
entry is keyed on; `tests/test_private_apis.py` fails loudly if one moves):

- `internal.cache_util.BijectorCache` / `BijectorCacheWithGreedyAttrs` and
  their `_lookup`, `_attributes`, `_invoke`: the cache itself; we add the
  evaluation to its key.
- `Bijector._call_forward`, `_call_inverse`, `_call_*_log_det_jacobian`
  and the `_cache` class attribute: the single entry points to open an
  evaluation around, and where a bijector class chooses its cache.
- `bijectors.chain._Chain`, `invert._Invert`, `joint_map._JointMap`,
  `distributions.transformed_distribution._TransformedDistribution` and its
  `_name_and_control_scope`: the public `tfb.Chain`/`tfb.Invert`/
  `tfb.JointMap`/`tfd.TransformedDistribution` construct these classes for
  parts that are not CompositeTensors (ours hold Keras layers); subclassing
  them is the only way to scope their caches and methods.
"""

import contextlib
import itertools
import threading
import weakref

from tensorflow_probability.python.bijectors import bijector as bijector_lib
from tensorflow_probability.python.bijectors import chain as chain_lib
from tensorflow_probability.python.bijectors import invert as invert_lib
from tensorflow_probability.python.bijectors import joint_map as joint_map_lib
from tensorflow_probability.python.distributions import transformed_distribution as td_lib
from tensorflow_probability.python.internal import cache_util

_TOKEN_KWARG = "_tfp_realnvp_evaluation"
_serials = itertools.count()
_local = threading.local()  # MirroredStrategy traces replicas in threads


class _Evaluation:
  """The identity of one evaluation (compared by identity, never reused
  while a cache entry holds it)."""

  __slots__ = ("serial", "memo")

  def __init__(self):
    self.serial = next(_serials)
    self.memo = {}  # see `memo()`

  def __repr__(self):
    return f"<evaluation {self.serial}>"


def current():
  """The open evaluation, or `None`."""
  return getattr(_local, "token", None)


def memo():
  """The open evaluation's scratch dict (a bijector keeps results there
  that it may reuse within the evaluation; emptied when it closes), or a
  `RuntimeError` outside one."""
  token = current()
  if token is None:
    raise RuntimeError("tfp_realnvp: cache.memo() needs an open evaluation")
  return token.memo


@contextlib.contextmanager
def evaluation():
  """Opens an evaluation (or joins the one already open).

  Within it, calls on the same tensor reuse each other's results; results
  are never reused across evaluations. Do not change weights inside one.
  """
  token = current()
  if token is not None:
    yield token
    return
  token = _Evaluation()
  _local.token = token
  try:
    yield token
  finally:
    _local.token = None
    token.memo.clear()
    _drop_entries(token)


# The storages of this module's caches (bound copies share their class
# cache's storage), weakly.
_storages = weakref.WeakValueDictionary()


def _drop_entries(token):
  """Removes the entries of the closed evaluation `token` from every cache.

  They can never be hit again, and an entry for a symbolic tensor never
  expires by itself: its log-det attribute holds the tensor's FuncGraph,
  which holds the weakly keyed input and output, and the key holds the
  bijector with its Keras layers. Left in place they kept every traced
  graph and its model alive for the life of the process. Entries of other
  evaluations (another thread's, a replica's) stay. The TFP bijectors the
  flow is built from (`tfb.Reshape`, `tfb.Split`, `tfb.Transpose`, ...)
  would keep such entries in TFP's class caches the same way: the flow
  uses their `scoped` subclasses.
  """
  for storage in list(_storages.values()):
    for key in list(storage):
      subkey = getattr(key, "subkey", None)
      kwargs = subkey[3] if isinstance(subkey, tuple) and len(subkey) > 3 \
          else None
      if isinstance(kwargs, dict) and kwargs.get(_TOKEN_KWARG) is token:
        key.cancel()  # no weakref callback into the storage later
        storage.pop(key, None)


def _keyed(kwargs):
  token = current()
  if token is None:  # every entry point opens one; this is a bug if hit
    raise RuntimeError("tfp_realnvp: a bijector cache was used outside an "
                       "evaluation")
  return dict(kwargs, **{_TOKEN_KWARG: token})


class _EvaluationKeyed:
  """Cache mixin: the open evaluation is part of every key; its entries are
  dropped when it closes."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    _storages[id(self.storage)] = self.storage

  def _lookup(self, input, forward_name, inverse_name, **kwargs):  # pylint: disable=redefined-builtin
    return super()._lookup(input, forward_name, inverse_name,
                           **_keyed(kwargs))

  def _attributes(self, input, fn_name, **kwargs):  # pylint: disable=redefined-builtin
    return super()._attributes(input, fn_name, **_keyed(kwargs))

  def _invoke(self, input, fn_name, kwargs, attributes):  # pylint: disable=redefined-builtin
    kwargs = {k: v for k, v in kwargs.items() if k != _TOKEN_KWARG}
    return super()._invoke(input, fn_name, kwargs, attributes)


class EvaluationCache(_EvaluationKeyed, cache_util.BijectorCache):
  """`BijectorCache` whose entries live for one evaluation."""


class EvaluationCacheWithGreedyAttrs(
    _EvaluationKeyed, cache_util.BijectorCacheWithGreedyAttrs):
  """`BijectorCacheWithGreedyAttrs` whose entries live for one evaluation."""


class EvaluationScoped:
  """Bijector mixin: public calls open an evaluation; results are reused
  only within it. Put it first in the bases of a `tfb.Bijector` subclass.

  Equality is identity and the hash changes with the evaluation, so TFP
  composites built around such a bijector cannot serve an entry from an
  earlier evaluation either.
  """

  _cache = EvaluationCache()

  def _call_forward(self, *args, **kwargs):
    with evaluation():
      return super()._call_forward(*args, **kwargs)

  def _call_inverse(self, *args, **kwargs):
    with evaluation():
      return super()._call_inverse(*args, **kwargs)

  def _call_forward_log_det_jacobian(self, *args, **kwargs):
    with evaluation():
      return super()._call_forward_log_det_jacobian(*args, **kwargs)

  def _call_inverse_log_det_jacobian(self, *args, **kwargs):
    with evaluation():
      return super()._call_inverse_log_det_jacobian(*args, **kwargs)

  def __hash__(self):
    token = current()
    return hash((id(self), token.serial if token is not None
                 else next(_serials)))

  def __eq__(self, other):
    return self is other

  def __ne__(self, other):
    return self is not other


# TFP's public `Chain`/`Invert`/`JointMap` construct these non-CompositeTensor
# classes whenever a part is not a CompositeTensor, which ours never are
# (they hold Keras layers); subclassing them directly keeps that behaviour.
# pylint: disable=protected-access


class Chain(EvaluationScoped, chain_lib._Chain):
  """`tfb.Chain` whose results live for one evaluation."""


class Invert(EvaluationScoped, invert_lib._Invert):
  """`tfb.Invert` whose results live for one evaluation."""


class JointMap(EvaluationScoped, joint_map_lib._JointMap):
  """`tfb.JointMap` whose results live for one evaluation."""


_scoped_classes = {}


def scoped(cls):
  """The subclass of the TFP bijector class `cls` whose cache entries live
  for one evaluation (`EvaluationScoped` first in its bases), one per class.

  TFP's class caches keep an entry for every symbolic tensor a bijector was
  traced on, with the log-det it computed: the entry holds that tensor's
  FuncGraph, so every graph ever traced through a plain `tfb.Reshape` or
  `tfb.Split` (and the model whose layers it captured) would stay alive
  for the life of the process. Build the flow's TFP parts through this:

  ```python
  flatten = scoped(tfb.Reshape)(event_shape_out=[16], event_shape_in=[4, 4])
  ```

  The subclass is named `Scoped<Name>` (a CompositeTensor class registers
  its TypeSpec under its own name, so TFP's registration stays intact).
  """
  if not (isinstance(cls, type) and issubclass(cls, bijector_lib.Bijector)):
    raise TypeError(f"scoped() takes a tfp.bijectors.Bijector subclass, got "
                    f"{cls!r}")
  if issubclass(cls, EvaluationScoped):
    return cls
  if cls not in _scoped_classes:
    _scoped_classes[cls] = type(
        f"Scoped{cls.__name__}", (EvaluationScoped, cls),
        {"__module__": __name__,
         "__doc__": f"`tfb.{cls.__name__}` whose results live for one "
                    "evaluation (`tfp_realnvp.bijectors.cache.scoped`)."})
  return _scoped_classes[cls]


class TransformedDistribution(td_lib._TransformedDistribution):
  """`tfd.TransformedDistribution` whose every method is one evaluation.

  `log_prob(x)` calls the bijector's `inverse(x)` and then its
  `inverse_log_det_jacobian(x)`; within one evaluation the second is a cache
  hit, so the s/t networks run once (and update moving statistics once in
  training mode). Two `log_prob` calls are two evaluations.
  """

  @contextlib.contextmanager
  def _name_and_control_scope(self, *args, **kwargs):
    with evaluation():
      with super()._name_and_control_scope(*args, **kwargs) as scope:
        yield scope
