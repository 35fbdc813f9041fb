"""ddss: learned and searched few-step samplers for pretrained diffusion models, in JAX."""
from ddss import data, models, samplers, schedules
from ddss.models import adapters

__version__ = "0.1.0"
__all__ = ["adapters", "data", "models", "samplers", "schedules"]
