"""Building a registry entry's network with its weights, and wrapping it for scoring.

Three sources of weights (``--weights``):

- ``pretrained``: the entry's Hugging Face Hub checkpoint, through timm's own
  loader. The Hub is asked once with a short timeout; when it cannot be reached
  (or ``HF_HUB_OFFLINE`` is set) a checkpoint already in the local Hub cache is
  used, and without one the call fails at once with a :class:`WeightsError` that
  names the offline ways on, instead of timm's retries.
- ``random``: timm's initialization under a seed, drawn from a forked RNG so the
  caller's global random state is left alone.
- a path: a ``.safetensors`` file, or a torch checkpoint read with
  ``weights_only=True`` (no pickled code runs). ``{'state_dict': ...}`` and
  ``{'model': ...}`` wrappers and a DataParallel ``module.`` prefix are removed;
  the rest must match the architecture exactly (strict loading), because a
  half-loaded network would be scored as if it were the checkpoint.

Every loaded model carries a ``weights_hash`` that identifies the weights in the
store: the sha256 of the weights file (also for Hub files, whose cache blobs are
named by it), or ``random-seed{seed}``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

import bench.models  # noqa: F401  (registers the project's own architectures)
from bench.errors import WeightsError, first_line
from bench.hub import HUB_FILENAMES, OFFLINE_HINT, hub_offline
from bench.models.scored import ScoredModel, prepare_for_measurement
from bench.registry.schema import RegistryEntry

WeightsKind = Literal["pretrained", "random", "file"]

HUB_TIMEOUT_S = 2.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class LoadedModel:
    """A network with its weights and where they came from."""

    net: nn.Module
    weights: WeightsKind
    weights_ref: str   # hub id@revision, file name, or "timm-init"
    weights_hash: str  # sha256 of the weights file, or "random-seed{seed}"


def load_model(entry: RegistryEntry, weights: str = "pretrained", seed: int = 0) -> LoadedModel:
    """Build ``entry``'s network with ``weights``: "pretrained", "random" or a file path."""
    if weights == "pretrained":
        return _load_pretrained(entry, seed)
    if weights == "random":
        return LoadedModel(build_network(entry, seed), "random", "timm-init", f"random-seed{seed}")
    return _load_file(entry, Path(weights), seed)


def scored_model(entry: RegistryEntry, loaded: LoadedModel) -> ScoredModel:
    """The scored function of SPEC section 1, in the measurement state."""
    net = ScoredModel(loaded.net, entry.data_config.mean, entry.data_config.std)
    return prepare_for_measurement(net)


def build_network(entry: RegistryEntry, seed: int = 0, **kwargs) -> nn.Module:
    """``entry``'s architecture with timm's initialization, seeded, global RNG untouched."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(entry.id, pretrained=False, num_classes=entry.num_classes,
                                 **kwargs)


# --- from a file -------------------------------------------------------------------

def _load_file(entry: RegistryEntry, path: Path, seed: int) -> LoadedModel:
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} not found",
            "give the path of a .safetensors or torch checkpoint, "
            "or use --weights pretrained / --weights random")
    state = read_state_dict(path)
    net = build_network(entry, seed)
    load_strict(net, state, f"{path.name} does not fit {entry.id}")
    return LoadedModel(net, "file", path.name, file_sha256(path))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped and without a ``module.`` prefix."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            checkpoint = load_file(str(path), device="cpu")
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # every reader fails differently on a corrupt file
        raise WeightsError(
            f"cannot read weights file {path.name}: {first_line(exc)}",
            "give an uncorrupted .safetensors file or a torch checkpoint of tensors "
            "(pickled code is never executed)") from exc
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise WeightsError(f"weights file {path.name} holds no state dict of tensors",
                           "save the checkpoint with torch.save(model.state_dict(), PATH)")
    state = dict(checkpoint)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_strict(net: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load every tensor or fail with counts and an example of what does not fit.

    Missing and unexpected keys are PyTorch's own verdict (it tolerates, e.g., a
    BatchNorm checkpoint without ``num_batches_tracked``); shapes are compared first
    because PyTorch raises on them before reporting anything else.
    """
    expected = net.state_dict()
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    fitting = {k: v for k, v in state.items() if k not in mismatched}
    missing, unexpected = net.load_state_dict(fitting, strict=False)
    missing = [k for k in missing if k not in mismatched]
    if missing or unexpected or mismatched:
        examples = [f"missing '{missing[0]}'" if missing else "",
                    f"unexpected '{unexpected[0]}'" if unexpected else "",
                    (f"'{mismatched[0]}' is {tuple(state[mismatched[0]].shape)} instead of "
                     f"{tuple(expected[mismatched[0]].shape)}") if mismatched else ""]
        raise WeightsError(
            f"{what}: {len(missing)} keys missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} shape mismatches (e.g. {'; '.join(e for e in examples if e)})",
            "give a checkpoint of this architecture and number of classes, "
            "or pick the registry entry it belongs to")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- from the Hub ------------------------------------------------------------------

