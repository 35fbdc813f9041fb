"""Learning and searching samplers: DDSS (gradient descent through sample quality) and AutoDiffusion
(evolutionary search over timesteps and skipped blocks)."""
from ddss.search import differentiable, evolution

__all__ = ["differentiable", "evolution"]
