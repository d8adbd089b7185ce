"""Engines that run steps, behind one base class and a registry."""

from gristmill.execution.engines.base import Engine, EngineSqlError, Session, create_engine

__all__ = ["Engine", "EngineSqlError", "Session", "create_engine"]
