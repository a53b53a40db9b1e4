"""`runs list|show|compare|plot` over real run folders written by Runtime.run on the `test` manifest."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tinkex_cookbook import RlBasic, Runtime, SlBasic
from tinkex_cookbook.cli_runs import runs_app

SL = "sl_basic/20261123-120000"
RL = "rl_basic/20261123-120500"
SL_CUT = "sl_basic/20261123-130000"  # a copy of SL whose final checkpoint line was removed
PARTIAL = "scratch/partial"  # only metrics.jsonl, as a run killed before its first flush of the rest

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two finished runs and two incomplete ones, with their last run.log lines fixing the order: RL, SL_CUT, SL,
    PARTIAL (no run.log: it sorts last)."""
    root = tmp_path_factory.mktemp("runs")
    ports = {"blob_store": {"adapter": "local", "root": str(root)}}
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith(("TINKEX_", "TINKER_")):
                env.delenv(name)
        Runtime.run(SlBasic, {"eval_every": 2, "save_every": 2, "log_path": SL}, manifest="test", ports=ports)
        Runtime.run(RlBasic, {"env": "digits", "renderer_name": "role_colon", "num_steps": 3, "batch_size": 2,
                              "log_path": RL}, manifest="test", ports=ports)
    shutil.copytree(root / SL, root / SL_CUT)
    checkpoints = root / SL_CUT / "checkpoints.jsonl"
    kept = [line for line in checkpoints.read_text().splitlines() if not json.loads(line)["final"]]
    checkpoints.write_text("".join(line + "\n" for line in kept))
    (root / PARTIAL).mkdir(parents=True)
    (root / PARTIAL / "metrics.jsonl").write_text("".join(
        json.dumps({"event": "train.step", "step": step, "total_steps": 10, "dpo_loss": 0.7 - step / 10})
        + "\n"
        for step in (1, 2)) + "not json\n")
    (root / "empty" / "nested").mkdir(parents=True)
    for age, run in enumerate((RL, SL_CUT, SL)):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_800_000_000 - 60 * age))
        with (root / run / "run.log").open("a") as log:
            log.write(f"{stamp} note\n")
    yield root


@pytest.fixture(autouse=True)
def plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(runs_app, [str(arg) for arg in args])
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, out: str, err: str, *words: str) -> None:
    assert code == 2, out + err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in out + err
    for word in words:
        assert word in err, (word, err)


def test_list_finds_every_run_newest_first(root: Path) -> None:
    code, out, err = invoke("list", "--root", root)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["run", "recipe", "manifest", "status", "steps", "last", "loss", "updated"]
    cells = [row.split()[:6] for row in rows]
    assert [c[0] for c in cells] == [RL, SL_CUT, SL, PARTIAL]
    assert cells[0] == [RL, "rl_basic", "test", "finished", "3/3", cells[0][5]]
    assert cells[0][5].startswith("reward_mean=")
    assert cells[2][:5] == [SL, "sl_basic", "test", "finished", "4/4"]
    assert cells[2][5].startswith("train_mean_nll=")
    assert "\x1b" not in out and "─" not in out  # piped: no colour, no box drawing


def test_incomplete_runs(root: Path) -> None:
    rows = {row.split()[0]: row.split() for row in invoke("list", "--root", root)[1].splitlines()[1:]}
    assert rows[SL_CUT][3:5] == ["incomplete", "4/4"]
    assert rows[PARTIAL][1:6] == ["-", "-", "incomplete", "2/10", "dpo_loss=0.5"]


