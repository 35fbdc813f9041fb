"""Learning and searching samplers: DDSS (gradient descent through sample quality)."""
from ddss.search import ddss

__all__ = ["ddss"]
