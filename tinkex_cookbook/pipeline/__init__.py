"""The pipeline: stage registry, run context, runner and telemetry."""

from tinkex_cookbook.pipeline.context import Context, Key, PortLookup
from tinkex_cookbook.pipeline.registry import STAGES, StageRegistry, register_stage, stage
from tinkex_cookbook.pipeline.runner import Runner
from tinkex_cookbook.pipeline.telemetry import (
    BlobLinesSink,
    ConsoleSink,
    Event,
    JsonlMetricsSink,
    LogFileSink,
    MemorySink,
    Sink,
    Telemetry,
)

__all__ = [
    "STAGES",
    "BlobLinesSink",
    "ConsoleSink",
    "Context",
    "Event",
    "JsonlMetricsSink",
    "Key",
    "LogFileSink",
    "MemorySink",
    "PortLookup",
    "Runner",
    "Sink",
    "StageRegistry",
    "Telemetry",
    "register_stage",
    "stage",
]