def _load_pretrained(entry: RegistryEntry, seed: int) -> LoadedModel:
    import timm

    if entry.hub_id is None:
        raise WeightsError(f"{entry.id} has no weights on the Hugging Face Hub",
                           "use --weights PATH with its checkpoint file, or --weights random")
    path = hub_weights_file(entry)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # layers that a checkpoint does not cover, if any
        net = timm.create_model(entry.id, pretrained=True, num_classes=entry.num_classes,
                                pretrained_cfg_overlay=dict(file=str(path)))
    revision = path.parent.name
    blob = path.resolve().name  # the Hub cache names large-file blobs by their sha256
    weights_hash = blob if _SHA256.match(blob) else file_sha256(path)
    return LoadedModel(net, "pretrained", f"{entry.hub_id}@{revision}", weights_hash)


def hub_weights_file(entry: RegistryEntry) -> Path:
    """The local path of the entry's Hub weights, downloading them when the Hub is reachable."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    names = _hub_filenames(entry)
    revision = None
    if not hub_offline():
        try:
            info = HfApi().model_info(entry.hub_id, timeout=HUB_TIMEOUT_S)
        except RepositoryNotFoundError as exc:
            raise WeightsError(f"{entry.hub_id} (hub_id of {entry.id}) is not on the Hub",
                               f"fix the registry entry; meanwhile {OFFLINE_HINT}") from exc
        except Exception:  # unreachable or timed out: any transport error means "offline"
            info = None
        if info is not None:
            revision = info.sha
            present = {s.rfilename for s in info.siblings or ()}
            names = [n for n in names if n in present] or names
    for name in names:
        try:
            return Path(hf_hub_download(entry.hub_id, name, revision=revision,
                                        local_files_only=revision is None))
        except EntryNotFoundError:  # not in the repo, or not cached: try the next name
            continue
        except Exception as exc:
            raise WeightsError(f"downloading {name} of {entry.hub_id} failed: {first_line(exc)}",
                               OFFLINE_HINT) from exc
    if revision is None:
        raise WeightsError(f"cannot get pretrained weights for {entry.id}: the Hugging Face Hub "
                           "is unreachable and they are not in the local cache", OFFLINE_HINT)
    raise WeightsError(f"{entry.hub_id} has none of the weight files {', '.join(names)}",
                       f"fix hub_id of {entry.id}; meanwhile {OFFLINE_HINT}")


def _hub_filenames(entry: RegistryEntry) -> list[str]:
    from bench.registry.from_timm import timm_pretrained_cfg

    cfg = timm_pretrained_cfg(entry.id)
    own = cfg.hf_hub_filename if cfg is not None and cfg.hf_hub_id == entry.hub_id else None
    return [own] if own else list(HUB_FILENAMES)
