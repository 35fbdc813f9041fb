"""Sample-quality metrics: the FID Inception port, feature extractors, FID, KID, IS, feature statistics."""
from ddss.metrics import features, fid, inception, inception_score, kid, stats

__all__ = ["features", "fid", "inception", "inception_score", "kid", "stats"]
