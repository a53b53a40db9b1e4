"""A secret of the environment given as input, in every place an input goes, shows up nowhere.

Every command of the command line is found by walking the Typer app (a new command or option is swept
without being listed here), and run in process with ten secrets in the environment and
``TINKER_API_KEY``'s in each place it takes a value: each option, each positional argument, each
config key of each recipe as ``key=value`` and in a ``--config`` file, unknown and dotted keys,
``log_path``, ``env=``, and inside the files commands read (manifests, config files, specs, prompts).
Each attempt must fail with one line on stderr; no stdout, stderr, exception, file or file name under
the test's folder may hold any secret, nor its first or last 8 characters, base64 or hex
(``test_secrets.Sweep``). The library's entry points refuse the same values, and the scrubbing
streams the command line prints through are checked for what they must let through.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.reliability.test_secrets import MARKERS, TEST_CONFIGS, Sweep
from tinkex_cookbook import ConfigError, CookbookError, Experiment, Runtime
from tinkex_cookbook.cli import app
from tinkex_cookbook.cli_secrets import ScrubbingStream, argument_problem, scrubbed_output
from tinkex_cookbook.recipes import RECIPES, get_recipe
from tinkex_cookbook.secrets import REDACTED, environment_secrets, scrub

SECRET = MARKERS["TINKER_API_KEY"]
REFUSED = "holds the secret TINKER_API_KEY"
REPO = Path(__file__).resolve().parents[2]


# -- the commands and their inputs ------------------------------------------------------------------------


@cache
def cli() -> Any:
    """The app's click command, built once (typer builds it anew on every call otherwise)."""
    return typer.main.get_command(app)


def leaf_commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the app that runs (groups walked into), with the words that name it."""
    command = command if command is not None else cli()
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from leaf_commands(sub, (*path, name))


def takes_value(param: Any) -> bool:
    return param.param_type_name == "argument" or not (param.is_flag or param.count)


class Inputs:
    """Valid values for a command's required inputs, and the files that carry a secret inside them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "inputs"  # they hold the secret on purpose: not swept
        self.work = root / "work"
        self.files.mkdir()
        self.work.mkdir()
        self.manifest = self.write("disk.yaml", {"extends": "test", "ports": {
            "blob_store": {"adapter": "local", "root": str(self.work / "runs")}}})
        self.spec = self.write("spec.json", json.loads(Runtime.build_spec("sl_basic").to_json()))
        self.prompts = self.files / "prompts.jsonl"
        self.prompts.write_text('{"prompt": "hi"}\n')

    def write(self, name: str, data: Any) -> str:
        path = self.files / name
        path.write_text(json.dumps(data))
        return str(path)

    def base(self, name: str) -> str | list[str]:
        """A valid value of the input ``name`` (a generic word for inputs this test does not know)."""
        known: dict[str, str | list[str]] = {
            "recipe": "sl_basic", "manifest": self.manifest, "name": "test", "spec_file": self.spec,
            "prompts": str(self.prompts), "target": "some-run", "run_dir": "some-run", "run_dirs": ["some-run"],
            "out": str(self.work / "out"), "root": str(self.work / "runs"),
        }
        return known.get(name, "word")

    def manifests(self) -> list[str]:
        """Manifests holding the secret where an option names a folder, as an adapter name and as a port."""
        on_disk = {"adapter": "local", "root": str(self.work / "runs")}
        return [
            self.write("root.yaml", {"extends": "test", "ports": {
                "blob_store": {"adapter": "local", "root": str(self.work / f"runs-{SECRET}")}}}),
            self.write("data.yaml", {"extends": "test", "ports": {
                "blob_store": on_disk, "dataset_store": {"adapter": "local", "root": str(self.work / SECRET)}}}),
            self.write("adapter.yaml", {"extends": "test", "ports": {"blob_store": on_disk, "training_client": SECRET}}),
            self.write("port.yaml", {"extends": "test", "ports": {"blob_store": on_disk, SECRET: "noop"}}),
            self.write("option.yaml", {"extends": "test", "ports": {"blob_store": {**on_disk, SECRET: 1}}}),
        ]

    def specs(self) -> list[str]:
        """Saved specs holding the secret in a config value, as a config key, in the name, as log_path."""
        spec = json.loads(Runtime.build_spec("sl_basic").to_json())
        variants = [
            {**spec, "config": {**spec["config"], "model_name": SECRET}},
            {**spec, "config": {**spec["config"], SECRET: 1}},
            {**spec, "config": {**spec["config"], "log_path": f"runs/{SECRET}"}},
            {**spec, "name": f"sl_basic:{SECRET}"},
        ]
        return [self.write(f"spec-{index}.json", data) for index, data in enumerate(variants)]

    def prompt_files(self) -> list[str]:
        files = []
        for index, line in enumerate([{"prompt": f"say {SECRET}"}, {"messages": [{"role": "user", "content": SECRET}]},
                                      {SECRET: "hi"}]):
            path = self.files / f"prompts-{index}.jsonl"
            path.write_text(json.dumps(line) + "\n")
            files.append(str(path))
        return files

    def config_files(self, cfg: dict[str, Any], name: str) -> str:
        return self.write(f"{name}.json", cfg)


