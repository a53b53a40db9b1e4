"""The composition root: recipe + config + manifest -> a finished run.

``Runtime.run`` builds the recipe's spec, resolves the manifest (named, from
``TINKEX_MANIFEST``, else ``default``), checks every bound adapter can be
built (names, options, extras, secrets) before any work, wires the container,
takes the run folder's lease (``lease.py``: one run per ``log_path`` at a time),
and hands the spec to the runner. ``Runtime.open`` gives scripts and commands
the same adapters as typed ``Ports``, built on first read and closed when the
``with`` block ends. It is the only place that knows the container, the
settings and the registries all at once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, overload

from pydantic import BaseModel

from tinkex_cookbook.errors import (
    ConfigError,
    CookbookError,
    RunFolderInUseError,
    RunStoppedError,
    UnknownPortError,
    choices,
)
from tinkex_cookbook.pipeline import (
    STAGES,
    BlobLinesSink,
    ConsoleSink,
    Context,
    Event,
    MemorySink,
    Runner,
    Sink,
    Telemetry,
)
from tinkex_cookbook.pipeline.context import PortLookup
from tinkex_cookbook.pipeline.stopping import StopRequest
from tinkex_cookbook.pipeline.telemetry import RunAwareSink
from tinkex_cookbook.ports import PORT_PROTOCOLS, BlobStore, Ports
from tinkex_cookbook.recipes import Recipe, get_recipe, parse_config, parse_overrides
from tinkex_cookbook.recipes.base import timestamped
from tinkex_cookbook.recipes.sink_keys import SINK_KEYS
from tinkex_cookbook.run_folder import (
    CHECKPOINTS,
    CONFIG,
    CheckpointPlacement,
    RunFolder,
    config_json,
    folder_key,
)
from tinkex_cookbook.runtime.builtin_adapters import ADAPTERS
from tinkex_cookbook.runtime.config_file import load_config_file
from tinkex_cookbook.runtime.container import build_container
from tinkex_cookbook.runtime.lease import RunLease
from tinkex_cookbook.runtime.manifest import Manifest, ManifestLoader
from tinkex_cookbook.runtime.options import PortsInput, RunFields, RunOptions
from tinkex_cookbook.runtime.registry import AdapterRegistry
from tinkex_cookbook.runtime.settings import Settings
from tinkex_cookbook.runtime.signals import stop_on_signals
from tinkex_cookbook.runtime.sinks import config_sinks, sink_artifacts
from tinkex_cookbook.secrets import environment_secrets, refuse_secrets, scrub
from tinkex_cookbook.spec import Experiment, LoopSpec, Node
from tinkex_cookbook.train.checkpoints import load_checkpoints

if TYPE_CHECKING:
    from tinkex_cookbook.eval.suite import EvalReport
    from tinkex_cookbook.eval.tasks import TaskInput

T = TypeVar("T")
ConfigInput = BaseModel | Mapping[str, Any] | Sequence[str] | os.PathLike[str] | None
"""A config model, a mapping (dotted keys set one key inside a mapping field), ``key=value`` strings, or the
path of a YAML or JSON config file."""


@dataclass
class RunResult:
    """What a run did: stages completed, final state, metrics, where its files are."""

    experiment: Experiment
    manifest: Manifest
    completed_stages: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    plan: str = ""
    already_finished: bool = False
    """The run folder held a finished run: it resumed past its last step (no step ran); ``state`` names
    its final checkpoint."""

    @property
    def event_names(self) -> list[str]:
        return [event.name for event in self.events]


class _ContainerAdapters:
    """What ``Ports`` reads through: the container's adapter for a port, after checking (once) that the
    adapter and those it is built on have their secrets and extras; nothing after the ports are closed."""

    def __init__(self, container: Any, check: Callable[[str], None]) -> None:
        self._container = container
        self._check = check
        self._checked: set[str] = set()
        self.closed = False

    def __call__(self, port: str) -> object:
        if self.closed:
            raise ConfigError(f"port {port!r} was read after its ports were closed: read ports inside the "
                              "`with Runtime.open(...) as ports:` block that opened them")
        if port not in self._checked:
            self._check(port)
            self._checked.add(port)
        return getattr(self._container, port)()


def _split_overrides(ports: PortsInput) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate manifest-style overrides (names, option dicts) from ready-made adapter objects."""
    layer, instances = {}, {}
    for port, value in (ports or {}).items():
        if isinstance(value, str | Mapping):
            layer[port] = value
        else:
            instances[port] = value
    return layer, instances


