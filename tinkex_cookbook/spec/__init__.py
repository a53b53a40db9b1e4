"""Serialisable experiment specs."""

from tinkex_cookbook.spec.experiment import Experiment, LoopSpec, Node, StageSpec

__all__ = ["Experiment", "LoopSpec", "Node", "StageSpec"]
