"""Real CIFAR-10 images and the trained ResNet-20 from the offline assets, for the geometry tests."""

from __future__ import annotations

import tarfile
from pathlib import Path

CIFAR_TAR = "images/cifar10_test_jpeg_q75/cifar10_test_jpeg_q75.tar.gz"
RESNET20 = "weights/akamaster_resnet_cifar10/resnet20-12fca82f.th"
RESNET20_ID = "cifar_resnet20.akamaster_c10"


def cifar10_folder(assets: Path, dest: Path, per_class: int) -> Path:
    """Extract the first ``per_class`` test images of each class into ``dest/<class>/``."""
    taken: dict[str, int] = {}
    with tarfile.open(assets / CIFAR_TAR) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and taken.get(parts[1], 0) < per_class:
                taken[parts[1]] = taken.get(parts[1], 0) + 1
                (dest / parts[1]).mkdir(parents=True, exist_ok=True)
                (dest / parts[1] / parts[2]).write_bytes(tar.extractfile(member).read())
    return dest


def resnet20(assets: Path, trained: bool):
    """The scored CIFAR ResNet-20: the trained checkpoint, or the same architecture at init (seed 0)."""
    import bench.models  # noqa: F401  registers the CIFAR ResNets with timm
    from bench.models.loading import load_model, scored_model
    from bench.registry import resolve

    entry = resolve(RESNET20_ID)
    weights = str(assets / RESNET20) if trained else "random"
    return scored_model(entry, load_model(entry, weights, seed=0))


def cifar10_probe(assets: Path, dest: Path, per_class: int):
    """The extracted images as a labelled folder probe set, preprocessed for ResNet-20."""
    from bench.probes import load_probe_set
    from bench.registry import resolve

    folder = cifar10_folder(assets, dest, per_class)
    return load_probe_set(f"folder:{folder}", resolve(RESNET20_ID).data_config)
