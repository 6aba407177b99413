"""Flax classifiers mapping NHWC pixels in [0, 1] to (logits, penultimate features).

Use `create_model(cfg, num_classes, mean, std)`; the architecture classes are exported
for direct construction in tests and notebooks.
"""

from jaxat.models.preact_resnet import PreActResNet18
from jaxat.models.registry import (MODEL_NAMES, NORMALIZATION_NAMES, create_model,
                                   validate_model_config)
from jaxat.models.resnet import ResNet18
from jaxat.models.small_cnn import SmallCNN
from jaxat.models.wide_resnet import WideResNet

__all__ = [
    'MODEL_NAMES', 'NORMALIZATION_NAMES', 'PreActResNet18', 'ResNet18', 'SmallCNN',
    'WideResNet', 'create_model', 'validate_model_config',
]
