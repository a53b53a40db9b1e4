"""Whether a teacher reads the student's tokens: models paired token by token must share a tokenizer.

On-policy distillation asks a ``teacher=sampler`` teacher for the logprob of the student's
own token ids; off-policy, that teacher answers prompts the student's renderer tokenized,
and its reply's ids are parsed by the student's renderer. Both pair token ids across the
two models: with another tokenizer the same ids spell other text, and ``teacher_kl``
measures nothing. The ``llm_client`` teacher (``teacher=llm``, off-policy) exchanges text,
so a model of any tokenizer may teach through it. (DPO's reference and RL's KL-penalty base
are the trained model's own base weights: the same tokenizer by construction. The standalone
evaluation's judge reads text.)

Two checks: ``check_catalog_pair`` at config time, when the model catalog knows both
models' packaged tokenizers; ``check_session_pair`` once both are open, comparing the
tokenizers themselves (vocabulary size, and the ids of a probe text holding the renderer's
special tokens), for the pairs the catalog cannot tell (a checkpoint, an uncatalogued name).
"""

from __future__ import annotations

from collections.abc import Sequence

from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.ports import Tokenizer
from tinkex_cookbook.train.models import TinyRandom, catalog, recommended_renderer, tokenizer_name
from tinkex_cookbook.train.tokenizer_sources import PACKAGED_TOKENIZERS, ByteLevelTokenizer, PackagedTokenizer

PROBE = "Teachers and students: 12,345 tokens, naïve café — 東京 ✓\n\tend."
"""Text whose ids differ between unlike tokenizers: words, digits, accents, CJK, symbols, whitespace."""

TEXT_TEACHER = "teacher=llm mode=off_policy (the llm_client port exchanges text, so any tokenizer can teach)"


def packaged_source(model_name: str) -> PackagedTokenizer | ByteLevelTokenizer | None:
    """The packaged tokenizer the catalog gives ``model_name``, or ``None`` when its tokenizer lives elsewhere."""
    return PACKAGED_TOKENIZERS.get(tokenizer_name(model_name))


def same_family(model_name: str) -> list[str]:
    """Catalog models that read ``model_name``'s packaged tokenizer (full models before tiny test ones)."""
    source = packaged_source(model_name)
    if source is None:
        return []
    rows = [e for e in catalog() if e.name != model_name and packaged_source(e.name) == source]
    return [e.name for e in sorted(rows, key=lambda e: isinstance(e.weights, TinyRandom))]


def check_catalog_pair(student: str, teacher: str, renderer: str | None = None) -> None:
    """Refuse a teacher whose catalogued tokenizer is not the student's; pass when the catalog cannot tell."""
    theirs, ours = packaged_source(teacher), packaged_source(student)
    if theirs is None or ours is None or theirs == ours:
        return
    suggestions = same_family(student)[:3]
    instead = f"choose a teacher of the {ours.label} family, such as {', '.join(suggestions)}, or" if suggestions \
        else "choose a teacher with the student's tokenizer, or"
    raise ConfigError(
        f"teacher_model {teacher!r} reads the {theirs.label} tokenizer (renderer "
        f"{recommended_renderer(teacher)}) but the student model_name {student!r} reads the {ours.label} tokenizer "
        f"(renderer {renderer or recommended_renderer(student)}): the teacher would score token ids that spell "
        f"other text, and teacher_kl would mean nothing. Fix: {instead} use {TEXT_TEACHER}"
    )


def tokenizers_differ(student: Tokenizer, teacher: Tokenizer, special_tokens: Sequence[str] = ()) -> str | None:
    """How two tokenizers differ (vocabulary size, or the ids of the probe text), or ``None`` if they agree."""
    if student.vocab_size != teacher.vocab_size:
        return f"vocabulary sizes {student.vocab_size} and {teacher.vocab_size}"
    probe = PROBE + "".join(special_tokens)
    ours, theirs = student.encode(probe, add_special_tokens=False), teacher.encode(probe, add_special_tokens=False)
    if ours != theirs:
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs)))
        return f"different ids for the same text (from token {at}: {ours[at:at + 4]} vs {theirs[at:at + 4]})"
    return None


def check_session_pair(student: str, student_tokenizer: Tokenizer, teacher: str, teacher_tokenizer: Tokenizer,
                       special_tokens: Sequence[str] = ()) -> None:
    """Refuse a teacher whose opened tokenizer differs from the student's (``teacher`` says which config key
    named it, e.g. ``teacher_path '...'``)."""
    difference = tokenizers_differ(student_tokenizer, teacher_tokenizer, special_tokens)
    if difference is None:
        return
    suggestions = same_family(student)[:3]
    instead = f"a teacher such as {', '.join(suggestions)}" if suggestions else "a teacher with the student's tokenizer"
    raise ConfigError(
        f"the teacher ({teacher}) reads another tokenizer than the student model_name {student!r} ({difference}): "
        f"it would score token ids that spell other text, and teacher_kl would mean nothing. Fix: choose "
        f"{instead}, or use {TEXT_TEACHER}"
    )
