"""`bench score`, `show` and `query` end to end, through the console entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from bench.cli import main

SMALL = "cifar_resnet20.akamaster_c10"


def run_cli(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
    """The real `bench` entry point in a subprocess, as a user runs it."""
    proc = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert proc.returncode == expect, proc.stderr + proc.stdout
    return proc


def call(args: list[str], capsys) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_score_random_weights_then_skip_then_force(db_path, capsys):
    args = ["score", "--model", SMALL, "--weights", "random", "--images", "6", "--no-progress",
            "--db", str(db_path)]
    code, out, err = call(args, capsys)
    assert code == 0, err
    assert "gc" in out and "ok" in out
    stored = rows(db_path, "SELECT measure, status, value, n_images, draws, params, probe_set_id, "
                           "probe_set_hash, weights, weights_hash, device, torch_version, "
                           "timm_version, bench_version, wall_time_s, peak_memory_mb, seed "
                           "FROM measurements")
    assert len(stored) == 1
    measure, status, value, n, draws, params, probe_id, probe_hash, weights, whash, *prov = stored[0]
    assert (measure, status, n, weights) == ("gc", "ok", 6, "random")
    assert value > 0 and probe_id and len(probe_hash) >= 16 and whash == "random-seed0"
    assert json.loads(params)["exact"] is True  # 10 classes: the exact estimator
    assert all(p is not None for p in prov)
    assert rows(db_path, "SELECT status FROM runs") == [("finished",)]

    code, out, _ = call(args, capsys)  # same request again: skipped
    assert code == 0 and "skipped" in out
    assert len(rows(db_path, "SELECT * FROM measurements")) == 1

    code, out, _ = call(args + ["--force"], capsys)
    assert code == 0
    assert len(rows(db_path, "SELECT * FROM measurements")) == 2


def test_show_and_query(db_path, capsys):
    call(["score", "--model", SMALL, "--weights", "random", "--images", "4", "--no-progress",
          "--db", str(db_path)], capsys)
    code, out, _ = call(["show", "--db", str(db_path), "--format", "json"], capsys)
    assert code == 0
    board = json.loads(out)
    assert board[0]["model_id"] == SMALL and board[0]["measure"] == "gc"
    code, out, _ = call(["show", "--db", str(db_path), "--format", "csv"], capsys)
    assert out.splitlines()[0].startswith("model_id,")
    code, out, _ = call(["query", "SELECT count(*) AS n FROM measurements", "--db", str(db_path),
                         "--format", "json"], capsys)
    assert json.loads(out) == [{"n": 1}]
    code, _, err = call(["query", "DROP TABLE runs", "--db", str(db_path)], capsys)
    assert code != 0 and err.startswith("error: query failed")
    assert len(rows(db_path, "SELECT * FROM runs")) == 1


RANDOM = ("--weights", "random")


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet18x", *RANDOM], "unknown model 'resnet18x'"),
    (["--model", SMALL, *RANDOM, "--measure", "nope"], "unknown measure 'nope'"),
    (["--model", SMALL, *RANDOM, "-p", "gc.nope=1"], "has no parameter nope"),
    (["--model", SMALL, *RANDOM, "-p", "gcprobes=1"], "is not of the form"),
    (["--model", SMALL, "--weights", "missing.safetensors"], "not found"),
    (["--model", SMALL, *RANDOM, "--probes", "folder:/nonexistent/probes"], "probe"),
    (["--model", "resnet18"], "--weights random"),  # pretrained: the Hub is unreachable here
])
def test_bad_input_is_one_line_without_traceback(db_path, capsys, args, message):
    code, out, err = call(["score", "--no-progress", "--db", str(db_path), *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in err
    if db_path.exists():  # nothing half-written
        assert rows(db_path, "SELECT count(*) FROM measurements") == [(0,)]


def test_corrupt_and_mismatched_checkpoints(tmp_path, db_path, capsys):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 64)
    code, _, err = call(["score", "--model", SMALL, "--weights", str(corrupt), "--db", str(db_path),
                         "--no-progress"], capsys)
    assert code == 2 and "cannot read weights file" in err
    import torch
    mismatched = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, mismatched)
    code, _, err = call(["score", "--model", SMALL, "--weights", str(mismatched), "--db",
                         str(db_path), "--no-progress"], capsys)
    assert code == 2 and "does not fit" in err


def test_empty_probe_folder(tmp_path, db_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = call(["score", "--model", SMALL, "--weights", "random", "--probes",
                         f"folder:{empty}", "--db", str(db_path), "--no-progress"], capsys)
    assert code == 2 and err.startswith("error: ")


def test_debug_shows_the_traceback(db_path):
    proc = run_cli("--debug", "score", "--model", "resnet18x", "--db", str(db_path), expect=1)
    assert "Traceback" in proc.stderr and "UnknownModelError" in proc.stderr


def test_locked_database_fails_clearly(db_path):
    holder = subprocess.Popen([sys.executable, "-c",
                               f"import duckdb,time; c=duckdb.connect({str(db_path)!r}); "
                               "print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = run_cli("score", "--model", SMALL, "--weights", "random", "--images", "2",
                       "--db", str(db_path), "--lock-timeout", "1", "--no-progress", expect=2)
        assert "in use by another process" in proc.stderr
    finally:
        holder.kill()
        holder.wait()


def test_ctrl_c_keeps_finished_measurements(db_path):
    """SIGINT mid-run: exit 130, the run marked interrupted, finished rows intact."""
    models = ["cifar_resnet20.akamaster_c10", "cifar_resnet32.akamaster_c10",
              "cifar_resnet44.akamaster_c10", "cifar_resnet56.akamaster_c10"]
    args = [a for m in models for a in ("--model", m)]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from bench.cli import main; main()", "score", *args,
         "--weights", "random", "--no-progress", "--db", str(db_path), "-p", "gc.exact=true"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if rows(db_path, "SELECT count(*) FROM measurements")[0][0] >= 1:
                break
        except duckdb.Error:  # not created yet, or the writer holds it this instant
            pass
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    done = rows(db_path, "SELECT count(*), count(DISTINCT model_id) FROM measurements")[0]
    assert 1 <= done[0] < len(models) and done[0] == done[1]
    assert rows(db_path, "SELECT status FROM runs") == [("interrupted",)]


@pytest.mark.assets
def test_real_efficientnet_lite0_scores_from_a_file(assets, db_path, capsys):
    weights = assets / "weights/tf_efficientnet_lite0_in1k/tf_efficientnet_lite0.timm.safetensors"
    code, out, err = call(["score", "--model", "tf_efficientnet_lite0", "--weights", str(weights),
                           "--images", "4", "-p", "gc.probes=2", "--db", str(db_path),
                           "--no-progress"], capsys)
    assert code == 0, err
    (weights_kind, ref, whash, value, model_id), = rows(
        db_path, "SELECT weights, weights_ref, weights_hash, value, model_id FROM measurements")
    assert weights_kind == "file" and ref == weights.name and model_id == "tf_efficientnet_lite0.in1k"
    assert whash.startswith("3843") and whash.endswith("0191")  # the sha256 the assets README gives
    assert value > 0


def test_offline_pretrained_fails_before_importing_torch(db_path):
    """Without the Hub the error comes at once: torch and timm are never imported."""
    script = ("import sys\nfrom bench.cli import main\ntry:\n    main()\n"
              "finally:\n    print('torch imported:', 'torch' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", script, "score", "--model", "resnet18", "--db",
                           str(db_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert "--weights random" in proc.stderr and "--weights PATH" in proc.stderr
    assert "torch imported: False" in proc.stderr
    assert not db_path.exists()


def test_stored_command_has_no_local_paths(tmp_path, assets):
    from bench.cli.score import _command_line

    weights = assets / "weights/tf_efficientnet_lite0_in1k/tf_efficientnet_lite0.timm.safetensors"
    line = _command_line(["score", "--model", "x", "--weights", str(weights),
                          f"--db={tmp_path / 'b.duckdb'}", "--probes", f"folder:{tmp_path}"])
    assert str(tmp_path) not in line and str(assets) not in line
    assert "--weights tf_efficientnet_lite0.timm.safetensors" in line
    assert f"--probes folder:{tmp_path.name}" in line
    assert "hf:org/dataset" in _command_line(["score", "--probes", "hf:org/dataset"])


def test_architecture_measures_need_no_weights():
    from bench.measures import ARCHITECTURE_MEASURES, measure_specs

    assert {n for n, s in measure_specs().items() if s.scope == "architecture"} == \
        set(ARCHITECTURE_MEASURES)


def test_run_records_the_command_it_was_given(db_path, capsys):
    code, _, err = call(["score", "--model", SMALL, "--weights", "random", "--images", "2",
                         "--no-progress", "--db", str(db_path)], capsys)
    assert code == 0, err
    (command,), = rows(db_path, "SELECT command FROM runs")
    assert command.startswith(f"bench score --model {SMALL} --weights random --images 2")
