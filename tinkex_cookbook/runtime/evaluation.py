"""Evaluation on its own: tasks on a base model, a run's checkpoints, or both side by side.

``evaluate`` resolves what to evaluate the way ``chat`` does (a model name, a model folder,
a run folder and its checkpoints), opens the deployment once (the one given, else the
run's own), evaluates every target on every task, and writes the evaluation folder
(``eval/report.py``) to that deployment's blob store under ``evals/<UTC time>`` unless
``eval_dir`` names another folder. A run is evaluated beside its base model unless
``base=False``: the table's last column is the change training made. The run's own
folder is left as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.eval.base import EvalEnv, EvalTarget
from tinkex_cookbook.eval.report import write_report
from tinkex_cookbook.eval.suite import EvalReport, TaskOutcome, run_tasks
from tinkex_cookbook.eval.tasks import TaskInput, resolve_tasks
from tinkex_cookbook.recipes.common import check_log_path
from tinkex_cookbook.run_folder import folder_key
from tinkex_cookbook.runtime.options import RunOptions
from tinkex_cookbook.runtime.targets import Target, open_deployment, resolve_target, target_sampler
from tinkex_cookbook.secrets import refuse_secrets


def eval_targets(model: str | None, run: str | None, checkpoints: Sequence[str] = (), base: bool = True,
                 renderer: str | None = None) -> list[tuple[str, Target]]:
    """(label, target) pairs: the model; or the run's base model and its checkpoints (the final one by default)."""
    from tinkex_cookbook.runs import default_root

    if (model is None) == (run is None):
        raise ConfigError("say what to evaluate: a model (--model NAME, a model name or folder) or a run "
                          "(--run RUN_FOLDER, optionally with --checkpoint NAME), not both and not neither")
    if model is not None:
        if checkpoints:
            raise ConfigError("--checkpoint picks checkpoints of a run; with --model, pass --run RUN_FOLDER instead")
        target = resolve_target(model, None, None, renderer, default_root())
        return [(target.model_name if target.run is None else target.label, target)]
    assert run is not None
    picked = [resolve_target(run, name, None, renderer, default_root()) for name in (checkpoints or [None])]
    labelled = [(str(t.checkpoint.get("name") or "checkpoint"), t) for t in picked]
    if base:
        labelled.insert(0, ("base", dataclasses.replace(picked[0], weights_path=None, checkpoint={})))
    labels = [label for label, _ in labelled]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"checkpoints {labels} are given more than once; name each once")
    return labelled


def evaluate(
    tasks: Sequence[TaskInput] | str, *, model: str | None = None, run: str | None = None,
    checkpoints: Sequence[str] = (), base: bool = True, renderer: str | None = None, seed: int = 0,
    eval_dir: str | None = None, options: RunOptions | None = None,
    on_outcome: Callable[[TaskOutcome], None] | None = None,
) -> EvalReport:
    options = options or RunOptions()
    given = {"tasks": tasks, "model": model, "run": run, "checkpoints": list(checkpoints), "renderer": renderer,
             "eval_dir": eval_dir}
    refuse_secrets(given, options.settings.named_secrets(), "the evaluation's arguments")  # each names a file or folder
    chosen = resolve_tasks(list(tasks) if not isinstance(tasks, str) else tasks)
    targets = eval_targets(model, run, checkpoints, base, renderer)
    first = targets[0][1]
    prefix = check_log_path(eval_dir) or f"evals/{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with open_deployment(first, options.manifest, options.ports, options.settings) as ports:
        service = ports.training_client
        env = EvalEnv(ports, seed=seed)
        outcomes: list[TaskOutcome] = []
        for label, target in targets:
            outcomes += run_tasks(chosen, [EvalTarget(label, *target_sampler(service, target))], env, on_outcome)
        report = EvalReport(chosen, [label for label, _ in targets], outcomes)
        request = {
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "seed": seed,
            "manifest": first.deployment(options.manifest)[0] or "default",
            "tasks": [task.model_dump(mode="json") for task in chosen],
            "targets": [{"label": label, "model_name": t.model_name, "renderer_name": t.renderer_name,
                         "weights_path": t.weights_path, "run": str(t.run.path) if t.run else None,
                         "checkpoint": t.checkpoint.get("name")} for label, t in targets],
        }
        prefix = folder_key(ports.blob_store, prefix)
        files = write_report(ports.blob_store, prefix, report, request)
        report.uri = ports.blob_store.uri(prefix)
        report.details["files"] = files
    return report
