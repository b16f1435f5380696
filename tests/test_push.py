"""``bench push``: everything up to the upload runs for real; the Hub is a stand-in at the API boundary."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _synthetic import build_synthetic_store

from bench.cli import main
from bench.export import PushError, data_file, push_dataset
from bench.export.dataset import data_file as _data_file

SECRET = "hf_thisIsASecretTestToken1234567890"


class FakeHub:
    """Stands in for ``huggingface_hub.HfApi``: records calls, reads what would be uploaded."""

    def __init__(self, remote_runs: list[str] | None = None, tmp: Path | None = None):
        self.remote_runs = remote_runs
        self.tmp = tmp
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}

    def hf_hub_download(self, repo_id, filename, **kw):
        from huggingface_hub.errors import EntryNotFoundError

        self.calls.append(("hf_hub_download", dict(repo_id=repo_id, filename=filename, **kw)))
        if self.remote_runs is None:
            raise EntryNotFoundError(f"404: {filename} not in {repo_id}")
        path = self.tmp / "remote_runs.parquet"
        pq.write_table(pa.table({"run_id": self.remote_runs}), path)
        return str(path)

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", dict(repo_id=repo_id, **kw)))

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", dict(repo_id=repo_id, **kw)))

    def create_commit(self, repo_id, operations, **kw):
        operations = list(operations)
        for op in operations:  # read now: the temporary export folder is gone after the push
            self.uploaded[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
        self.calls.append(("create_commit", dict(repo_id=repo_id, operations=operations, **kw)))
        return type("CommitInfo", (), {"commit_url": f"https://hub.example/{repo_id}/commit/abc"})()


@pytest.fixture
def store(tmp_path):
    return build_synthetic_store(tmp_path / "bench.duckdb")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_ids(store) -> list[str]:
    return sorted(store.query("SELECT run_id FROM runs").column("run_id").to_pylist())


def test_push_to_a_new_repo_is_one_commit_naming_every_run(store, tmp_path):
    hub = FakeHub(tmp=tmp_path)
    plan = push_dataset(store, "geometry-bench/results", private=True, api=hub)
    names = [c[0] for c in hub.calls]
    assert names == ["hf_hub_download", "create_repo", "create_commit"]
    create_repo = hub.calls[1][1]
    assert create_repo["repo_type"] == "dataset" and create_repo["private"] and create_repo["exist_ok"]
    commit = hub.calls[2][1]
    assert commit["repo_type"] == "dataset" and commit["revision"] is None
    assert sorted(hub.uploaded) == sorted(["README.md"] + [data_file(c) for c in plan.row_counts])
    assert sorted(plan.new_run_ids) == _run_ids(store)
    for run_id in plan.new_run_ids:
        assert run_id[:12] in commit["commit_message"]
        assert run_id in commit["commit_description"]
    # what was uploaded is the real export: the runs file holds the store's runs
    runs = pq.read_table(pa.BufferReader(hub.uploaded[data_file("runs")]))
    assert sorted(runs.column("run_id").to_pylist()) == _run_ids(store)
    assert plan.commit_url.endswith("/commit/abc")


def test_commit_message_names_only_runs_the_hub_does_not_have(store, tmp_path):
    known, new = _run_ids(store)
    hub = FakeHub(remote_runs=[known], tmp=tmp_path)
    plan = push_dataset(store, "org/name", revision="staging", api=hub)
    assert plan.new_run_ids == [new]
    names = [c[0] for c in hub.calls]
    assert names == ["hf_hub_download", "create_repo", "create_branch", "create_commit"]
    assert hub.calls[0][1]["revision"] == "staging"
    assert hub.calls[2][1]["branch"] == "staging"
    commit = hub.calls[3][1]
    assert commit["revision"] == "staging"
    assert new[:12] in commit["commit_message"] and known[:12] not in commit["commit_message"]
    assert commit["commit_message"].startswith("Add run ")


def test_dry_run_lists_files_rows_and_runs_without_any_client(store, capsys):
    db_before = _digest(store.path)
    plan = push_dataset(store, "org/name", dry_run=True, api=object())  # any call would fail
    assert not plan.remote_checked
    assert dict(plan.files)["README.md"] > 0
    assert plan.row_counts["measurements"] == store.query("SELECT count(*) n FROM measurements")["n"][0].as_py()
    text = plan.describe()
    for run_id in _run_ids(store):
        assert run_id in text
    assert _data_file("leaderboard") in text
    assert _digest(store.path) == db_before


def test_cli_dry_run(store, capsys):
    main(["push", "--repo", "org/name", "--dry-run", "--db", str(store.path)])
    out = capsys.readouterr().out
    assert out.startswith("dry run, nothing uploaded")
    assert "measurements:" in out


def test_offline_is_a_one_line_error_and_leaves_the_database_alone(store, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    before = _digest(store.path)
    with pytest.raises(SystemExit) as exit_info:
        main(["push", "--repo", "org/name", "--db", str(store.path)])
    assert exit_info.value.code != 0
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: cannot push") and "offline" in err and "\n" not in err
    assert SECRET not in captured.out + captured.err
    assert _digest(store.path) == before


def test_unreachable_hub_is_a_one_line_error_and_never_shows_the_token(store, monkeypatch):
    """A real ``HfApi`` against a closed local port: the actual network failure path."""
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # the client's retry back-off
    before = _digest(store.path)
    api = HfApi(endpoint="http://127.0.0.1:9", token=SECRET)
    with pytest.raises(PushError) as info:
        push_dataset(store, "org/name", api=api)
    message = info.value.one_line()
    assert "could not push" in message and "\n" not in message and SECRET not in message
    assert _digest(store.path) == before


def test_bad_repo_id(store):
    with pytest.raises(PushError, match="not a Hub repo id"):
        push_dataset(store, "no-slash", dry_run=True)
