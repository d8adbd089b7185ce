"""Apache Spark: SQL steps pinned with ``engine="spark"``, written by its executors."""

from gristmill.execution.engines.spark.engine import SparkEngine

__all__ = ["SparkEngine"]
