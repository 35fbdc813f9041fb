"""Sample-quality metrics: Fréchet distance of feature statistics, KID."""
from ddss.metrics import fid, kid

__all__ = ["fid", "kid"]
