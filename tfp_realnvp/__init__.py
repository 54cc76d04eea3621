"""tfp-realnvp: Real NVP (Dinh et al., ICLR 2017) as TFP bijectors + Keras 3.

```python
import tfp_realnvp
model = tfp_realnvp.RealNVP(image_shape=(28, 28, 1), num_scales=2)
dist = model.distribution()          # tfd.TransformedDistribution
trained = tfp_realnvp.pretrained("mnist")   # shipped weights, offline
```
"""

from tfp_realnvp import bijectors
from tfp_realnvp import deployment
from tfp_realnvp import export
from tfp_realnvp import networks
from tfp_realnvp import optimizers
from tfp_realnvp import schedules
from tfp_realnvp import scores
from tfp_realnvp import serving
from tfp_realnvp._pretrained import pretrained
from tfp_realnvp._pretrained import pretrained_file
from tfp_realnvp._pretrained import pretrained_info
from tfp_realnvp._pretrained import pretrained_names
from tfp_realnvp.model import RealNVP

__version__ = "0.1.0"

__all__ = ["RealNVP", "bijectors", "deployment", "export", "networks",
           "optimizers", "pretrained", "pretrained_file", "pretrained_info",
           "pretrained_names", "schedules", "scores", "serving",
           "__version__"]
