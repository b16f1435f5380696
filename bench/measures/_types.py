"""The typed result of every measure, and the contract between measures and the harness.

A measure is a pure function (``geometric_complexity(f, images, ...)``) that returns
:class:`Measurement` objects. To be scored by ``bench score`` it also exposes a
:class:`MeasureSpec`, whose ``run`` adapts a :class:`ScoreContext` (model, probe
images, device, seed, user parameters) to the pure function. The harness turns each
returned ``Measurement`` into one row of the ``measurements`` table.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

if TYPE_CHECKING:  # imported for annotations only, to keep measures light
    import torch

    from bench.models.scored import ScoredModel
    from bench.registry.schema import RegistryEntry

Status = Literal["ok", "undefined"]
Scope = Literal["checkpoint", "architecture"]


@dataclass
class Measurement:
    """One value of one measure, with its uncertainty and the protocol that produced it.

    ``extras`` holds secondary scalars (``d_f``, ``g_f``, ``radius``, ...); ``arrays``
    holds named float lists (curves, spectra, grid maps) that the store writes as Arrow
    list columns. A per-layer measure returns one ``Measurement`` per layer, with
    ``layer`` (its name) and ``depth`` (relative depth in [0, 1]) set.
    """

    measure: str
    version: int
    value: float | None
    stderr: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    draws: int = 1
    status: Status = "ok"
    reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, list[float]] = field(default_factory=dict)
    layer: str | None = None
    depth: float | None = None

    def __post_init__(self) -> None:
        if self.status == "ok":
            for name in ("value", "stderr", "ci_low", "ci_high"):
                v = getattr(self, name)
                if v is not None and not math.isfinite(v):
                    raise ValueError(
                        f"{self.measure}: {name}={v} is not finite; return an undefined "
                        "Measurement with a reason instead (SPEC section 1)"
                    )

    @classmethod
    def undefined(cls, measure: str, version: int, reason: str, **kwargs: Any) -> "Measurement":
        """A row that says why the measure has no value for this model."""
        return cls(measure=measure, version=version, value=None, status="undefined",
                   reason=reason, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScoreContext:
    """Everything a measure's ``run`` needs from the harness for one model.

    For checkpoint-level measures ``model`` is the scored function of SPEC section 1
    (pixel space in [0, 1], normalization inside) and ``images`` the preprocessed probe
    set on the CPU. For architecture-level measures ``model`` is None and the measure
    builds fresh instances of ``entry``'s architecture itself.

    ``cache`` is shared by all measures of one model in one ``bench score`` call, so
    that work can be reused (``ag_trained`` reuses the VJPs that ``gc`` computed).
    ``requested`` names every measure of this call, so a measure can keep what a
    later one will need (``gc`` keeps its VJPs only when ``ag_trained`` follows).
    ``progress(total, desc)`` returns a tqdm-like bar (``update``, ``close``).
    """

    entry: "RegistryEntry"
    device: "torch.device"
    seed: int
    params: dict[str, Any]
    model: "ScoredModel | None" = None
    images: "torch.Tensor | None" = None
    labels: "torch.Tensor | None" = None
    batch_size: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    requested: tuple[str, ...] = ()
    progress: Callable[..., Any] | None = None

    @contextmanager
    def progress_bar(self, total: int, desc: str) -> Iterator[Any]:
        """A bar for the enclosed work, closed however it ends; None when none is shown."""
        bar = self.progress(total=total, desc=desc) if self.progress else None
        try:
            yield bar
        finally:
            if bar is not None:
                bar.close()


@dataclass(frozen=True)
class MeasureSpec:
    """How ``bench score`` runs one measure.

    ``defaults`` are the protocol parameters of SPEC (every one is stored with the
    row). ``run`` receives a context whose ``params`` are the defaults updated with
    the user's overrides, and returns the rows to store. ``needs_images`` is False for
    architecture-level measures, which ignore the probe set.
    """

    name: str
    version: int
    scope: Scope
    description: str
    defaults: dict[str, Any]
    run: Callable[[ScoreContext], list[Measurement]]
    needs_images: bool = True
    needs_labels: bool = False
