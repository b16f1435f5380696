"""Registry entries from timm's own pretrained configs (``bench registry add --from-timm``).

Everything comes from what timm ships, so it works offline: the pretrained config
(Hub id, license, paper ids, number of classes, eval data config) and the
parameter count of the architecture, built on the meta device so no memory is
allocated and no weights are fetched. Family, pretraining data and the paper when
timm names none are derived by the rules below (a person checks them); ImageNet top-1 is left empty: a
number goes in only after a person checks it against its source.
"""

from __future__ import annotations

import re
from pathlib import Path

import timm
import timm.models
import torch
import yaml
from timm.data import resolve_data_config

import bench.models  # noqa: F401  (registers the project's own architectures with timm)
from bench.errors import RegistryError, UnknownModelError
from bench.registry.schema import RegistryEntry

# (architecture prefix, family), first match wins; otherwise timm's module name.
FAMILY_PREFIXES = (
    ("cifar_resnet", "cifar_resnet"),
    ("gih_mlp", "mlp"),
    ("wide_resnet", "wide_resnet"),
    ("resnext", "resnext"),
    ("seresnext", "resnext"),
    ("resnet", "resnet"),
    ("resmlp", "resmlp"),
    ("mixer", "mlp_mixer"),
    ("convnext", "convnext"),
    ("deit", "deit"),
    ("vit_", "vit"),
    ("swin", "swin"),
    ("efficientnet", "efficientnet"),
    ("tf_efficientnet", "efficientnet"),
    ("mobilenetv3", "mobilenetv3"),
    ("tf_mobilenetv3", "mobilenetv3"),
    ("mobilenetv2", "mobilenetv2"),
    ("regnet", "regnet"),
    ("densenet", "densenet"),
    ("vgg", "vgg"),
)

# The architecture's paper, for pretrained configs that name none.
FAMILY_PAPERS = {
    "resnet": "arXiv:1512.03385",
    "cifar_resnet": "arXiv:1512.03385",
    "wide_resnet": "arXiv:1605.07146",
    "resnext": "arXiv:1611.05431",
    "convnext": "arXiv:2201.03545",
    "vit": "arXiv:2010.11929",
    "deit": "arXiv:2012.12877",
    "swin": "arXiv:2103.14030",
    "efficientnet": "arXiv:1905.11946",
    "mobilenetv3": "arXiv:1905.02244",
    "mobilenetv2": "arXiv:1801.04381",
    "regnet": "arXiv:2003.13678",
    "mlp_mixer": "arXiv:2105.01601",
    "resmlp": "arXiv:2105.03404",
    "densenet": "arXiv:1608.06993",
    "vgg": "arXiv:1409.1556",
}

# (pattern in the tag, pretraining data), first match wins.
PRETRAINING_DATA = (
    (r"^init$", "none"),
    (r"ns_jft", "jft-300m+imagenet-1k"),
    (r"in22k", "imagenet-22k"),
    (r"in21k", "imagenet-21k"),
    (r"in12k", "imagenet-12k"),
    (r"laion", "laion-2b"),
    (r"ig1b", "instagram-1b"),
    (r"yfcc100m", "yfcc-100m"),
    (r"in1k", "imagenet-1k"),
    (r"c10", "cifar-10"),
)


def timm_pretrained_cfg(name: str):
    """timm's pretrained config for ``arch[.tag]``, or None (timm raises for an unknown tag)."""
    try:
        return timm.models.get_pretrained_cfg(name)
    except RuntimeError:
        return None


def entry_from_timm(name: str) -> RegistryEntry:
    """An entry for timm's ``arch.tag`` (or an arch's default tag) from timm's pretrained config."""
    cfg = timm_pretrained_cfg(name)
    if cfg is None:
        raise UnknownModelError(f"timm has no pretrained config '{name}'",
                                "give a name from timm.list_pretrained(), e.g. resnet18.a1_in1k")
    family = _family(cfg.architecture)
    data_config = resolve_data_config(pretrained_cfg=cfg.to_dict())
    return RegistryEntry(
        id=f"{cfg.architecture}.{cfg.tag}",
        timm_name=cfg.architecture,
        tag=cfg.tag,
        hub_id=cfg.hf_hub_id or None,
        license=cfg.license or "unknown",
        paper=_paper(cfg, family),
        family=family,
        pretraining_data=_pretraining_data(cfg.tag),
        num_classes=cfg.num_classes,
        data_config={k: data_config[k] for k in
                     ("input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std")},
        param_count=param_count(f"{cfg.architecture}.{cfg.tag}", cfg.num_classes),
        scope="architecture" if cfg.tag == "init" else "checkpoint",
        notes=cfg.notes or None,
    )


def param_count(name: str, num_classes: int) -> int:
    """Parameters of the architecture, counted on the meta device (no memory, no download)."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    return sum(p.numel() for p in model.parameters())


def write_entry(entry: RegistryEntry, directory: Path, overwrite: bool = False) -> Path:
    """Write ``<id>.yaml``; an existing file is kept unless ``overwrite``."""
    path = Path(directory) / f"{entry.id}.yaml"
    if path.exists() and not overwrite:
        raise RegistryError(f"{path} already exists", "pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(entry), encoding="utf-8")
    return path


def to_yaml(entry: RegistryEntry) -> str:
    return yaml.safe_dump(entry.to_yaml_dict(), sort_keys=False, default_flow_style=None,
                          allow_unicode=True, width=100)


def _family(arch: str) -> str:
    for prefix, family in FAMILY_PREFIXES:
        if arch.startswith(prefix):
            return family
    return timm.models.model_entrypoint(arch).__module__.rsplit(".", 1)[-1]


def _paper(cfg, family: str) -> str:
    if cfg.paper_ids:
        return cfg.paper_ids if isinstance(cfg.paper_ids, str) else ", ".join(cfg.paper_ids)
    return FAMILY_PAPERS.get(family) or cfg.origin_url or "unknown"


def _pretraining_data(tag: str) -> str:
    for pattern, data in PRETRAINING_DATA:
        if re.search(pattern, tag):
            return data
    return "unknown"