def _check_instances(instances: Mapping[str, Any]) -> None:
    for port, adapter in instances.items():
        protocol = PORT_PROTOCOLS.get(port)
        if protocol is None:
            raise UnknownPortError(f"unknown port {port!r}; valid ports: {choices(PORT_PROTOCOLS)}")
        if not isinstance(adapter, protocol):
            raise TypeError(f"ports={{{port!r}: ...}} got {type(adapter).__name__}, not a {protocol.__name__}")


def _scrub(exc: BaseException, secrets: Sequence[str]) -> BaseException | None:
    """A copy of a cookbook error with secret values replaced, or None if it held none."""
    text = str(exc)
    clean = scrub(text, secrets)
    if clean == text or not isinstance(exc, CookbookError):
        return None
    try:
        return type(exc)(clean)
    except TypeError:  # an error type that takes more than its message
        return CookbookError(clean)


def _without_secrets(call: Callable[[], T], secrets: Sequence[str]) -> T:
    """``call()``; a cookbook error it raises that quotes a secret is raised as a scrubbed copy of its type."""
    try:
        return call()
    except CookbookError as exc:
        scrubbed = _scrub(exc, secrets)
        if scrubbed is None:
            raise
        traceback = exc.__traceback__
    # raised outside the handler: the original error (secret and all) is not kept as its __context__
    raise scrubbed.with_traceback(traceback) from None


def refuse_config_secrets(cfg: BaseModel | Mapping[str, Any] | Sequence[str] | None, named: Mapping[str, str]) -> None:
    """A ``ConfigError`` naming the key (and the variable, never the value) if a config input holds a secret:
    it would reach the spec, the run folder's name and every file the run writes."""
    if cfg is None or isinstance(cfg, BaseModel | Mapping):
        refuse_secrets(cfg, named, "the config")
        return
    for pair in cfg:
        key, sep, value = str(pair).partition("=")
        refuse_secrets({key.strip(): value} if sep else pair, named, "the config" if sep else "a config override")


def describe_plan(spec: Experiment, manifest: Manifest, warnings: Sequence[str] = ()) -> str:
    """The dry run's plan: the manifest's bindings, then ``warnings`` (e.g. unset secrets), then the stages."""
    lines = [f"experiment {spec.name} (recipe {spec.recipe})",
             f"manifest {manifest.name} from {' < '.join(manifest.sources)}"]
    for port, binding in manifest.ports.items():
        options = binding.options.model_dump(mode="json", exclude_none=True)
        lines.append(f"  {port:<17} {binding.adapter} {options if options else ''}".rstrip())
    lines.extend(f"warning: {warning}" for warning in warnings)
    lines.append("stages:")
    lines.extend(_plan_nodes(spec.stages, "  "))
    return "\n".join(lines)


def _plan_nodes(nodes: Sequence[Node], indent: str) -> list[str]:
    lines = []
    for node in nodes:
        if isinstance(node, LoopSpec):
            times = node.count if node.count is not None else f"state[{node.count_key!r}]"
            lines.append(f"{indent}for {node.var} in range({times}):  # {node.name}")
            lines.extend(_plan_nodes(node.body, indent + "  "))
            if node.on_stop:
                lines.append(f"{indent}  on stop: {', '.join(n.name for n in node.on_stop)}")
        else:
            lines.append(f"{indent}{node.name}" + (f"  (every {node.every} {node.every_key}s)" if node.every else ""))
    return lines


