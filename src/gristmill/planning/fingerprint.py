"""Fingerprints: what a step's output depends on, as frozen values.

The code hash covers what changes the data: normalized SQL or Python source, parameters,
the contract and, for sources, the reader settings. Descriptions and feature metadata are
left out, so editing them never forces a rebuild. The fingerprint adds the exact input
versions (or, for sources, the ingested files).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from functools import singledispatch
from typing import Any

from gristmill.definitions.models import Model, TrainingSet
from gristmill.definitions.objects import Definition, Table
from gristmill.definitions.sources import DatabaseSource, FileSource, IntakeSource, StreamSource


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@singledispatch
def code_hash(definition: Definition) -> str:
    raise TypeError(f"no fingerprint for {type(definition).__name__}")


@code_hash.register
def _source(definition: FileSource) -> str:
    return _digest(
        {
            "kind": "ingest",
            "path": definition.path,
            "format": definition.format.value,
            "options": definition.options,
            "contract": definition.contract.describe(),
            # only when set: a project from before pii= keeps its hashes (no re-ingest)
            **({"pii": definition.pii} if definition.pii else {}),
        }
    )


@code_hash.register
def _database(definition: DatabaseSource) -> str:
    # what is read and how rows are keyed; not lag or chunk_rows (how it is read), and the
    # URL as written (secrets are ${VAR} placeholders, filled only when connecting)
    return _digest(
        {
            "kind": "database",
            "url": definition.url,
            "relation": definition.relation_sql(),
            "cursor": definition.cursor,
            "primary_key": definition.primary_key,
            "soft_delete": definition.soft_delete,
            "contract": definition.contract.describe(),
            **({"capture": definition.capture} if definition.capture else {}),
            **({"pii": definition.pii} if definition.pii else {}),
        }
    )


@code_hash.register
def _stream(definition: StreamSource) -> str:
    # what is read and how it lands; not the batch settings or the consumer's name
    return _digest(
        {
            "kind": "stream",
            "url": definition.url,
            "stream": definition.stream,
            "subject": definition.subject,
            "format": definition.format,
            "primary_key": definition.primary_key,
            "contract": definition.contract.describe(),
            **({"pii": definition.pii} if definition.pii else {}),
        }
    )


@code_hash.register
def _intake(definition: IntakeSource) -> str:
    return _digest(
        {
            "kind": "intake",
            "primary_key": definition.primary_key,
            "contract": definition.contract.describe(),
            **({"pii": definition.pii} if definition.pii else {}),
        }
    )


@code_hash.register
def _table(definition: Table) -> str:
    if definition.function is not None:
        code = normalized_python(definition.function)
    else:
        from gristmill.definitions.sql import parse_sql

        code = parse_sql(definition.sql or "", definition.location).normalized
    return _digest(
        {
            "kind": definition.kind.value,
            "code": code,
            "params": definition.params,
            "contract": definition.contract.describe(),
            # the slicing, not its extent: moving start= or adding a key stales nothing built
            **(
                {"partitions": [definition.partitions.column, definition.partitions.granularity]}
                if definition.partitions
                else {}
            ),
        }
    )


@code_hash.register
def _training_set(definition: TrainingSet) -> str:
    return _digest(
        {
            "kind": "training_set",
            "labels": definition.labels,
            "entity": definition.entity,
            "timestamp": definition.timestamp,
            "label": definition.label,
            "features": [
                [f.view, f.columns, f.ttl.total_seconds() if f.ttl else None, f.prefix]
                for f in definition.features
            ],
        }
    )


@code_hash.register
def _model(definition: Model) -> str:
    # Gates, intended use and limitations decide promotion and the card, not the model.
    return _digest(
        {
            "kind": "model",
            "task": definition.task.value,
            "estimator": [definition.estimator.kind.value, definition.estimator.params],
            "split": definition.split.describe(),
            "label": definition.label,
            "features": definition.features,
            "exclude": definition.exclude,
            "categorical": definition.categorical,
            "threshold": definition.threshold,
            "bootstrap": definition.bootstrap,
            "seed": definition.seed,
        }
    )


def normalized_python(function: Any) -> str:
    """Function source without comments, docstring or formatting."""
    source = textwrap.dedent(inspect.getsource(function))
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.decorator_list = []
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


@dataclass(frozen=True)
class Fingerprint:
    """A step's code hash plus the exact state of its inputs."""

    code: str
    inputs: tuple[tuple[str, Any], ...]

    @property
    def value(self) -> str:
        return _digest({"code": self.code, "inputs": self.inputs})

    @classmethod
    def of(cls, code: str, inputs: Mapping[str, Any]) -> Fingerprint:
        return cls(code=code, inputs=tuple(sorted(inputs.items())))
