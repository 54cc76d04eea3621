"""The bench's shared constants: workloads, contestants, presets, batch.

Every bench module takes them from here; this module imports nothing from
bench, so no bench module needs the entry point (`bench.__main__`).
"""

# Image shape (H, W, C) per workload.
WORKLOADS = {"mnist": (28, 28, 1), "cifar": (32, 32, 3)}
# The contestants (`--impls`): ours, normflows Glow and Real NVP, TFP Glow.
IMPLS = ("ours", "nf_glow", "nf_realnvp", "tfp_glow")
# Parameter count per preset (None: the paper's CIFAR-10 model, ours only).
PRESETS = {"small": 0.5e6, "medium": 3e6, "paper": None}
BATCH = 64