class Runtime:
    """Entry point: ``Runtime.run(SlBasic, {"learning_rate": 1e-4}, manifest="local")``."""

    registry: AdapterRegistry = ADAPTERS

    @classmethod
    def build_spec(cls, recipe: str | type[Recipe], cfg: ConfigInput = None, *,
                   settings: Settings | None = None) -> Experiment:
        """``recipe``'s spec for ``cfg``; a config that holds a secret (of ``settings``, else of the
        environment) is a ``ConfigError`` naming its key."""
        named = settings.named_secrets() if settings is not None else environment_secrets()

        def build() -> Experiment:
            recipe_cls = get_recipe(recipe)
            config = _config_input(cfg)
            refuse_config_secrets(config, named)
            return recipe_cls.build_spec(parse_config(recipe_cls.Config, config))

        return _without_secrets(build, list(named))

    @classmethod
    def resolve_manifest(
        cls, manifest: str | None = None, ports: PortsInput = None, settings: Settings | None = None
    ) -> Manifest:
        """The merged, validated manifest, after checking each bound adapter can be built here."""
        return cls._resolve_checked(manifest, ports, settings or Settings())[0]

    @classmethod
    def _resolve_checked(
        cls, manifest: str | None, ports: PortsInput, settings: Settings, *, secrets: bool = True
    ) -> tuple[Manifest, list[str]]:
        """The checked manifest and, when ``secrets`` is off (a dry run, which needs none), a line for
        each secret its adapters need that is unset, instead of failing on the first."""
        resolved, instances = cls._resolve(manifest, ports, settings)
        unbuilt = [port for port in resolved.ports if port not in instances]
        cls._check_buildable(resolved, unbuilt, settings, secrets=secrets)
        return resolved, ([] if secrets else cls._missing_secrets(resolved, unbuilt, settings))

    @classmethod
    def _resolve(
        cls, manifest: str | None, ports: PortsInput, settings: Settings
    ) -> tuple[Manifest, dict[str, Any]]:
        """The merged manifest (names and options checked, its models registered) and the ready-made adapters;
        an error that quotes a secret is scrubbed of it, and an option holding one (but in a URL's
        credentials) is refused."""
        layer, instances = _split_overrides(ports)
        _check_instances(instances)
        resolved = _without_secrets(lambda: ManifestLoader(cls.registry).resolve(
            manifest or settings.manifest or "default", settings.ports, layer
        ), settings.secret_values())
        data = resolved.to_dict()  # an option naming a folder (a root, a cache) would name it with the secret
        refuse_secrets({"ports": data["ports"], "models": data.get("models", {})}, settings.named_secrets(),
                       "the manifest", url_credentials=True)
        register_manifest_models(resolved)
        return resolved, instances

    @classmethod
    def _check_buildable(
        cls, manifest: Manifest, ports: Sequence[str], settings: Settings, *, secrets: bool = True
    ) -> None:
        """Every secret of the ports' adapters first (unless ``secrets`` is off), then their extras: a
        missing key is named even on a machine that also lacks the extra."""
        entries = [cls.registry.get(port, manifest.ports[port].adapter) for port in ports]
        for entry in entries if secrets else ():
            entry.check_secrets(settings)
        for entry in entries:
            entry.check_available()

    @classmethod
    def _missing_secrets(cls, manifest: Manifest, ports: Sequence[str], settings: Settings) -> list[str]:
        """One line per unset secret (its name, never a value) with the ports whose adapters need it."""
        users: dict[str, list[str]] = {}
        for port in ports:
            entry = cls.registry.get(port, manifest.ports[port].adapter)
            for env_var in entry.missing_secrets(settings):
                users.setdefault(env_var, []).append(f"{port} ({entry.name})")
        return [f"needs {env_var} (not set): a real run would fail; used by {', '.join(names)}"
                for env_var, names in users.items()]

    @classmethod
    @contextmanager
    def open(
        cls, manifest: str | None = None, ports: PortsInput = None, settings: Settings | None = None
    ) -> Iterator[Ports]:
        """The manifest's adapters as typed ``Ports``, closed when the block ends::

            with Runtime.open("local") as ports:
                sampler = ports.training_client.create_sampling_client(base_model=...)

        Names and options of every binding are checked now; an adapter is built (its secrets and
        extras checked) the first time its port is read, so reading ``blob_store`` from ``prod``
        needs no Tinker key. Adapters passed in ``ports`` are the caller's and are not closed.
        """
        settings = settings or Settings()
        resolved, instances = cls._resolve(manifest, ports, settings)
        with cls._open(resolved, settings, instances) as opened:
            yield opened

    @classmethod
    @contextmanager
    def _open(cls, manifest: Manifest, settings: Settings, instances: Mapping[str, Any]) -> Iterator[Ports]:
        def check(port: str) -> None:
            cls._check_buildable(manifest, [p for p in _built_on(cls.registry, manifest, port) if p not in instances],
                                 settings)

        container = build_container(manifest, settings, cls.registry, instances)
        adapters = _ContainerAdapters(container, check)
        try:
            yield Ports(adapters)
        finally:
            adapters.closed = True
            container.shutdown_resources()

    @classmethod
    def run(
        cls, recipe: str | type[Recipe], cfg: ConfigInput = None, *, options: RunOptions | None = None,
        **fields: Unpack[RunFields],
    ) -> RunResult:
        """Build ``recipe``'s spec from ``cfg`` and run it; keywords are ``RunOptions``' fields."""
        chosen = RunOptions.of(options, **fields)
        _preload_models(chosen.manifest or chosen.settings.manifest or "default")
        return cls.run_spec(cls.build_spec(recipe, cfg, settings=chosen.settings), options=chosen)

    train = run

    @overload
    @classmethod
    def eval(
        cls, recipe: str | type[Recipe], cfg: ConfigInput = None, *, options: RunOptions | None = None,
        **fields: Unpack[RunFields],
    ) -> RunResult: ...

    @overload
    @classmethod
    def eval(
        cls, recipe: None = None, cfg: None = None, *, tasks: Sequence[TaskInput] | str, model: str | None = None,
        run: str | None = None, checkpoints: Sequence[str] = (), base: bool = True, renderer: str | None = None,
        seed: int = 0, eval_dir: str | None = None, options: RunOptions | None = None, **fields: Unpack[RunFields],
    ) -> EvalReport: ...

    @classmethod
    def eval(
        cls, recipe: str | type[Recipe] | None = None, cfg: ConfigInput = None, *,
        tasks: Sequence[TaskInput] | str | None = None, model: str | None = None, run: str | None = None,
        checkpoints: Sequence[str] = (), base: bool = True, renderer: str | None = None, seed: int = 0,
        eval_dir: str | None = None, options: RunOptions | None = None, **fields: Unpack[RunFields],
    ) -> RunResult | EvalReport:
        """Evaluate, in one of two ways.

        With ``tasks``: the tasks on a base model (``model=``) or on a run's checkpoints beside its base
        model (``run=``, ``checkpoints=``), written to an evaluation folder; returns an ``EvalReport``::

            Runtime.eval(tasks=["chitchat_nll"], model="HuggingFaceTB/SmolLM2-135M-Instruct", manifest="local")

        With a recipe: only the recipe's evaluation spec, set-up (the run's checkpoint, if ``log_path``
        holds one) and its evaluation stages; returns a ``RunResult``. Keywords are ``RunOptions``' fields.
        """
        chosen = RunOptions.of(options, **fields)
        if tasks is not None:
            if recipe is not None or cfg is not None:
                raise ConfigError("Runtime.eval takes tasks= (with model= or run=) or a recipe and its config, "
                                  "not both")
            from tinkex_cookbook.runtime.evaluation import evaluate

            return evaluate(tasks, model=model, run=run, checkpoints=checkpoints, base=base, renderer=renderer,
                            seed=seed, eval_dir=eval_dir, options=chosen)
        if recipe is None:
            raise ConfigError("Runtime.eval needs tasks= (e.g. tasks=['chitchat_nll'], model=NAME) or a recipe")
        _preload_models(chosen.manifest or chosen.settings.manifest or "default")
        named = chosen.settings.named_secrets()

        def eval_spec() -> Experiment:
            recipe_cls = get_recipe(recipe)
            config_input = _config_input(cfg)
            refuse_config_secrets(config_input, named)
            given = _given_keys(config_input)
            config = parse_config(recipe_cls.Config, {**cls._saved_config(given.get("log_path"), chosen), **given})
            return recipe_cls.build_eval_spec(config)

        return cls.run_spec(_without_secrets(eval_spec, list(named)), options=chosen)

    @classmethod
    def _saved_config(cls, log_path: object, options: RunOptions) -> dict[str, Any]:
        """The config the run at ``log_path`` saved (``{}`` if none): evaluating a run needs only its
        ``log_path``, and gets the model, rank and data it was trained with; keys given on top win."""
        if not log_path:
            return {}
        with cls.open(options.manifest, options.ports, options.settings) as ports:
            return RunFolder(ports.blob_store, folder_key(ports.blob_store, str(log_path))).load_json(CONFIG)

    @classmethod
    def run_spec(cls, spec: Experiment, *, options: RunOptions | None = None, **fields: Unpack[RunFields]) -> RunResult:
        """Run a built (or saved, ``Experiment.from_json``) spec; keywords are ``RunOptions``' fields."""
        chosen = RunOptions.of(options, **fields)
        named = chosen.settings.named_secrets()

        def run() -> RunResult:
            refuse_secrets(spec.model_dump(mode="json"), named, "the spec")  # its config names files and folders
            return cls._run_spec(spec, chosen)

        return _without_secrets(run, list(named))

    @classmethod
    def _run_spec(cls, spec: Experiment, options: RunOptions) -> RunResult:
        settings = options.settings
        spec = _dated(spec)
        recipe_cls = get_recipe(spec.recipe)
        config = parse_config(recipe_cls.Config, spec.config)
        resolved, missing = cls._resolve_checked(options.manifest, options.ports, settings,
                                                 secrets=not options.dry_run)  # a dry run needs no secret
        runner = Runner(STAGES)
        runner.validate(spec)
        sinks = _run_sinks(spec, config, options)  # built now: a missing extra fails a dry run too
        if options.dry_run:
            plan = settings.scrub(describe_plan(spec, resolved, missing))
            print(plan, file=options.out or sys.stdout)
            return RunResult(spec, resolved, dry_run=True, plan=plan)
        with cls._open(resolved, settings, _split_overrides(options.ports)[1]) as ports:
            located = _located(spec, ports.blob_store)
            if located is not spec:  # the sinks name the folder by its key, not the path it was given as
                spec, config = located, parse_config(recipe_cls.Config, located.config)
                sinks = _run_sinks(spec, config, options)
            return cls._execute(spec, config, resolved, ports, runner, sinks, options.verbose,
                                settings.scrub, options.stop or StopRequest())

    @classmethod
    def _execute(
        cls, spec: Experiment, config: BaseModel, manifest: Manifest, ports: Ports,
        runner: Runner, sinks: list[Sink], verbose: bool, scrub: Callable[[str], str] = str,
        stop: StopRequest | None = None,
    ) -> RunResult:
        folder = RunFolder(ports.blob_store, str(spec.config.get("log_path") or spec.recipe))
        if spec.purpose == "eval":
            return cls._evaluate(spec, config, manifest, ports, folder, runner, sinks, verbose)
        config_text, spec_text = config_json(spec.config, scrub), scrub(spec.to_json())
        stop = stop or StopRequest()
        with folder.lease() as lease:  # one run per folder, before anything in it is read or written
            folder.refuse_changed_config(config_text, ignore=SINK_KEYS)
            mended = folder.mend_appended_files()  # a damaged middle stops here, the folder as it was
            finished = _finished(folder)  # it still resumes, which checks its final checkpoint loads
            artifacts = folder.save_run_files(config_text, spec_text,
                                              scrub(json.dumps(manifest.to_dict(), indent=2, sort_keys=True)))
            shown = Experiment.from_json(spec_text)  # what sinks may upload: no pasted secret
            for sink in sinks:
                if isinstance(sink, RunAwareSink):
                    sink.configure(shown, folder.uri())
            folder_sinks = folder.sinks(scrub)
            try:
                with stop_on_signals(stop) if _stoppable(spec.stages) else nullcontext():
                    completed, ctx, memory = cls._run_stages(spec, config, ports, folder, runner,
                                                             [*folder_sinks, *sinks], verbose,
                                                             _lease_guard(lease, folder_sinks), stop, mended)
            except RunStoppedError as exc:
                raise RunStoppedError(f"{exc}. Run folder: {folder.uri()}; rerun with log_path={folder.prefix} "
                                      "to resume", folder.prefix, stop.reason) from None
            except KeyboardInterrupt as exc:
                exc.add_note(f"run folder: {folder.uri()}; rerun with log_path={folder.prefix} to resume from its "
                             "last checkpoint")
                raise
            finally:
                if lease.lost is None:
                    folder.write_report(spec.name)
        artifacts |= folder.artifacts() | sink_artifacts(sinks)
        return RunResult(spec, manifest, completed, dict(ctx.state), memory.metrics(), memory.events, artifacts,
                         already_finished=finished)

    @classmethod
    def _evaluate(
        cls, spec: Experiment, config: BaseModel, manifest: Manifest, ports: Ports, folder: RunFolder,
        runner: Runner, sinks: list[Sink], verbose: bool,
    ) -> RunResult:
        """An eval spec reads the run folder (its checkpoints) and writes nothing there: no lease, no run
        files, no metric rows; its metrics come back in the result and reach the caller's own sinks."""
        completed, ctx, memory = cls._run_stages(spec, config, ports, folder, runner, sinks, verbose)
        return RunResult(spec, manifest, completed, dict(ctx.state), memory.metrics(), memory.events,
                         {"run": folder.uri()})

    @staticmethod
    def _run_stages(
        spec: Experiment, config: BaseModel, ports: Ports, folder: RunFolder, runner: Runner, sinks: list[Sink],
        verbose: bool, guard: Callable[[bool], None] | None = None, stop: StopRequest | None = None,
        warnings: Sequence[str] = (),
    ) -> tuple[list[str], Context[BaseModel], MemorySink]:
        """Walk the spec with telemetry to memory (the result), ``sinks`` and, if ``verbose``, the console;
        ``warnings`` first, as ``workflow.warning`` events."""
        memory = MemorySink()
        telemetry = Telemetry([memory, *sinks, *([ConsoleSink()] if verbose else [])], guard=guard)
        ctx = Context(config=config, ports=_RunPorts(ports, folder), telemetry=telemetry, run_prefix=folder.prefix,
                      stop=stop or StopRequest())
        try:
            for warning in warnings:
                telemetry.emit("workflow.warning", message=warning)
            return runner.run(spec, ctx), ctx, memory
        finally:
            telemetry.close()


