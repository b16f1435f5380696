"""``bench leaderboard build``: the static site, from the store to a folder of files.

The site needs no server and no network: pages link each other relatively, the
CSS and the small sorting/filtering script are copied from this package, charts
are inline SVG and pictures are PNG files in ``img/``. The data behind the site is
written into ``data/`` (the dataset export, plus CSV), so what people browse is
what they can download. All text is escaped by Jinja2's autoescape; the table's
JSON sits in a ``<script type="application/json">`` with ``<``, ``>`` and ``&``
escaped, so no registry or submission text can end the script.
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pyarrow as pa
import pyarrow.csv as pacsv
from markupsafe import Markup

from bench import __version__
from bench.export import data_file, export_dataset
from bench.export.docs import MEASURE_DOCS, PROTOCOL_VERSION, measure_versions
from bench.site import data as sitedata
from bench.site import pages
from bench.site.svg import Point, fmt, fmt_pm, scatter_chart
from bench.store.db import Store

_HERE = Path(__file__).parent
TRAINED_WEIGHTS = ("pretrained", "file")  # checkpoints that learned something, for the plots
_STATIC = ("site.css", "site.js")
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(_HERE), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
_ENV.filters["fmt"] = fmt
_ENV.filters["fmt_pm"] = fmt_pm


@dataclass
class SiteResult:
    out: Path
    revision: str
    pages: int


def _write_csv(table: pa.Table, path: Path) -> None:
    """CSV of a table; list columns (arrays) become JSON text, as CSV has no lists."""
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type):
            text = pa.array([None if v is None else json.dumps(v) for v in table.column(i).to_pylist()],
                            pa.string())
            table = table.set_column(i, f.name, text)
    pacsv.write_csv(table, path)


def _scatters(columns, rows) -> list[Markup]:
    """Each headline measure against ImageNet top-1 (where known), and the first two
    measures that share at least three trained checkpoints, against each other."""
    shown = [r for r in rows if r.weights in TRAINED_WEIGHTS] or rows
    charts = []

    def point(r, x, cell):
        return Point(x, cell.value, r.model.get("model_id", ""), r.model.get("family") or "", cell.lo, cell.hi,
                     f"models/{r.slug}.html" if r.slug else None)

    for c in columns:
        pts = [point(r, r.model["imagenet_top1"], r.cells[c.measure]) for r in shown
               if r.cells.get(c.measure) and r.model.get("imagenet_top1") is not None]
        if len(pts) >= 2:
            charts.append(scatter_chart(pts, x_label="ImageNet top-1 (%)", y_label=c.label,
                                        title=f"{c.label} against ImageNet top-1"))
    for a, b in itertools.combinations(columns, 2):
        pts = [point(r, r.cells[a.measure].value, r.cells[b.measure]) for r in shown
               if r.cells.get(a.measure) and r.cells.get(b.measure)]
        if len(pts) >= 3:
            charts.append(scatter_chart(pts, x_label=a.label, y_label=b.label, title=f"{b.label} against {a.label}"))
            break
    return charts


def build_site(store: Store, out: str | Path) -> SiteResult:
    """Render the whole site into ``out`` (replacing what an earlier build left there)."""
    out = Path(out)
    for sub in ("models", "img", "data", "assets"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True, exist_ok=True)
    export = export_dataset(store, out / "data")
    tables = export.tables
    for name, table in tables.items():
        _write_csv(table, out / "data" / f"{name}.csv")
        shutil.copy(out / "data" / data_file(name), out / "data" / f"{name}.parquet")
    for name in _STATIC:
        shutil.copy(_HERE / name, out / "assets" / name)

    measurements = tables["measurements"].to_pylist()
    leaderboard = tables["leaderboard"].to_pylist()
    arch_leaderboard = tables["architecture_leaderboard"].to_pylist()
    models = {m["model_id"]: m for m in tables["models"].to_pylist()}
    checkpoint_ids = sorted(set(models) | {r["model_id"] for r in measurements if r["scope"] == "checkpoint"})
    taken: set[str] = set()
    slugs = {mid: sitedata.slugify(mid, taken) for mid in checkpoint_ids}
    versions = measure_versions({r["measure"]: {r["measure_version"]} for r in measurements})
    columns, rows = sitedata.checkpoint_table(leaderboard, models, slugs, versions)
    arch_columns, arch_rows = sitedata.architecture_table(arch_leaderboard, versions)
    built_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    common = dict(revision=export.revision, built_at=built_at, protocol_version=PROTOCOL_VERSION,
                  versions=versions, bench_version=__version__, measure_docs=MEASURE_DOCS, label=sitedata.label)

    def choices(key):
        return sorted({r.model.get(key) for r in rows if r.model.get(key)})

    default_weights = sitedata.default_weights(rows)
    index = _ENV.get_template("index.html.j2").render(
        root="", columns=columns, rows=rows, arch_columns=arch_columns, arch_rows=arch_rows,
        table_json=Markup(sitedata.safe_json(sitedata.table_json(columns, rows))),
        families=choices("family"), pretraining=choices("pretraining_data"), licenses=choices("license"),
        weights=sorted({r.weights for r in rows}), default_weights=default_weights,
        scatters=_scatters(columns, rows), row_counts=export.row_counts(), **common)
    (out / "index.html").write_text(index, encoding="utf-8")

    def writer(name: str, png: bytes) -> str:
        (out / "img" / name).write_bytes(png)
        return f"../img/{name}"

    template = _ENV.get_template("model.html.j2")
    for mid in checkpoint_ids:
        model = models.get(mid, {"model_id": mid})
        own = [r for r in measurements if r["scope"] == "checkpoint" and r["model_id"] == mid]
        arch = [r for r in measurements if r["scope"] == "architecture" and r["timm_name"] == model.get("timm_name")]
        headline = sorted([r for r in leaderboard if r["model_id"] == mid],
                          key=lambda r: (r["measure"], r["weights"], r["created_at"]))
        page = template.render(
            root="../", model=model, slug=slugs[mid], headline=headline,
            profiles=pages.layer_profiles(own), curves=pages.curves(own),
            volume=pages.volume_maps(own, slugs[mid], writer),
            diffeo=pages.diffeo_figure(own, model.get("input_size"), writer),
            arch_rows=[r for r in arch_leaderboard if r["timm_name"] == model.get("timm_name")],
            arch_curves=pages.curves(arch), stored=pages.stored_rows(own + arch),
            paper_url=model.get("paper") if str(model.get("paper") or "").startswith(("https://", "http://"))
            else None, **common)
        (out / "models" / f"{slugs[mid]}.html").write_text(page, encoding="utf-8")
    return SiteResult(out=out, revision=export.revision, pages=1 + len(checkpoint_ids))
