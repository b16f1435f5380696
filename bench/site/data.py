"""What the leaderboard shows, computed from the exported tables (no HTML here).

Choices made here (also stated on the site):

- **One row per checkpoint and weights.** A checkpoint measured with its pretrained
  weights and with random weights gives two rows; the table shows pretrained rows by
  default (a filter shows the others), so controls never mix into a ranking.
- **One protocol per column.** Rows of different versions never mix (SPEC): a
  column holds the measure's current version (the one ``measure_specs()`` knows, else
  the highest in the data) and, among its parameter sets, the one that covers the
  most checkpoints (ties: the most recent). Every other value is on the model pages.
- **Ties.** In a column sorted by a measure, a checkpoint is tied with a neighbour
  when their 95% intervals overlap; the rank column marks it.
- **Architecture-level measures** (scope ``architecture``: ag, plane) form their own
  table, one row per architecture and init scheme, never repeated per checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.export.docs import MEASURE_DOCS
from bench.site.svg import fmt

CHECKPOINT_ORDER = ("gc", "gc_embedding", "rf", "ag_trained", "mftma", "volume")
ARCHITECTURE_ORDER = ("ag", "plane")
MEASURE_LABELS = {"gc": "GC", "gc_embedding": "GC (embedding)", "rf": "R_f", "ag_trained": "AG rank (trained)",
                  "mftma": "Capacity", "volume": "Magnification", "ag": "AG rank", "plane": "Plane invariance"}


def label(measure: str) -> str:
    return MEASURE_LABELS.get(measure, measure)


@dataclass
class Cell:
    value: float
    stderr: float | None
    lo: float | None
    hi: float | None
    n: int | None

    @property
    def interval(self) -> str:
        return f"95% CI [{fmt(self.lo)}, {fmt(self.hi)}]" if self.lo is not None and self.hi is not None else ""


@dataclass
class Column:
    measure: str
    version: int
    params: str

    @property
    def label(self) -> str:
        return label(self.measure)

    @property
    def doc(self) -> str:
        return MEASURE_DOCS.get(self.measure, "")

    @property
    def protocol(self) -> str:
        return f"{self.measure} v{self.version}, parameters {self.params}"


@dataclass
class Row:
    index: int
    model: dict[str, Any]
    weights: str
    slug: str | None
    cells: dict[str, Cell | None] = field(default_factory=dict)
    rank: int | None = None
    tied: bool = False


def slugify(name: str, taken: set[str]) -> str:
    """A file name for a model page: the id where it is safe, else made safe and disambiguated."""
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "model"
    if slug != name or slug in taken:
        slug += "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    taken.add(slug)
    return slug


def choose_columns(rows: list[dict[str, Any]], order: tuple[str, ...],
                   versions: dict[str, int | None]) -> list[Column]:
    """One column per measure present: its current version and its most common protocol."""
    by_measure: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_measure[r["measure"]].append(r)
    columns = []
    for measure in sorted(by_measure, key=lambda m: (order.index(m) if m in order else len(order), m)):
        present = {r["measure_version"] for r in by_measure[measure]}
        current = versions.get(measure)
        version = current if current in present else max(present)
        same = [r for r in by_measure[measure] if r["measure_version"] == version]
        counts = Counter(r["params"] for r in same)
        latest = {r["params"]: r["created_at"] for r in sorted(same, key=lambda r: r["created_at"])}
        params = max(counts, key=lambda p: (counts[p], latest[p]))
        columns.append(Column(measure, version, params))
    return columns


def _cell(r: dict[str, Any]) -> Cell:
    return Cell(r["value"], r["stderr"], r["ci_low"], r["ci_high"], r["n_images"])


def cells_for(rows: list[dict[str, Any]], columns: list[Column], key) -> dict[Any, dict[str, Cell]]:
    """key(row) -> {measure: cell} for the rows that match their column's version and protocol."""
    wanted = {(c.measure, c.version, c.params) for c in columns}
    out: dict[Any, dict[str, Cell]] = defaultdict(dict)
    for r in sorted(rows, key=lambda r: r["created_at"]):  # the latest wins
        if (r["measure"], r["measure_version"], r["params"]) in wanted:
            out[key(r)][r["measure"]] = _cell(r)
    return out


