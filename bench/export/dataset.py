"""``bench export``: the store as a Hugging Face dataset folder.

Layout (what the Hub's dataset viewer and ``datasets.load_dataset(DIR, config)``
understand): one config per table and per leaderboard view, each a single Parquet
file ``data/<config>/train-00000-of-00001.parquet``, and a dataset card
``README.md`` whose YAML front matter lists the configs and their data files.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.errors import BenchError
from bench.export.card import render_card
from bench.export.tables import CONFIGS, data_revision, read_tables
from bench.store.db import Store


class ExportError(BenchError):
    """The export folder cannot be written."""


def data_file(config: str) -> str:
    """Path of a config's Parquet file inside the dataset folder."""
    return f"data/{config}/train-00000-of-00001.parquet"


@dataclass
class ExportResult:
    out: Path
    revision: str
    exported_at: datetime
    tables: dict[str, pa.Table] = field(repr=False)

    @property
    def files(self) -> list[Path]:
        """Every file written, relative to ``out``."""
        return [Path("README.md")] + [Path(data_file(c)) for c in CONFIGS]

    def row_counts(self) -> dict[str, int]:
        return {name: t.num_rows for name, t in self.tables.items()}

    def run_ids(self) -> list[str]:
        return self.tables["runs"].column("run_id").to_pylist()


def export_dataset(store: Store, out: str | Path, *, license: str = "cc-by-4.0") -> ExportResult:
    """Write every table and view of ``store`` as Parquet plus the dataset card into ``out``.

    Only the files this function owns (``README.md`` and ``data/``) are replaced, so
    pointing ``out`` at a folder with other content (a git clone of the dataset repo)
    is safe.
    """
    out = Path(out)
    tables = read_tables(store)
    revision = data_revision(tables)
    exported_at = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out / "data", ignore_errors=True)
        for config, table in tables.items():
            path = out / data_file(config)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
        card = render_card(tables, revision=revision, exported_at=exported_at, license=license,
                           data_files={c: data_file(c) for c in CONFIGS})
        (out / "README.md").write_text(card, encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot write the export to {out}: {exc.strerror or exc}",
                          "choose a writable folder with --out") from exc
    return ExportResult(out=out, revision=revision, exported_at=exported_at, tables=tables)
