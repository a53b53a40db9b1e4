"""The error tree: every error is a CookbookError, keeps its stdlib parent, and pickles."""

from __future__ import annotations

import pickle

import pytest

from tinkex_cookbook import errors

EXPECTED_PARENTS = {
    errors.ConfigError: ValueError,
    errors.RunFolderInUseError: ValueError,
    errors.ManifestError: ValueError,
    errors.UnknownManifestError: LookupError,
    errors.UnknownPortError: LookupError,
    errors.UnknownAdapterError: LookupError,
    errors.AdapterUnavailableError: ImportError,
    errors.MissingSecretError: ValueError,
    errors.WeakSecretError: ValueError,
    errors.UnknownNameError: LookupError,
    errors.NameTakenError: ValueError,
    errors.PluginError: ImportError,
    errors.SpecError: ValueError,
    errors.DatasetError: ValueError,
    errors.DatasetNotFoundError: LookupError,
    errors.RendererError: ValueError,
    errors.BlobStoreError: OSError,
    errors.BlobNotFoundError: KeyError,
    errors.InvalidKeyError: ValueError,
    errors.TrainingBackendError: RuntimeError,
    errors.TrainingDivergedError: ArithmeticError,
    errors.EvalError: RuntimeError,
    errors.StageError: RuntimeError,
    errors.RunStoppedError: RuntimeError,
}


def test_every_error_class_is_covered() -> None:
    defined = {
        obj for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.CookbookError) and obj is not errors.CookbookError
    }
    assert defined == set(EXPECTED_PARENTS)


@pytest.mark.parametrize(("error", "parent"), EXPECTED_PARENTS.items(), ids=lambda v: getattr(v, "__name__", ""))
def test_error_keeps_its_parent_and_pickles(error: type, parent: type) -> None:
    raised = error("field 'x' = 3: the fix")
    assert isinstance(raised, errors.CookbookError) and isinstance(raised, parent)
    again = pickle.loads(pickle.dumps(raised))
    assert type(again) is error and str(again) == "field 'x' = 3: the fix"


def test_choices_are_sorted_and_quoted() -> None:
    assert errors.choices(["b", "a"]) == "'a', 'b'"
    assert errors.choices([]) == "(none)"
