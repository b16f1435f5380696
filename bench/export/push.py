"""``bench push``: upload the export to a Hugging Face dataset repo as one commit.

Everything up to the upload is done for real and locally (export into a temporary
folder, file list, row counts, run ids), so ``--dry-run`` shows exactly what a push
would send. The commit message names the runs the push adds: the run ids of the
export minus those already in the repo's ``runs`` config (all of them when the repo
or file does not exist yet). The token is whatever ``huggingface_hub`` finds
(``HF_TOKEN`` or the saved login); it is handed to the client and never printed.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.errors import BenchError
from bench.export.dataset import data_file, export_dataset
from bench.store.db import Store

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TITLE_RUNS = 3


class PushError(BenchError):
    """The dataset could not be uploaded; nothing local was changed."""


@dataclass
class PushPlan:
    """What a push sends: files, row counts, and the runs it adds."""

    repo: str
    revision: str | None
    data_revision: str
    files: list[tuple[str, int]]        # path in repo, size in bytes
    row_counts: dict[str, int]
    new_run_ids: list[str]
    remote_checked: bool                # False: the Hub was not asked (dry run)
    commit_url: str | None = None

    def commit_message(self) -> str:
        if not self.new_run_ids:
            return f"Update Geometry Bench data (revision {self.data_revision}, no new runs)"
        shown = ", ".join(r[:12] for r in self.new_run_ids[:_TITLE_RUNS])
        more = len(self.new_run_ids) - _TITLE_RUNS
        suffix = f" and {more} more" if more > 0 else ""
        noun = "run" if len(self.new_run_ids) == 1 else "runs"
        return f"Add {noun} {shown}{suffix} (data revision {self.data_revision})"

    def commit_description(self) -> str:
        lines = ["Runs added:", *(f"- {r}" for r in self.new_run_ids)] if self.new_run_ids else []
        lines += ["", "Rows per config:", *(f"- {k}: {v}" for k, v in self.row_counts.items())]
        return "\n".join(lines).strip()

    def describe(self) -> str:
        target = self.repo + (f"@{self.revision}" if self.revision else "")
        runs_note = "" if self.remote_checked else " (Hub not consulted: all local runs)"
        lines = [f"dataset {target}, data revision {self.data_revision}", "files:"]
        lines += [f"  {path}  {size:,} bytes" for path, size in self.files]
        lines += ["rows:"] + [f"  {name}: {n}" for name, n in self.row_counts.items()]
        lines += [f"runs added{runs_note}: {len(self.new_run_ids)}"]
        lines += [f"  {r}" for r in self.new_run_ids]
        lines += [f"commit message: {self.commit_message()}"]
        return "\n".join(lines)


def _network_errors() -> tuple[type[BaseException], ...]:
    """OSError (the Hub's own errors derive from it) and the HTTP library's base error."""
    from huggingface_hub.errors import HfHubHTTPError

    http_base = next((c for c in HfHubHTTPError.__mro__[1:] if c.__name__ == "HTTPError"), OSError)
    return (OSError, http_base)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _remote_run_ids(api: Any, repo: str, revision: str | None) -> set[str]:
    """Run ids already in the repo's ``runs`` config; empty when the repo, branch or file is new.

    The file goes to a throwaway cache, so a push leaves nothing in the user's Hub cache.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    with tempfile.TemporaryDirectory(prefix="bench-push-remote-") as cache:
        try:
            path = api.hf_hub_download(repo, data_file("runs"), repo_type="dataset", revision=revision,
                                       cache_dir=cache)
        except LocalEntryNotFoundError:  # "not found" because the Hub could not be reached
            raise
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
            return set()
        return set(pq.read_table(path, columns=["run_id"]).column("run_id").to_pylist())


def _upload(api: Any, plan: PushPlan, folder: Path, private: bool) -> str | None:
    from huggingface_hub import CommitOperationAdd

    api.create_repo(plan.repo, repo_type="dataset", private=private, exist_ok=True)
    if plan.revision:
        api.create_branch(plan.repo, branch=plan.revision, repo_type="dataset", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(folder / path))
                  for path, _ in plan.files]
    info = api.create_commit(plan.repo, operations=operations, commit_message=plan.commit_message(),
                             commit_description=plan.commit_description(), repo_type="dataset",
                             revision=plan.revision)
    return getattr(info, "commit_url", None)


def push_dataset(store: Store, repo: str, *, revision: str | None = None, private: bool = False,
                 dry_run: bool = False, api: Any = None) -> PushPlan:
    """Export ``store`` and upload it to the dataset repo ``repo`` as one commit.

    ``api`` is the ``huggingface_hub.HfApi``-like client to use (tests pass a stand-in);
    by default a real ``HfApi`` with the token ``huggingface_hub`` finds.
    """
    if not _REPO_ID.match(repo):
        raise PushError(f"{repo!r} is not a Hub repo id", "use --repo ORG/NAME")
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        result = export_dataset(store, tmp)
        files = [(p.as_posix(), (Path(tmp) / p).stat().st_size) for p in result.files]
        plan = PushPlan(repo=repo, revision=revision, data_revision=result.revision, files=files,
                        row_counts=result.row_counts(), new_run_ids=result.run_ids(),
                        remote_checked=False)
        if dry_run:
            return plan
        api = api if api is not None else _default_api()
        try:
            remote = _remote_run_ids(api, repo, revision)
            plan.new_run_ids = [r for r in plan.new_run_ids if r not in remote]
            plan.remote_checked = True
            plan.commit_url = _upload(api, plan, Path(tmp), private)
        except _network_errors() as exc:
            raise PushError(f"could not push to the Hub dataset {repo}: {_first_line(exc)}",
                            "check the network, the repo name and your token (HF_TOKEN or `hf auth "
                            "login`); nothing was uploaded and the local data is unchanged") from exc
    return plan


def _default_api() -> Any:
    from huggingface_hub import HfApi, constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise PushError("cannot push: the Hugging Face Hub is in offline mode (HF_HUB_OFFLINE)",
                        "unset HF_HUB_OFFLINE on a machine with network access; the local data is "
                        "unchanged")
    if get_token() is None:
        raise PushError("no Hugging Face token found",
                        "log in with `hf auth login` or set HF_TOKEN; the local data is unchanged")
    return HfApi()
