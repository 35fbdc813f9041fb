"""ddss: learned and searched few-step samplers for pretrained diffusion models, in JAX."""
from ddss import data, models, samplers, schedules
from ddss.export import load_sampler, save_sampler
from ddss.models import adapters

__version__ = "0.1.0"
__all__ = ["adapters", "data", "load_sampler", "models", "samplers", "save_sampler", "schedules"]