def _config_input(cfg: ConfigInput) -> BaseModel | Mapping[str, Any] | Sequence[str] | None:
    """A config file's mapping for a path. A lone string is refused: it would read as one override per
    character."""
    if isinstance(cfg, str):
        raise ConfigError(f"config {cfg!r:.60} is a string; pass a list of key=value strings, a dict, or a "
                          "pathlib.Path to a YAML or JSON config file")
    return load_config_file(cfg) if isinstance(cfg, os.PathLike) else cfg


def _run_sinks(spec: Experiment, config: BaseModel, options: RunOptions) -> list[Sink]:
    """The caller's sinks plus those the config's keys ask for (a caller's sink of a kind replaces the key's);
    an evaluation of a run logs to the caller's only."""
    sinks = [*options.sinks]
    if spec.purpose != "eval":
        given = {type(sink) for sink in sinks}
        built = config_sinks(config, str(spec.config.get("log_path") or spec.recipe), options.quiet)
        sinks += [sink for sink in built if type(sink) not in given]
    return sinks


def _stoppable(nodes: Sequence[Node]) -> bool:
    """Some loop says what a stop needs (``on_stop``): only then is Ctrl-C a request to stop at a step
    boundary; a spec without one (saved by an older version) keeps Python's Ctrl-C."""
    return any(isinstance(node, LoopSpec) and (node.on_stop or _stoppable(node.body)) for node in nodes)