def command_line(path: tuple[str, ...], command: Any, values: dict[str, Any], inputs: Inputs) -> list[str]:
    """``path`` and its inputs: those in ``values``, every other required one at a valid value, and the
    safe manifest wherever a manifest is taken (no command reaches a real backend)."""
    args, tail = list(path), []
    for param in command.params:
        if param.name in values:
            value = values[param.name]
        elif param.required or param.name == "manifest":
            value = inputs.base(param.name)
        else:
            continue
        words = value if isinstance(value, list) else [value]
        if param.param_type_name == "argument":
            tail.extend(words)
        else:
            for word in words:
                args += [param.opts[0], word]
    return [*args, *tail]


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Inputs:
    for name, value in MARKERS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    monkeypatch.setattr("typer.testing._get_command", lambda _: cli())  # hundreds of invocations: build it once
    inputs = Inputs(tmp_path)
    monkeypatch.chdir(inputs.work)
    monkeypatch.setenv("HOME", str(inputs.work))
    monkeypatch.setenv("TINKEX_LOG_DIR", str(inputs.work / "runs"))
    return inputs


def attempt(sweep: Sweep, args: list[str], *, refused_argument: bool = False) -> Any:
    """One command in process: it must fail (a refused argument: saying so, naming the variable), and all it
    printed or raised is kept for the sweep."""
    result = CliRunner().invoke(app, args)
    label = " ".join(args)
    sweep.text(f"`{label}` stdout", result.stdout)
    sweep.text(f"`{label}` stderr", result.stderr)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        sweep.error(f"`{label}` exception", result.exception)
    assert result.exit_code != 0, (label, result.output[-1500:])
    if refused_argument:
        assert result.exit_code == 2 and REFUSED in result.stderr, (label, result.output[-1500:])
    return result


def sweep_folder(sweep: Sweep, root: Path) -> int:
    """Every file's bytes and every file and folder's name under ``root``."""
    names = sorted(root.rglob("*"))
    for path in names:
        sweep.text(f"name {path.relative_to(root)}", str(path.relative_to(root)))
    sweep.tree(str(root.name), root)
    return len(names)


# -- every command, the secret in every place it takes a value ------------------------------------------


def test_every_command_refuses_the_secret_in_every_argument(secrets_in_env: Inputs) -> None:
    inputs, sweep, seen = secrets_in_env, Sweep(), set()
    for path, command in leaf_commands():
        for param in filter(takes_value, command.params):
            values = [[SECRET], [f"log_path={SECRET}"], [f"{SECRET}=1"]] if param.nargs == -1 else [
                f"runs/{SECRET}.yaml"]
            for value in values:
                attempt(sweep, command_line(path, command, {param.name: value}, inputs), refused_argument=True)
                if param.opts[0].startswith("--") and isinstance(value, str):  # --option=VALUE
                    attempt(sweep, [*command_line(path, command, {}, inputs), f"{param.opts[0]}={value}"],
                            refused_argument=True)
            seen.add(path)
    assert {("run",), ("spec",), ("run-spec",), ("manifests", "show"), ("recipes", "describe"), ("serve",),
            ("runs", "compare"), ("eval",), ("chat",)} <= seen
    sweep_folder(sweep, inputs.work)
    sweep.assert_clean(at_least=100)


