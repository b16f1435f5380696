"""``bench ingest``: load checked submission files into a database, all or nothing.

Every file is checked completely first (:func:`check_submission`); one problem in
any file and nothing is written. Then all new rows go in one transaction. Rows are
identified by their primary keys (run_id, model_id, measurement_id), so ingesting a
file twice adds nothing the second time. A models row already in the database is
kept as it is (the registry, through ``bench score``, owns it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from bench.errors import BenchError
from bench.store.db import Store
from bench.store.rows import to_table
from bench.store.schema import PRIMARY_KEYS, TABLES
from bench.submissions.validate import Problem, Submission, check_submission, submission_files


class SubmissionError(BenchError):
    """One or more submission files are malformed; ``problems`` lists each with file and field."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(f"invalid submission: {problems[0]}{more}",
                         "fix the file(s); `bench validate --submissions-only` lists every problem")


@dataclass
class IngestReport:
    files: int
    added: dict[str, int]


def check_all(paths: list[str | Path], *, registry: Mapping[str, Any] | None = None,
              specs: Mapping[str, Any] | None = None) -> tuple[list[Submission], list[Problem]]:
    """Check every submission file under ``paths``; the good ones and all problems."""
    submissions, problems = [], []
    for path in submission_files(paths):
        submission, found = check_submission(path, registry=registry, specs=specs)
        problems += found
        if submission is not None:
            submissions.append(submission)
    return submissions, problems


def ingest(paths: list[str | Path], store: Store, *, registry: Mapping[str, Any] | None = None,
           specs: Mapping[str, Any] | None = None) -> IngestReport:
    """Check all files, then add their new rows to ``store`` in one transaction.

    A folder without submissions still creates the database (with empty tables), so
    the site can be built before the first contribution.
    """
    submissions, problems = check_all(paths, registry=registry, specs=specs)
    if problems:
        raise SubmissionError(problems)
    incoming = {name: _dedupe(name, [r for s in submissions for r in s.rows[name]]) for name in TABLES}

    def write(con) -> dict[str, int]:
        added = {}
        for name, rows in incoming.items():
            key = PRIMARY_KEYS[name]
            present = {k for (k,) in con.execute(f'SELECT "{key}" FROM {name}').fetchall()}
            new = [r for r in rows if r[key] not in present]
            if new:
                Store.insert_arrow(con, name, to_table(name, new))
            added[name] = len(new)
        return added

    return IngestReport(files=len(submissions), added=store.transaction(write))


def _dedupe(table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    key = PRIMARY_KEYS[table]
    return list({r[key]: r for r in rows}.values())