def test_a_folder_held_by_a_live_run_is_running_and_one_left_by_a_dead_run_is_not(tmp_path: Path) -> None:
    import socket

    from tinkex_cookbook.runtime.lease import Holder, current_pid_space

    def lock(pid: int) -> bytes:
        return Holder("x", socket.gethostname(), pid, time.time(), time.time(), current_pid_space()).to_bytes()

    for name, pid in (("live", os.getppid()), ("dead", 2**22 + 12345)):
        Runtime.run(SlBasic, {"log_path": name, "save_every": 2}, manifest="test",
                    ports={"blob_store": {"adapter": "local", "root": str(tmp_path)}})
        checkpoints = tmp_path / name / "checkpoints.jsonl"  # stopped before its final checkpoint
        checkpoints.write_text("".join(line + "\n" for line in checkpoints.read_text().splitlines()[:-1]))
        (tmp_path / name / "run.lock").write_bytes(lock(pid))
    rows = {row.split()[0]: row.split() for row in invoke("list", "--root", tmp_path)[1].splitlines()[1:]}
    assert rows["live"][3] == "running" and rows["dead"][3] == "incomplete"


def test_list_root_defaults_to_tinkex_log_dir(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKEX_LOG_DIR", str(root))
    code, out, _ = invoke("list")
    assert code == 0 and f"\n{RL} " in out
    code, out, _ = invoke("show", SL)  # a run named relative to the root
    assert code == 0 and f"run: {root / SL}" in out


def test_list_empty_and_missing_roots(root: Path) -> None:
    assert invoke("list", "--root", root / "empty")[:2] == (0, f"no run folders under {root / 'empty'}\n")
    assert_one_line_error(*invoke("list", "--root", root / "nope"), str(root / "nope"), "TINKEX_LOG_DIR")


def test_show_prints_config_manifest_checkpoints_metrics_and_evals(root: Path) -> None:
    code, out, err = invoke("show", root / SL)
    assert code == 0, err
    for line in ("recipe: sl_basic", "status: finished (steps 4/4, last train_mean_nll=", "manifest: test",
                 f"  blob_store: local (root={root})", "  training_client: noop (seed=0)", "config:",
                 "  batch_size: 16", "  eval_every: 2", f"  log_path: {SL}", "  train_size: null",
                 "checkpoints: 3", "last metrics (train.step, step 4):", "  total_steps: 4", "evals: 3 rows"):
        assert line in out, line
    checkpoints = [line.split() for line in out.split("checkpoints: 3\n")[1].splitlines()[:4]]
    assert [row[:3] for row in checkpoints] == [
        ["step", "name", "final"], ["2", "000002", "no"], ["4", "000004", "no"], ["4", "final", "yes"]]
    assert checkpoints[3][3].startswith("noop://")
    rows = [json.loads(line) for line in (root / SL / "metrics.jsonl").read_text().splitlines()]
    nll = [row["test_mean_nll"] for row in rows if "test_mean_nll" in row]
    assert f"  test_mean_nll: {nll[0]:.6g} (step 0) -> {nll[-1]:.6g} (step 4), min {min(nll):.6g}" in out


def test_compare_writes_one_html_chart_with_every_run(root: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "nll.html"
    code, out, err = invoke("compare", root / SL, root / SL_CUT, "--out", out_file)
    assert code == 0, err
    assert out == f"{out_file}\n"
    page = out_file.read_text()
    assert page.count("<svg") == 1 and page.count("<polyline") == 2 and "train_mean_nll" in page
    assert SL in page and SL_CUT in page


def test_compare_another_metric_and_default_file_name(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("compare", root / SL, root / RL, "--metric", "learning_rate")
    assert code == 0, err
    written = Path(out.strip())
    assert written.parent == root and written.name.startswith("compare-") and not list(tmp_path.iterdir())
    page = written.read_text()
    assert SL in page and RL in page and "<svg" in page
    written.unlink()


def test_plot_one_rl_run_by_reward(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("plot", RL, "--root", root, "--metric", "reward_mean")
    assert code == 0, err
    assert out == f"{root / RL / 'plot-reward_mean.html'}\n"
    page = (root / RL / "plot-reward_mean.html").read_text()
    rows = (root / RL / "metrics.jsonl").read_text().splitlines()
    rewards = [row["reward_mean"] for row in map(json.loads, rows) if row["event"] == "train.step"]
    assert "<svg" in page and page.count("<circle") == len(rewards) == 3
    assert f"last {rewards[-1]:.4g} at step 3" in page and not list(tmp_path.iterdir())
    (root / RL / "plot-reward_mean.html").unlink()


def test_plot_svg_and_png_without_matplotlib(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, _ = invoke("plot", root / SL, "--out", tmp_path / "nll.svg")
    assert code == 0 and (tmp_path / "nll.svg").read_text().startswith("<svg xmlns=")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as when it is not installed
    assert_one_line_error(*invoke("plot", root / SL, "--out", tmp_path / "nll.png"), "matplotlib", "nll.html")
    assert_one_line_error(*invoke("plot", root / SL, "--out", tmp_path / "nll.txt"), ".html, .svg, .png")


def test_unknown_metric_names_the_run_and_its_metrics(root: Path) -> None:
    code, out, err = invoke("compare", root / SL, root / RL, "--metric", "reward_mean")
    assert_one_line_error(code, out, err, f"{root / SL} has no metric 'reward_mean'", "train_mean_nll",
                          "test_mean_nll", "learning_rate")


def test_no_shared_loss_metric_lists_what_runs_share(root: Path) -> None:
    code, out, err = invoke("compare", root / SL, root / RL)
    assert_one_line_error(code, out, err, "no loss-like metric", "--metric", "learning_rate")
    assert "train_mean_nll," not in err.split("share:")[1]


@pytest.mark.parametrize("command", ["show", "plot", "compare"])
def test_not_a_run_folder(root: Path, command: str) -> None:
    assert_one_line_error(*invoke(command, root / "sl_basic"), f"{root / 'sl_basic'} is not a run folder",
                          "spec.json or metrics.jsonl", "holds 2 run folder(s)")
    assert_one_line_error(*invoke(command, root / "nope"), f"no such directory: {root / 'nope'}")
    assert_one_line_error(*invoke(command, root / SL / "spec.json"), "is not a directory")


def test_the_sub_app_imports_only_typer() -> None:
    heavy = ["tinkex_cookbook.runs", "tinkex_cookbook.pipeline", "tinkex_cookbook.runtime", "rich.table"]
    code = f"import sys, tinkex_cookbook.cli_runs; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parents[1]).stdout
    assert loaded == "[]\n"


def test_list_and_show_read_runs_in_the_prod_manifests_s3_bucket(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """A real run written to S3 (moto on 127.0.0.1), browsed through the manifest's blob store alone."""
    from tests.adapters.conftest import BUCKET, FAKE_CREDENTIALS, moto_server

    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with moto_server() as endpoint:
        prefix = f"browse-{time.monotonic_ns()}"
        s3 = {"adapter": "s3", "bucket": BUCKET, "prefix": prefix, "endpoint_url": endpoint}
        Runtime.run(SlBasic, {"log_path": "team/sl", "save_every": 2, "eval_every": 0}, manifest="test",
                    ports={"blob_store": s3})
        for name, value in {"TINKEX_S3_BUCKET": BUCKET, "TINKEX_S3_PREFIX": prefix,
                            "TINKEX_S3_ENDPOINT_URL": endpoint, "TINKER_API_KEY": "tml-fake",
                            "OPENAI_API_KEY": "sk-fake"}.items():
            monkeypatch.setenv(name, value)
        code, out, err = invoke("list", "--manifest", "prod")
        assert code == 0, err
        _header, row = out.splitlines()
        assert row.split()[:5] == ["team/sl", "sl_basic", "test", "finished", "4/4"]
        code, out, err = invoke("show", "team/sl", "--manifest", "prod")
        assert code == 0, err
        assert f"run: s3://{BUCKET}/{prefix}/team/sl" in out and "checkpoints: 3" in out
        code, again, err = invoke("show", f"s3://{BUCKET}/{prefix}/team/sl", "--manifest", "prod")
        assert code == 0 and again == out, err  # the URI the run printed names the same run
        assert_one_line_error(*invoke("show", "team", "--manifest", "prod"), "team is not a run folder",
                              "e.g. team/sl")
        code, out, err = invoke("plot", "team/sl", "--manifest", "prod", "--out", tmp_path / "sl.svg")
        assert code == 0 and (tmp_path / "sl.svg").read_text().startswith("<svg"), err


@pytest.fixture
def lr_runs(root: Path, tmp_path: Path) -> Path:
    """Three copies of SL under a new root: two with learning_rate 1e-4 (one in another folder) and one 3e-4."""
    lr_root = tmp_path / "lr"
    for name, rate in (("a", 1e-4), ("b", 3e-4), ("c/a", 1e-4)):
        shutil.copytree(root / SL, lr_root / name)
        config = json.loads((lr_root / name / "config.json").read_text())
        (lr_root / name / "config.json").write_text(json.dumps({**config, "learning_rate": rate, "log_path": name}))
    return lr_root


def series_labels(page: str) -> list[str]:
    return list(json.loads(page.split("id='series'>")[1].split("</script>")[0].replace("&quot;", '"'))["series"])


def test_compare_names_each_run_by_the_config_values_that_differ(lr_runs: Path, tmp_path: Path) -> None:
    code, _, err = invoke("compare", "a", "b", "--root", lr_runs, "--out", tmp_path / "lr.html")
    assert code == 0, err
    page = (tmp_path / "lr.html").read_text()
    assert series_labels(page) == ["learning_rate=1e-4", "learning_rate=3e-4"]  # log_path differs too: left out
    assert "<title>learning_rate=1e-4</title>" in page
    code, _, err = invoke("compare", "a", "b", "c/a", "--root", lr_runs, "--out", tmp_path / "three.html")
    assert code == 0, err
    assert series_labels((tmp_path / "three.html").read_text()) == [
        "learning_rate=1e-4 (a)", "learning_rate=3e-4", "learning_rate=1e-4 (c/a)"]


def test_compare_of_runs_with_one_config_names_them_by_folder(root: Path, tmp_path: Path) -> None:
    code, _, err = invoke("compare", SL, SL_CUT, "--root", root, "--out", tmp_path / "same.html")
    assert code == 0, err
    assert series_labels((tmp_path / "same.html").read_text()) == [SL, SL_CUT]


def test_compare_writes_into_the_root_the_runs_are_in_and_prints_it(
    lr_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    code, out, err = invoke("compare", "a", "b", "--root", lr_runs)
    assert code == 0, err
    written = Path(out.strip())
    assert written.parent == lr_runs and re.fullmatch(r"compare-\d{8}-\d{6}\.html", written.name)
    assert "learning_rate=3e-4" in written.read_text() and not list(workdir.iterdir())
    written.unlink()
    code, out, err = invoke("compare", lr_runs / "c" / "a", lr_runs / "b")  # paths outside the default root
    assert code == 0, err
    assert Path(out.strip()).parent == lr_runs and not list(workdir.iterdir())


def test_plot_writes_into_the_run_folder_or_to_out(lr_runs: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("plot", "c/a", "--root", lr_runs, "--metric", "test_mean_nll")
    assert code == 0, err
    assert out == f"{lr_runs / 'c' / 'a' / 'plot-test_mean_nll.html'}\n"
    page = (lr_runs / "c" / "a" / "plot-test_mean_nll.html").read_text()
    assert "test_mean_nll (nats/token)" in page and "<svg" in page
    code, out, err = invoke("plot", "a", "--root", lr_runs, "--out", "charts.svg")
    assert code == 0, err
    assert out == "charts.svg\n" and (tmp_path / "charts.svg").read_text().startswith("<svg")
    assert not list((tmp_path).glob(".*tmp"))  # written whole: no temp file left beside it


def test_compare_labels_leave_out_where_runs_logged_and_write_rates_alike() -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from tinkex_cookbook.runs import config_labels

    runs = [SimpleNamespace(config={"learning_rate": 1e-4, "tensorboard": True, "wandb_project": None}),
            SimpleNamespace(config={"learning_rate": 1e-3, "tensorboard": False, "wandb_project": "x"})]
    assert config_labels(cast(Any, runs), ["a", "b"]) == ["learning_rate=1e-4", "learning_rate=1e-3"]
