"""The results store as a Hugging Face dataset: Parquet export, dataset card, push.

Public API::

    from bench.export import export_dataset, push_dataset
    export_dataset(Store(path), "out/")          # -> ExportResult (files, revision, rows)
    push_dataset(Store(path), "org/name", dry_run=True)   # -> PushPlan
"""

from bench.export.dataset import ExportError, ExportResult, data_file, export_dataset
from bench.export.push import PushError, PushPlan, push_dataset
from bench.export.tables import CONFIGS, data_revision, read_tables

__all__ = ["CONFIGS", "ExportError", "ExportResult", "PushError", "PushPlan", "data_file",
           "data_revision", "export_dataset", "push_dataset", "read_tables"]
