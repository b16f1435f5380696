"""Probe sets: the images every checkpoint-level measure is computed on.

``load_probe_set(spec, data_config, limit)`` reads one of

- ``default``: ``photos-v1``, 37 real photographs (13 CC0 / public-domain
  photographs shipped in scikit-image's wheel, each whole and in fixed crops;
  sources, licenses and crop boxes in ``default_manifest.json``);
- ``folder:PATH``: a flat folder of images, or one subfolder per class
  (labels and class names from the subfolders);
- ``hf:DATASET[:SPLIT]``: a ``datasets`` dataset by Hub id or local path, its
  ``Image`` column and, when there is one, its ``ClassLabel`` column;

and preprocesses every image with the model's eval transform minus the
normalization (:mod:`bench.probes.transform`). Greyscale, palette and alpha
images are converted to RGB (alpha dropped, as timm's datasets do).

``limit`` keeps the first N images; for labelled sets it takes them round-robin
over the classes (one per class in class order, then the next of each, ...) so a
small limit stays balanced, and keeps them in the set's order. Both rules are
deterministic.

The ``hash`` identifies the images independently of any model: sha256 over, in
order, each image's encoded bytes (as stored), its crop box and its label.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from bench.errors import ProbeSetError
from bench.probes.sources import Catalog, default_catalog, folder_catalog, hf_catalog
from bench.probes.transform import eval_transform
from bench.registry.schema import DataConfig

__all__ = ["ProbeSet", "load_probe_set", "select_indices"]

SPEC_HINT = "use 'default', 'folder:PATH' or 'hf:DATASET[:SPLIT]'"


@dataclass
class ProbeSet:
    """Preprocessed probe images in [0, 1], with their identity."""

    id: str
    hash: str
    images: torch.Tensor                  # float32 (N, 3, H, W), CPU
    labels: torch.Tensor | None = None    # int64 (N,)
    class_names: list[str] | None = None
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]


def load_probe_set(spec: str = "default",
                   data_config: DataConfig | Mapping[str, Any] | None = None,
                   limit: int | None = None) -> ProbeSet:
    """Read and preprocess a probe set for a model with ``data_config`` (timm defaults if None)."""
    if limit is not None and limit < 1:
        raise ProbeSetError(f"probe limit must be at least 1, got {limit}", "ask for at least one image")
    catalog = _catalog(spec)
    chosen = select_indices(len(catalog.names), catalog.labels, limit)
    transform = eval_transform(data_config)
    digest = hashlib.sha256()
    images = []
    for i in chosen:
        data = catalog.read(i)
        crop = catalog.crops[i] if catalog.crops else None
        label = catalog.labels[i] if catalog.labels is not None else None
        digest.update(hashlib.sha256(data).digest())
        digest.update(repr((crop, label)).encode())
        image = _decode(data, catalog.names[i])
        images.append(transform(image.crop(crop) if crop else image))
    labels = (torch.tensor([catalog.labels[i] for i in chosen], dtype=torch.long)
              if catalog.labels is not None else None)
    suffix = f"[n={len(chosen)}]" if len(chosen) < len(catalog.names) else ""
    return ProbeSet(
        id=catalog.id + suffix,
        hash=digest.hexdigest(),
        images=torch.stack(images).float().contiguous(),
        labels=labels,
        class_names=catalog.class_names,
        names=[catalog.names[i] for i in chosen],
    )


def _catalog(spec: str) -> Catalog:
    kind, _, rest = spec.partition(":")
    if spec == "default":
        return default_catalog()
    if kind == "folder" and rest:
        return folder_catalog(rest)
    if kind == "hf" and rest:
        return hf_catalog(rest)
    raise ProbeSetError(f"unknown probe set '{spec}'", SPEC_HINT)


def select_indices(n: int, labels: list[int] | None, limit: int | None) -> list[int]:
    """The images ``limit`` keeps: the first ``limit``, or round-robin over classes, in set order."""
    if limit is None or limit >= n:
        return list(range(n))
    if labels is None:
        return list(range(limit))
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit:
        chosen += [q[depth] for q in queues if depth < len(q)][: limit - len(chosen)]
        depth += 1
    return sorted(chosen)


def _decode(data: bytes, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # PIL raises several types for truncated or foreign files
        raise ProbeSetError(f"cannot read image {name}: {exc}",
                            "remove or replace the file") from exc
    return image.convert("RGB")
