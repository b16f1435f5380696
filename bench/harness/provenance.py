"""The provenance columns of SPEC section 1 that every measurement row carries."""

from __future__ import annotations

from typing import Any

import timm
import torch

from bench import __version__


def software_versions() -> dict[str, str]:
    return {"torch_version": torch.__version__, "timm_version": timm.__version__,
            "bench_version": __version__}


def _run_columns(run_id: str, seed: int, device_name: str, allow_tf32: bool) -> dict[str, Any]:
    """The columns that do not depend on the scope: run, seed, device, precision, versions."""
    return {
        "run_id": run_id,
        "seed": seed,
        "device": device_name,
        "dtype": "float32",
        "allow_tf32": allow_tf32,
        **software_versions(),
    }


def checkpoint_provenance(*, run_id: str, entry, loaded, probe_set, seed: int, device_name: str,
                          allow_tf32: bool) -> dict[str, Any]:
    """Columns for rows about one checkpoint (model identity, weights, probe set, device)."""
    return {
        "scope": "checkpoint",
        "model_id": entry.id,
        "timm_name": entry.timm_name,
        "tag": entry.tag,
        "weights": loaded.weights,
        "weights_ref": loaded.weights_ref,
        "weights_hash": loaded.weights_hash,
        "probe_set_id": probe_set.id if probe_set is not None else None,
        "probe_set_hash": probe_set.hash if probe_set is not None else None,
        **_run_columns(run_id, seed, device_name, allow_tf32),
    }


ARCHITECTURE_INIT = "timm-default-init"


def architecture_provenance(*, run_id: str, entry, seed: int, device_name: str,
                            allow_tf32: bool) -> dict[str, Any]:
    """Columns for architecture-level rows: keyed by the timm name, not the checkpoint.

    One result serves every checkpoint of the architecture (SPEC sections 4 and 5),
    so the tag is left empty and the weights are the architecture's initialization.
    """
    return {
        "scope": "architecture",
        "model_id": entry.timm_name,
        "timm_name": entry.timm_name,
        "tag": None,
        "weights": "init",
        "weights_ref": ARCHITECTURE_INIT,
        "weights_hash": f"{ARCHITECTURE_INIT}:timm-{timm.__version__}",
        "probe_set_id": None,
        "probe_set_hash": None,
        **_run_columns(run_id, seed, device_name, allow_tf32),
    }
