"""The command line: run, dry-run, run-spec, manifests list/show, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tinkex_cookbook.cli import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_run_on_test_manifest_with_overrides() -> None:
    code, out, _ = invoke("run", "sl_basic", "--manifest", "test", "batch_size=8", "save_every=2")
    assert code == 0, out
    assert "save_final" in out and '"total_steps": 8' in out


def test_dry_run_prints_the_plan() -> None:
    code, out, _ = invoke("run", "sl_basic", "-m", "test", "--dry-run")
    assert code == 0
    assert "for batch in range(state['num_batches'])" in out and "training_client   noop" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "sl_basic", "-m", "nope"), "unknown manifest 'nope'"),
        (("run", "sl_basic", "-m", "test", "nope=1"), "unknown config key 'nope'"),
        (("run", "sl_basic", "-m", "test", "batch_size"), "is not key=value"),
        (("run", "no_such_recipe", "-m", "test"), "valid recipes: 'distillation', 'dpo', 'math_rl', 'rl_basic', 'sl_basic'"),
        (("run", "sl_basic", "-m", "default"), "TINKER_API_KEY"),
        (("manifests", "show", "nope"), "unknown manifest 'nope'"),
    ],
)
def test_errors_are_one_line_with_exit_2(args: tuple[str, ...], expected: str) -> None:
    code, out, err = invoke(*args)
    assert code == 2
    assert expected in err and "Traceback" not in err + out


def test_run_spec_replays_a_saved_spec(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    manifest = tmp_path / "disk.yaml"
    manifest.write_text(f"extends: test\nports:\n  blob_store: {{adapter: local, root: {root}}}\n")
    code, out, _ = invoke("run", "sl_basic", "-m", str(manifest), "log_path=first")
    assert code == 0, out
    spec_file = root / "first" / "spec.json"
    code, out, _ = invoke("run-spec", str(spec_file), "-m", str(manifest))
    assert code == 0, out
    assert len((root / "first" / "checkpoints.jsonl").read_text().splitlines()) == 1  # finished: resumes to no-op


def test_manifests_list_names_every_shipped_manifest() -> None:
    code, out, _ = invoke("manifests", "list")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["default", "dev", "local", "prod", "test"]


def test_manifests_show_redacts_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", "tml-very-secret-marker")
    monkeypatch.setenv("HF_TOKEN", "hf-very-secret-marker")
    code, out, _ = invoke("manifests", "show", "prod")
    assert code == 0
    assert "very-secret-marker" not in out
    shown = json.loads(out)
    assert shown["manifest"]["ports"]["blob_store"]["adapter"] == "s3"
    assert shown["settings"]["tinker_api_key"] == "**********"


def test_progress_sink_tracks_steps_and_prints_milestones() -> None:
    import io

    from rich.console import Console

    from tinkex_cookbook import Runtime, SlBasic
    from tinkex_cookbook.pipeline.progress import ProgressSink

    out = io.StringIO()
    sink = ProgressSink(Console(file=out, force_terminal=False, width=120))
    Runtime.run(SlBasic, {"batch_size": 8, "save_every": 4}, manifest="test", sinks=[sink])
    text = out.getvalue()
    assert "train.checkpoint" in text and "8/8" in text and "tok/s" in text


def test_recipes_list_names_every_recipe() -> None:
    from tinkex_cookbook.recipes import recipe_names

    result = CliRunner().invoke(app, ["recipes", "list"])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()] == recipe_names()


def test_recipes_describe_lists_fields_stages_and_ports() -> None:
    result = CliRunner().invoke(app, ["recipes", "describe", "sl_basic"])
    assert result.exit_code == 0
    assert "learning_rate (float, default 1e-05)  peak Adam learning rate" in result.output
    assert "stages: load_dataset, init_session" in result.output
    assert "ports: blob_store, dataset_store, training_client" in result.output


@pytest.mark.parametrize("name", ["sl_basic", "rl_basic", "math_rl", "dpo", "distillation"])
def test_every_recipe_describes_itself(name: str) -> None:
    result = CliRunner().invoke(app, ["recipes", "describe", name])
    assert result.exit_code == 0, result.output
    assert "Optional[" not in result.output and "Annotated[" not in result.output
    assert "stages: " in result.output and "ports: " in result.output


def test_spec_prints_json_that_run_spec_replays(tmp_path: Path) -> None:
    from tinkex_cookbook import Experiment

    result = CliRunner().invoke(app, ["spec", "sl_basic", "batch_size=8", "log_path=replayed"])
    assert result.exit_code == 0
    spec = Experiment.from_json(result.output)
    assert spec.config["batch_size"] == 8
    (tmp_path / "spec.json").write_text(result.output)
    replay = CliRunner().invoke(app, ["run-spec", str(tmp_path / "spec.json"), "-m", "test"])
    assert replay.exit_code == 0 and "completed" in replay.output


def test_spec_and_describe_errors_are_one_line() -> None:
    for args in (["spec", "nope"], ["recipes", "describe", "nope"], ["spec", "sl_basic", "batch_size=0"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize(("recipe", "cfg", "headline"), [
    ("rl_basic", {"env": "digits", "renderer_name": "role_colon", "num_steps": 4, "batch_size": 2}, "reward"),
    ("dpo", {"renderer_name": "role_colon", "batch_size": 8}, "dpo loss"),
    ("distillation", {"teacher_model": "meta-llama/Llama-3.2-1B", "renderer_name": "role_colon",
                      "num_steps": 3, "batch_size": 2}, "teacher kl"),
])
def test_progress_shows_each_recipes_headline_metric(recipe: str, cfg: dict, headline: str) -> None:
    import io

    from rich.console import Console

    from tinkex_cookbook import Runtime
    from tinkex_cookbook.pipeline.progress import PlainProgressSink, ProgressSink

    bar, plain = io.StringIO(), io.StringIO()
    sinks = [ProgressSink(Console(file=bar, force_terminal=False, width=120)), PlainProgressSink(plain)]
    Runtime.run(recipe, cfg, manifest="test", sinks=sinks)
    assert headline in bar.getvalue()
    lines = plain.getvalue().splitlines()
    assert lines and all(line.startswith("step ") and headline in line for line in lines)


def test_piped_runs_print_a_line_every_tenth_of_the_run() -> None:
    result = CliRunner().invoke(app, ["run", "sl_basic", "-m", "test", "batch_size=2"])  # 32 steps
    assert result.exit_code == 0
    steps = [line.split()[1] for line in result.output.splitlines() if line.startswith("step ")]
    assert steps == [f"{n}/32" for n in (3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 32)]


def test_run_and_spec_take_a_config_file_under_the_overrides(tmp_path: Path) -> None:
    from tinkex_cookbook import Experiment

    (tmp_path / "run.yaml").write_text("batch_size: 4\nlearning_rate: 1e-4\n")
    config = ["--config", str(tmp_path / "run.yaml")]
    spec = CliRunner().invoke(app, ["spec", "sl_basic", *config, "batch_size=2"])
    assert spec.exit_code == 0, spec.output
    assert {k: Experiment.from_json(spec.output).config[k] for k in ("batch_size", "learning_rate")} == {
        "batch_size": 2, "learning_rate": 1e-4}
    plan = CliRunner().invoke(app, ["run", "sl_basic", "-m", "test", "--dry-run", *config])
    assert plan.exit_code == 0 and "save_final" in plan.output, plan.output
    nope = str(tmp_path / "nope.yaml")
    missing = CliRunner().invoke(app, ["run", "sl_basic", "-m", "test", "--config", nope])
    assert missing.exit_code == 2 and missing.output.strip() == f"error: config file {nope!r} does not exist"


def test_a_dry_run_needs_no_secret_but_names_each_missing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    code, out, err = invoke("run", "sl_basic", "-m", "default", "--dry-run")
    assert code == 0, err
    assert ("warning: needs TINKER_API_KEY (not set): a real run would fail; used by training_client (tinker)"
            in out.splitlines())
    assert "stages:" in out
    code, out, err = invoke("run", "sl_basic", "-m", "default")  # a real run still fails before any work
    assert code == 2 and "needs the environment variable TINKER_API_KEY, which is not set" in err


def test_a_dry_run_with_the_secret_set_warns_of_nothing_and_shows_no_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", "tml-dry-run-marker")
    code, out, _ = invoke("run", "sl_basic", "-m", "default", "--dry-run")
    assert code == 0
    assert "warning:" not in out and "tml-dry-run-marker" not in out
