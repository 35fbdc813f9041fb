"""Sample-quality metrics: the FID Inception port, feature extractors, FID, KID, IS, precision/recall, feature statistics."""
from ddss.metrics import features, fid, inception, inception_score, kid, precision_recall, stats

__all__ = ["features", "fid", "inception", "inception_score", "kid", "precision_recall", "stats"]