def _finished(folder: RunFolder) -> bool:
    """The folder's run had finished (its last checkpoint record is the final one); a damaged record is for
    the ``resume`` stage to report, naming it."""
    try:
        records = load_checkpoints(folder.store, folder.key(CHECKPOINTS))
    except CookbookError:
        return False
    return bool(records) and records[-1].final


def _dated(spec: Experiment) -> Experiment:
    """``spec`` with an unset ``log_path`` set to a fresh ``<recipe>/<UTC time>`` folder, so the spec the run
    saves names its own folder (and a printed spec replayed twice makes two runs, not one)."""
    if "log_path" not in spec.config or spec.config["log_path"]:
        return spec
    return spec.with_config(log_path=timestamped(spec.recipe, None))


def _located(spec: Experiment, store: BlobStore) -> Experiment:
    """``spec`` with its ``log_path`` as the store's key: a path or URI the store printed for a run folder
    (``runs/sl_basic/<time>``, an absolute path) names that folder, not a new one below the root."""
    log_path = spec.config.get("log_path")
    if not isinstance(log_path, str) or not log_path:
        return spec
    key = folder_key(store, log_path)
    return spec if key == log_path else spec.with_config(log_path=key)


def _given_keys(cfg: ConfigInput) -> dict[str, Any]:
    """The config keys a caller set, from any accepted config form (a model counts only the fields set)."""
    cfg = _config_input(cfg)
    if cfg is None:
        return {}
    if isinstance(cfg, BaseModel):
        return cfg.model_dump(mode="json", include=set(cfg.model_fields_set))
    if isinstance(cfg, Mapping):
        return dict(cfg)
    return parse_overrides(list(cfg))


