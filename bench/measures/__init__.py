"""The geometry measures of SPEC.md, each a pure function returning :class:`Measurement`.

Public API::

    from bench.measures import geometric_complexity      # SPEC 2, module gc
    from bench.measures import relative_stability        # SPEC 3, module rf
    from bench.measures import average_geometry          # SPEC 4, module ag
    from bench.measures import plane_invariance          # SPEC 5, module plane
    from bench.measures import manifold_capacity         # SPEC 6, module mftma
    from bench.measures import volume_element            # SPEC 7, module volume

Modules are imported lazily, so that ``import bench.measures`` stays cheap and one
measure's optional machinery never slows another down. ``measure_specs()`` lists the
:class:`MeasureSpec` of every measure that ``bench score`` can run.
"""

from __future__ import annotations

import importlib
from typing import Any

from bench.measures._types import Measurement, MeasureSpec, ScoreContext

# public function name -> module that defines it
_FUNCTIONS = {
    "geometric_complexity": "gc",
    "relative_stability": "rf",
    "average_geometry": "ag",
    "plane_invariance": "plane",
    "manifold_capacity": "mftma",
    "volume_element": "volume",
}

# modules that define measures for `bench score`, each exposing SPECS: list[MeasureSpec]
_SPEC_MODULES = ("gc", "rf", "ag", "plane", "mftma", "volume")

# measures of a bare architecture, not of a checkpoint (SPEC 4, 5): they need no weights.
# Known here without importing torch, so the CLI can decide early; a test keeps it in
# step with the specs' own ``scope``.
ARCHITECTURE_MEASURES = ("ag", "plane")

__all__ = ["Measurement", "MeasureSpec", "ScoreContext", "measure_specs", *_FUNCTIONS]


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        module = importlib.import_module(f"bench.measures.{_FUNCTIONS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'bench.measures' has no attribute {name!r}")


def measure_specs() -> dict[str, MeasureSpec]:
    """Every measure ``bench score`` knows, by name (``gc``, ``gc_embedding``, ``rf``, ...)."""
    specs: dict[str, MeasureSpec] = {}
    for mod in _SPEC_MODULES:
        module = importlib.import_module(f"bench.measures.{mod}")
        for spec in module.SPECS:
            specs[spec.name] = spec
    return specs
