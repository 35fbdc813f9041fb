"""Train the digits feature network (the loss space); about a minute on 2 CPU cores.

  ddss --config=digits_classifier --workdir=/tmp/digits_classifier

Its output `digits_classifier.safetensors` is the file shipped in ddss/models/assets/.
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "train_classifier"
    config.seed = 0
    config.model = ml_collections.ConfigDict(
        dict(image_size=8, channels=1, widths=(32, 64, 128), feature_dim=64, num_classes=10, dropout=0.2))
    config.epochs = 60
    config.batch_size = 64
    config.learning_rate = 2e-3
    config.weight_decay = 1e-4
    config.max_shift = 1
    return config
