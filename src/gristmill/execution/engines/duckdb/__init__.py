"""The embedded default engine."""

from gristmill.execution.engines.duckdb.engine import DuckDBEngine

__all__ = ["DuckDBEngine"]
