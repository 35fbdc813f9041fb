"""Models: adapters to ε-prediction and the analytic Gaussian-mixture test bed."""
from ddss.models import adapters, gmm

__all__ = ["adapters", "gmm"]
