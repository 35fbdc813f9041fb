"""Models: the Flax UNet with skippable blocks, checkpoint import, openai's ADM, the embedded digits
model, the digits feature network, adapters to ε-prediction and the analytic Gaussian-mixture test bed."""
from ddss.models import adapters, adm, classifier, convert, digits, gmm, params_io, pretrained, unet
from ddss.models.pretrained import DiffusionModel

__all__ = ["DiffusionModel", "adapters", "adm", "classifier", "convert", "digits", "gmm", "params_io", "pretrained", "unet"]