def test_every_command_that_reads_a_file_refuses_the_secret_inside_it(secrets_in_env: Inputs) -> None:
    """Manifests (wherever a command takes ``--manifest``), specs, config files and prompts holding the
    secret; a secret that names a folder (a blob store's root) never becomes a folder."""
    inputs, sweep = secrets_in_env, Sweep()
    carriers = {"manifest": inputs.manifests(), "spec_file": inputs.specs(), "prompts": inputs.prompt_files(),
                "config": [inputs.config_files({"model_name": SECRET}, "model"),
                           inputs.config_files({"log_path": SECRET}, "log-path")]}
    tried = 0
    for path, command in leaf_commands():
        names = {param.name for param in command.params}
        for name, files in carriers.items():
            for file in files if name in names else []:
                result = CliRunner().invoke(app, command_line(path, command, {name: file}, inputs))
                sweep.text(f"`{path} {name}={file}` output", result.output)
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    sweep.error(f"`{path}` exception", result.exception)
                if path in {("run",), ("spec",), ("run-spec",)}:
                    assert result.exit_code == 2 and "error: " in result.stderr, (path, file, result.output)
                tried += 1
    assert tried >= 30
    assert not [p for p in inputs.work.rglob("*") if "runs-" in p.name], "a folder was named by a secret root"
    sweep_folder(sweep, inputs.work)
    sweep.assert_clean(at_least=30)


@pytest.mark.parametrize("recipe", sorted(RECIPES.names()))
def test_every_config_key_of_every_recipe_refuses_the_secret(recipe: str, secrets_in_env: Inputs) -> None:
    """Each key as ``key=SECRET`` on the command line, in a ``--config`` file, and in a saved spec's config;
    unknown, dotted and nested keys too. None reaches a spec, a run folder or its name."""
    inputs, sweep = secrets_in_env, Sweep()
    fields = sorted(get_recipe(recipe).Config.model_fields)
    spec = json.loads(Runtime.build_spec(recipe, TEST_CONFIGS.get(recipe, {})).to_json())
    attempts = [{field: SECRET} for field in fields] + [
        {SECRET: 1}, {f"loss_fn_config.{SECRET}": 1}, {"loss_fn_config": {"x": SECRET}}, {"mixture": [{"a": SECRET}]},
        {"log_path": f"runs/{SECRET}"}, {"env": SECRET}, {"evals": [SECRET]},
    ]
    for index, cfg in enumerate(attempts):
        ((key, value),) = cfg.items()
        attempt(sweep, ["spec", recipe, f"{key}={json.dumps(value) if not isinstance(value, str) else value}"],
                refused_argument=True)
        config_file = inputs.config_files(cfg, f"{recipe}-{index}")
        for args in (["spec", recipe, "--config", config_file],
                     ["run", recipe, "-m", inputs.manifest, "--config", config_file]):
            result = attempt(sweep, args)
            assert "holds the secret TINKER_API_KEY" in result.stderr, (args, result.stderr)
        spec_file = inputs.write(f"{recipe}-spec-{index}.json", {**spec, "config": {**spec["config"], **cfg}})
        result = attempt(sweep, ["run-spec", spec_file, "-m", inputs.manifest])
        assert "holds the secret TINKER_API_KEY" in result.stderr or "not an experiment spec" in result.stderr
    assert not (inputs.work / "runs").exists() or not any((inputs.work / "runs").iterdir())
    sweep_folder(sweep, inputs.work)
    sweep.assert_clean(at_least=4 * len(fields))


# -- the library refuses the same values -------------------------------------------------------------------


