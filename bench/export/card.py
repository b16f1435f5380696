"""The dataset card (``README.md``) of the exported dataset.

The YAML front matter is written with ``yaml.safe_dump`` (never by string
formatting), and the body from a Jinja2 template; column and measure descriptions
come from :mod:`bench.export.docs` and measure versions from ``measure_specs()``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jinja2
import pyarrow as pa
import yaml

from bench import __version__
from bench.export.docs import COLUMN_DOCS, MEASURE_DOCS, PROTOCOL_VERSION, measure_versions

DEFAULT_CONFIG = "leaderboard"

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent),
                          autoescape=False, keep_trailing_newline=True,
                          trim_blocks=True, lstrip_blocks=True)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def front_matter(tables: dict[str, pa.Table], data_files: dict[str, str], license: str) -> str:
    meta = {
        "license": license,
        "pretty_name": "Geometry Bench",
        "tags": ["geometry", "benchmark", "leaderboard", "timm", "image-classification",
                 "interpretability", "jacobian", "robustness"],
        "size_categories": [_size_category(tables["measurements"].num_rows)],
        "configs": [
            {"config_name": name, "data_files": [{"split": "train", "path": path}],
             **({"default": True} if name == DEFAULT_CONFIG else {})}
            for name, path in data_files.items()
        ],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _data_versions(tables: dict[str, pa.Table]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    m = tables["measurements"]
    for measure, version in zip(m.column("measure").to_pylist(), m.column("measure_version").to_pylist()):
        found.setdefault(measure, set()).add(version)
    return found


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_card(tables: dict[str, pa.Table], *, revision: str, exported_at: datetime, license: str,
                data_files: dict[str, str]) -> str:
    data_versions = _data_versions(tables)
    measures = [
        {"name": name, "version": version if version is not None else "unknown",
         "in_data": ", ".join(str(v) for v in sorted(data_versions.get(name, ()))) or "none",
         "doc": _md_cell(MEASURE_DOCS.get(name, "No description."))}
        for name, version in measure_versions(data_versions).items()
    ]
    configs = [
        {"name": name, "rows": table.num_rows, "path": data_files[name],
         "columns": [{"name": f.name, "type": _md_cell(str(f.type)),
                      "doc": _md_cell(COLUMN_DOCS.get(f.name, ""))} for f in table.schema]}
        for name, table in tables.items()
    ]
    body = _ENV.get_template("card.md.j2").render(
        configs=configs, measures=measures, revision=revision, default_config=DEFAULT_CONFIG,
        exported_at=exported_at.isoformat(), protocol_version=PROTOCOL_VERSION, bench_version=__version__)
    return front_matter(tables, data_files, license) + "\n" + body
