"""A model version's files: the native model file plus a JSON manifest, both by digest.

The manifest says how to read the model file (format, estimator, task) and how to encode
a row for it (features in order, categorical vocabularies), so scoring and serving need
nothing else. Loading verifies both digests before a byte is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from gristmill.definitions.models import Task
from gristmill.errors import ArtifactError
from gristmill.execution.ml.estimators import Backend, backend
from gristmill.execution.ml.features import Feature
from gristmill.storage.artifacts import ArtifactStore


@dataclass(frozen=True)
class Manifest:
    estimator: str
    format: str
    task: Task
    label: str
    threshold: float
    features: tuple[Feature, ...]
    artifact: str
    """SHA-256 of the model file."""

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "estimator": self.estimator,
                "format": self.format,
                "task": self.task.value,
                "label": self.label,
                "threshold": self.threshold,
                "features": [f.to_dict() for f in self.features],
                "artifact": self.artifact,
            },
            option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        raw = orjson.loads(data)
        return cls(
            estimator=raw["estimator"],
            format=raw["format"],
            task=Task(raw["task"]),
            label=raw["label"],
            threshold=float(raw["threshold"]),
            features=tuple(Feature.from_dict(f) for f in raw["features"]),
            artifact=raw["artifact"],
        )


@dataclass(frozen=True)
class LoadedModel:
    """A verified, loaded model version, ready to score Arrow batches."""

    name: str
    version: int
    manifest: Manifest
    backend: Backend
    model: Any

    def predict(self, data: pa.Table | pa.RecordBatch) -> np.ndarray:
        return self.backend.predict(self.model, data)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.manifest.features]


def load(store: ArtifactStore, name: str, version: int, manifest_digest: str) -> LoadedModel:
    manifest = store.get(manifest_digest)  # both verified against their digests
    return loads(name, version, manifest, store.get(Manifest.from_bytes(manifest).artifact))


def loads(name: str, version: int, manifest_bytes: bytes, model_bytes: bytes) -> LoadedModel:
    """A model from its two files' bytes (as ``load`` read them, or as shipped to a
    worker); the model file's digest is checked against the manifest before it is parsed."""
    from gristmill.storage.artifacts import sha256

    manifest = Manifest.from_bytes(manifest_bytes)
    if sha256(model_bytes) != manifest.artifact:
        raise ArtifactError(
            f"model {name} v{version}: its file's SHA-256 is not the manifest's; refusing "
            "to load it",
            hint="restore the original file, or retrain and register a new version",
        )
    engine = backend(manifest.estimator, manifest.task, manifest.features)
    if engine.format != manifest.format:
        raise ArtifactError(
            f"model {name} v{version} is stored as {manifest.format!r}, "
            f"but its estimator writes {engine.format!r}",
        )
    return LoadedModel(name, version, manifest, engine, engine.loads(model_bytes))
