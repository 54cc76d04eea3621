"""Test and benchmark harness for exported models; not part of the
modelling API (nothing in `tfp_realnvp` imports it).

A faithful TF Serving stand-in: `capi.CApiSession` loads an export with the
server's own SavedModel loader (TensorFlow's C API, `LoadSavedModel`) in a
subprocess (`capi_runner.py`) that imports no TensorFlow Python, and runs
its signatures; `server` is the server side of the REST / gRPC payloads
built by `tfp_realnvp.serving` (request decoding, REST responses).

```python
from tfp_realnvp.testing import capi
with capi.CApiSession("saved_models/digits/1") as session:
  outputs = session.run("serving_default", {"images": x})
```
"""

from tfp_realnvp.testing import capi
from tfp_realnvp.testing import server
from tfp_realnvp.testing.capi import CApiSession
from tfp_realnvp.testing.capi import ServingError
from tfp_realnvp.testing.capi import signatures

__all__ = ["CApiSession", "ServingError", "capi", "server", "signatures"]