def test_the_library_refuses_a_secret_in_configs_specs_manifests_and_eval_arguments(secrets_in_env: Inputs) -> None:
    inputs, sweep = secrets_in_env, Sweep()
    spec = Runtime.build_spec("sl_basic")
    root_manifest = inputs.manifests()[0]
    calls = {
        "a config value": lambda: Runtime.run("sl_basic", {"model_name": SECRET}, manifest=inputs.manifest),
        "an override": lambda: Runtime.run("sl_basic", [f"log_path=runs/{SECRET}"], manifest=inputs.manifest),
        "a bare override": lambda: Runtime.run("sl_basic", [SECRET], manifest=inputs.manifest),
        "a config key": lambda: Runtime.build_spec("rl_basic", {SECRET: 1}),
        "a config file": lambda: Runtime.run("sl_basic", Path(inputs.config_files({"env": SECRET}, "lib")),
                                             manifest=inputs.manifest),
        "a spec": lambda: Runtime.run_spec(spec.with_config(model_name=SECRET), manifest=inputs.manifest),
        "a dry run": lambda: Runtime.run("sl_basic", {"dataset": SECRET}, manifest=inputs.manifest, dry_run=True,
                                         out=io.StringIO()),
        "an evaluation": lambda: Runtime.eval("sl_basic", {"log_path": SECRET}, manifest=inputs.manifest),
        "eval's model": lambda: Runtime.eval(tasks=["chitchat_nll"], model=SECRET, manifest=inputs.manifest),
        "eval's folder": lambda: Runtime.eval(tasks=["chitchat_nll"], model="x", eval_dir=SECRET,
                                              manifest=inputs.manifest),
        "a manifest's root": lambda: Runtime.run("sl_basic", {}, manifest=root_manifest),
        "open on it": lambda: Runtime.open(root_manifest).__enter__(),
    }
    for label, call in calls.items():
        with pytest.raises(ConfigError, match="holds the secret TINKER_API_KEY") as caught:
            call()
        sweep.error(label, caught.value, hidden=True)
    for label, call in {
        "a recipe name": lambda: Runtime.run(SECRET, {}, manifest=inputs.manifest),
        "a manifest name": lambda: Runtime.resolve_manifest(SECRET),
        "an adapter name": lambda: Runtime.resolve_manifest(inputs.manifests()[2]),
    }.items():
        with pytest.raises(CookbookError) as failed:
            call()
        assert REDACTED in str(failed.value), (label, failed.value)
        sweep.error(label, failed.value, hidden=True)
    sweep_folder(sweep, inputs.work)
    sweep.assert_clean(at_least=15)


