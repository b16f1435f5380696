"""Can pretrained weights be had from the Hugging Face Hub? Answered before torch loads.

``bench score --model resnet18`` on a machine without the Hub should fail at once,
not after importing torch and timm (seconds) and not after the Hub client's retries
(tens of seconds). This module needs only the registry and ``huggingface_hub``, so
the CLI can ask it first. The full loader (:mod:`bench.models.loading`) still makes
the final decision and handles an unreachable Hub that is not flagged offline.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from bench.errors import WeightsError

HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
OFFLINE_HINT = ("use --weights random for timm's seeded initialization, or --weights PATH "
                "for a local .safetensors or torch checkpoint")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or huggingface_hub's own setting) forbids Hub calls."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return flag in {"1", "true", "yes", "on"} or constants.HF_HUB_OFFLINE


def weights_cached(hub_id: str) -> bool:
    """True when some weights file of ``hub_id`` is in the local Hub cache."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(hub_id, name), str) for name in HUB_FILENAMES)


def require_cached_when_offline(model_ids: Iterable[str], hub_ids: Iterable[str | None]) -> None:
    """Fail fast when the Hub is flagged offline and none of ``hub_ids`` is cached."""
    hub_ids = [h for h in hub_ids if h]
    if hub_ids and hub_offline() and not any(weights_cached(h) for h in hub_ids):
        raise WeightsError(
            f"cannot get pretrained weights for {', '.join(model_ids)}: the Hugging Face Hub is "
            "unreachable (HF_HUB_OFFLINE is set) and they are not in the local cache",
            OFFLINE_HINT)