def intervals_overlap(a: Cell, b: Cell) -> bool:
    if None in (a.lo, a.hi, b.lo, b.hi):
        return False
    return a.lo <= b.hi and b.lo <= a.hi


def rank(rows: list[Row], measure: str, descending: bool = True) -> list[Row]:
    """Rows sorted by a measure (missing values last), with ranks and tie marks set.

    Only rows with a value get a rank; a row is ``tied`` when its interval overlaps
    that of the row just above or just below it. This is the definition the site's
    JavaScript applies again after every sort and filter.
    """
    valued = [r for r in rows if r.cells.get(measure) is not None]
    missing = [r for r in rows if r.cells.get(measure) is None]
    valued.sort(key=lambda r: r.cells[measure].value, reverse=descending)
    for i, r in enumerate(valued):
        r.rank = i + 1
        neighbours = valued[max(i - 1, 0):i] + valued[i + 1:i + 2]
        r.tied = any(intervals_overlap(r.cells[measure], n.cells[measure]) for n in neighbours)
    for r in missing:
        r.rank, r.tied = None, False
    return valued + missing


def checkpoint_table(leaderboard: list[dict[str, Any]], models: dict[str, dict[str, Any]],
                     slugs: dict[str, str], versions: dict[str, int | None]) -> tuple[list[Column], list[Row]]:
    columns = choose_columns(leaderboard, CHECKPOINT_ORDER, versions)
    cells = cells_for(leaderboard, columns, key=lambda r: (r["model_id"], r["weights"]))
    keys = sorted({(r["model_id"], r["weights"]) for r in leaderboard})
    rows = [Row(i, models.get(mid, {"model_id": mid}), weights, slugs.get(mid),
                {c.measure: cells.get((mid, weights), {}).get(c.measure) for c in columns})
            for i, (mid, weights) in enumerate(keys)]
    if columns:  # ranked among the rows shown at first, as the page's script does
        shown = default_weights(rows)
        rows = rank([r for r in rows if r.weights == shown or not shown], columns[0].measure) + \
            [r for r in rows if shown and r.weights != shown]
    return columns, rows


def default_weights(rows: list[Row]) -> str:
    """The weights shown before any filter: pretrained when there are any, else all ("")."""
    return "pretrained" if any(r.weights == "pretrained" for r in rows) else ""


@dataclass
class ArchitectureRow:
    timm_name: str
    init: str
    cells: dict[str, Cell | None]


def architecture_table(arch_rows: list[dict[str, Any]],
                       versions: dict[str, int | None]) -> tuple[list[Column], list[ArchitectureRow]]:
    columns = choose_columns(arch_rows, ARCHITECTURE_ORDER, versions)
    cells = cells_for(arch_rows, columns, key=lambda r: (r["timm_name"], r["init"]))
    keys = sorted({(r["timm_name"], r["init"]) for r in arch_rows})
    return columns, [ArchitectureRow(t, i, {c.measure: cells.get((t, i), {}).get(c.measure) for c in columns})
                     for t, i in keys]


def table_json(columns: list[Column], rows: list[Row]) -> list[dict[str, Any]]:
    """What the page's script needs per row to sort, filter and mark ties (by row index)."""
    out = []
    for r in sorted(rows, key=lambda r: r.index):
        m = r.model
        out.append({
            "i": r.index, "model": m.get("model_id"), "family": m.get("family"),
            "pretraining": m.get("pretraining_data"), "license": m.get("license"), "weights": r.weights,
            "params": m.get("param_count"), "top1": m.get("imagenet_top1"),
            "search": " ".join(str(m.get(k) or "") for k in ("model_id", "timm_name", "family",
                                                               "pretraining_data", "license")).lower(),
            "v": {c.measure: ([cell.value, cell.lo, cell.hi] if (cell := r.cells.get(c.measure)) else None)
                  for c in columns},
        })
    return out


def safe_json(data: Any) -> str:
    """JSON that can sit inside ``<script>``: no ``<``, ``>``, ``&`` or line separators in clear."""
    text = json.dumps(data, allow_nan=False, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text