def _built_on(registry: AdapterRegistry, manifest: Manifest, port: str) -> list[str]:
    """``port`` and the ports its bound adapter is built on (``needs``), transitively, each once."""
    found = [port]
    for current in found:
        for needed in registry.get(current, manifest.ports[current].adapter).needs:
            if needed not in found:
                found.append(needed)
    return found


class _RunPorts:
    """The run's port lookup: a training backend that keeps checkpoint weights in the blob store is told to
    keep this run's inside its folder, so deleting the folder deletes them too."""

    def __init__(self, ports: PortLookup, folder: RunFolder) -> None:
        self._ports, self._folder = ports, folder

    def __getitem__(self, port: str) -> object:
        adapter = self._ports[port]
        if port == "training_client" and isinstance(adapter, CheckpointPlacement):
            adapter.place_checkpoints(self._folder.checkpoint_states)
        return adapter


def _preload_models(ref: str) -> None:
    """The manifest's ``models:`` entries, registered before the config is parsed (a model's renderer is the
    config's default); a manifest that does not load is reported later, after the config's own errors."""
    from tinkex_cookbook.runtime.manifest import catalog_models, load_chain

    try:
        models = catalog_models(load_chain(ref))
    except CookbookError:
        return
    register_manifest_models(models)


def register_manifest_models(manifest: Manifest | Mapping[str, Any]) -> None:
    """Put the manifest's ``models:`` entries in the model catalog, replacing any of the same name."""
    from tinkex_cookbook.train.models import entry_from_mapping, register_model

    models = manifest.models if isinstance(manifest, Manifest) else manifest
    for name, data in models.items():
        register_model(entry_from_mapping(name, data), replace=True)


def _lease_guard(lease: RunLease, folder_sinks: Sequence[BlobLinesSink]) -> Callable[[bool], None]:
    """Telemetry's check before each event and flush: the first time the lease is found lost, detach the
    sinks that write the folder and raise (the run stops); later events (the failure itself) reach the
    other sinks, and the folder is left to the run that holds it."""
    def guard(force: bool) -> None:
        if lease.lost is not None and all(sink.detached for sink in folder_sinks):
            return
        try:
            lease.check(force)
        except RunFolderInUseError:
            for sink in folder_sinks:
                sink.detach()
            raise

    return guard
