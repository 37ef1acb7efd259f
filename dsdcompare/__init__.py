"""dsdcompare: the same seeded prompt through Stable Diffusion models, side by side.

Honest latency, CLIP score with provenance, and what knowledge distillation really buys.
"""

__version__ = "0.1.0"
