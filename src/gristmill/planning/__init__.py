"""Planning layer: fingerprints and the plan of steps to run or skip."""

from gristmill.planning.planner import (
    Action,
    Backfill,
    Plan,
    PlannedStep,
    WriteMode,
    build_plan,
)

__all__ = ["Action", "Backfill", "Plan", "PlannedStep", "WriteMode", "build_plan"]