def test_a_secret_in_a_urls_credentials_is_let_through_and_scrubbed(secrets_in_env: Inputs) -> None:
    """``http://user:KEY@host`` names no file, so the manifest loads; what shows it is scrubbed."""
    llm = {"adapter": "openai_compatible", "base_url": f"http://user:{MARKERS['TINKEX_LLM_API_KEY']}@127.0.0.1:9/v1"}
    manifest = secrets_in_env.write("url.yaml", {"extends": "test", "ports": {"llm_client": llm}})
    resolved = Runtime.resolve_manifest(manifest)
    assert MARKERS["TINKEX_LLM_API_KEY"] in resolved.ports["llm_client"].options.model_dump_json()
    for args in (["manifests", "show", manifest], ["run", "sl_basic", "-m", manifest, "--dry-run"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0 and f"user:{REDACTED}@127.0.0.1" in result.stdout, result.output
    Runtime.run("sl_basic", {"log_path": "url"}, manifest=manifest, ports={"blob_store": {
        "adapter": "local", "root": str(secrets_in_env.work / "runs")}})
    saved = (secrets_in_env.work / "runs" / "url" / "manifest.json").read_text()
    assert f"user:{REDACTED}@127.0.0.1" in saved
    sweep = Sweep()
    sweep_folder(sweep, secrets_in_env.work)
    sweep.assert_clean(at_least=5)


# -- the output streams --------------------------------------------------------------------------------------


def test_normal_output_is_unchanged_by_the_scrub(secrets_in_env: Inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    args = [["recipes", "describe", "rl_basic"], ["run", "sl_basic", "-m", "test", "--dry-run"], ["manifests", "list"],
            ["spec", "dpo", "batch_size=4"]]
    with_secrets = [CliRunner().invoke(app, a).output for a in args]
    for name in MARKERS:
        monkeypatch.delenv(name)
    assert [CliRunner().invoke(app, a).output for a in args] == with_secrets


def test_a_value_shorter_than_a_key_is_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A placeholder such as ``tml-x`` (or moto's ``test``) would mangle every word holding it."""
    monkeypatch.setenv("TINKER_API_KEY", "tml-x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    assert environment_secrets() == {}
    result = CliRunner().invoke(app, ["spec", "sl_basic", "log_path=tml-x/test"])
    assert result.exit_code == 0 and '"log_path": "tml-x/test"' in result.stdout


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "tml-", "Kq7", "tml-Kq7Z", SECRET, "\n", "**", "x tml-Kq", "W2pX9r4 "]),
                max_size=12), st.data())
def test_the_stream_hides_a_secret_however_the_writes_split_it(pieces: list[str], data: st.DataObject) -> None:
    text = "".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    out = io.StringIO()
    stream = ScrubbingStream(out, [SECRET])
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        stream.write(text[start:end])
        if data.draw(st.booleans()):
            stream.flush()
        assert SECRET not in out.getvalue()
    stream.drain()
    assert out.getvalue() == scrub(text, [SECRET])


def test_the_stream_is_a_text_stream_to_click_and_rich() -> None:
    out = io.StringIO()
    stream = ScrubbingStream(out, [SECRET])
    with pytest.raises(TypeError):
        stream.write(b"")  # type: ignore[arg-type]
    assert not hasattr(stream, "buffer") and stream.isatty() is False and stream.getvalue() == ""


def test_log_records_made_during_a_command_are_scrubbed(secrets_in_env: Inputs) -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("tinkex_cookbook.sweep")
    logger.addHandler(handler)
    try:
        with scrubbed_output(list(environment_secrets())):
            logger.warning("key %s and %s", SECRET, MARKERS["AWS_SECRET_ACCESS_KEY"])
    finally:
        logger.removeHandler(handler)
    assert records == [f"key {REDACTED} and {REDACTED}"]


def test_a_traceback_the_process_prints_as_it_exits_is_scrubbed(secrets_in_env: Inputs) -> None:
    code = ("import os, warnings; from tinkex_cookbook.cli_secrets import install_scrubbed_output; "
            "install_scrubbed_output(); key = os.environ['TINKER_API_KEY']; print(key[:6], end='', flush=True); "
            "print(key[6:]); warnings.warn(key); raise RuntimeError(key)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 1 and b"RuntimeError: " + REDACTED.encode() in done.stderr
    assert done.stdout == REDACTED.encode() + b"\n"
    sweep = Sweep()
    sweep.text("stdout", done.stdout)
    sweep.text("stderr", done.stderr)
    sweep.assert_clean(at_least=2)


def test_a_refused_argument_is_named_by_its_option_or_position() -> None:
    named = {SECRET: "TINKER_API_KEY"}
    options = {"--manifest", "-m", "--log-path"}
    assert argument_problem(["run", "sl_basic", f"model_name={SECRET}"], named, options) == (
        "the value of model_name holds the secret TINKER_API_KEY; secrets are read from the environment only: "
        "pass a name, not a key")
    for args, place in ((["run", "sl_basic", "-m", SECRET], "the value of -m "),
                        (["run-spec", "f", f"--log-path={SECRET}"], "the value of --log-path "),
                        (["run", "sl_basic", f"{SECRET}=1"], "argument 3 "), (["run", "--dry-run", SECRET], "argument 3 ")):
        assert (argument_problem(args, named, options) or "").startswith(place), args
    assert argument_problem(["run", "sl_basic", "model_name=SmolLM2"], named, options) is None
    for problem in (argument_problem([SECRET], named), argument_problem([f"a={SECRET}"], named)):
        assert problem is not None and SECRET not in problem and SECRET[:8] not in problem


def test_a_spec_printed_with_secrets_set_replays(secrets_in_env: Inputs) -> None:
    """The guard leaves ordinary specs alone: ``spec`` then ``run-spec`` on them still works."""
    result = CliRunner().invoke(app, ["spec", "sl_basic", "batch_size=8"])
    assert result.exit_code == 0
    spec_file = Path(secrets_in_env.write("printed.json", json.loads(result.stdout)))
    assert Experiment.from_json(spec_file.read_bytes()).config["batch_size"] == 8
    replay = CliRunner().invoke(app, ["run-spec", str(spec_file), "-m", secrets_in_env.manifest])
    assert replay.exit_code == 0, replay.output
