"""Results contributed by pull request: one reviewable JSON file per run.

Public API::

    from bench.submissions import submit_run, ingest, check_submission
    path = submit_run(Store(db), run_id, "submissions/")     # DB -> file
    check_submission(path)                                    # -> (Submission | None, [Problem])
    ingest(["submissions/"], Store(other_db))                 # files -> DB, all or nothing

The file format is described in :mod:`bench.submissions.format`, the checks in
:mod:`bench.submissions.validate`.
"""

from bench.submissions.format import FORMAT, FORMAT_VERSION
from bench.submissions.ingest import IngestReport, SubmissionError, check_all, ingest
from bench.submissions.submit import latest_run_id, submit_run
from bench.submissions.validate import MAX_BYTES, Problem, Submission, check_submission, submission_files

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_BYTES", "IngestReport", "Problem", "Submission",
           "SubmissionError", "check_all", "check_submission", "ingest", "latest_run_id",
           "submission_files", "submit_run"]
