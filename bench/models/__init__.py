"""Models: the scored function, loading weights, and the project's own architectures.

Importing this package registers the architectures that timm lacks with timm's
``register_model`` (``cifar_resnet20/32/44/56``, ``gih_mlp``), so that
``timm.create_model`` and the registry treat them like any timm model.
"""

from bench.models import cifar_resnet, reference_mlp  # noqa: F401  (registration)
