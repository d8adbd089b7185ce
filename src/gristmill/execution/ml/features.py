"""Turning Arrow columns into the matrix a model reads, the same way in training and scoring.

Numeric columns become float64 (null -> NaN). Categorical columns become the index of
the value in a vocabulary fixed at training time (unknown or null -> NaN), which is what
LightGBM's native categorical handling reads. The vocabulary is part of the model's
manifest, so batch scoring and online serving encode exactly as training did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.errors import TrainingFailed


class FeatureKind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind.value}
        if self.kind is FeatureKind.CATEGORICAL:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feature:
        return cls(data["name"], FeatureKind(data["kind"]), tuple(data.get("categories", ())))


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t))


def _is_numeric(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or (pa.types.is_decimal(t))
    )


def infer_features(
    data: pa.Table, names: Sequence[str], categorical: Sequence[str] | None
) -> tuple[Feature, ...]:
    """Numeric or categorical per column; categories sorted, from the training rows."""
    out = []
    for name in names:
        column = data[name]
        is_cat = name in categorical if categorical is not None else _is_text(column.type)
        if is_cat:
            values = pc.unique(
                pc.cast(column, pa.string()) if not _is_text(column.type) else column
            )
            cats = sorted(v for v in values.to_pylist() if v is not None)
            out.append(Feature(name, FeatureKind.CATEGORICAL, tuple(str(c) for c in cats)))
        elif _is_numeric(column.type):
            out.append(Feature(name, FeatureKind.NUMERIC))
        else:
            raise TrainingFailed(
                f"feature {name!r} has type {column.type}, which is neither numeric nor text",
                hint="cast it in the feature view, leave it out with exclude=[...], "
                "or list it in categorical=[...]",
            )
    return tuple(out)


def to_matrix(data: pa.Table | pa.RecordBatch, features: Sequence[Feature]) -> np.ndarray:
    """A float64 matrix, one column per feature in order."""
    matrix = np.empty((data.num_rows, len(features)), dtype=np.float64)
    for i, feature in enumerate(features):
        column = data.column(feature.name)
        if feature.kind is FeatureKind.CATEGORICAL:
            text = column if _is_text(column.type) else pc.cast(column, pa.string())
            if pa.types.is_dictionary(text.type):
                text = pc.cast(text, pa.string())
            codes = pc.index_in(text, value_set=pa.array(feature.categories, pa.string()))
            column = codes
        matrix[:, i] = _floats(column)
    return matrix


def _floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_boolean(column.type) or pa.types.is_decimal(column.type):
        column = pc.cast(column, pa.float64())
    filled = pc.fill_null(pc.cast(column, pa.float64()), float("nan"))
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return cast(np.ndarray, filled.to_numpy(zero_copy_only=False))


def to_pandas(data: pa.Table | pa.RecordBatch, features: Sequence[Feature]) -> Any:
    """A pandas frame for scikit-learn: numeric as float64, categories as text (unknown -> None)."""
    import pandas as pd

    frame = {}
    for feature in features:
        column = data.column(feature.name)
        if feature.kind is FeatureKind.CATEGORICAL:
            text = pc.cast(column, pa.string())
            known = pc.is_in(text, value_set=pa.array(feature.categories, pa.string()))
            values = pc.if_else(known, text, pa.scalar(None, pa.string())).to_pylist()
            frame[feature.name] = pd.Series(values, dtype=object)
        else:
            frame[feature.name] = _floats(column)
    return pd.DataFrame(frame)


class RowEncoder:
    """One request's features (a dict) -> the model's float64 row, without Arrow.

    The online path encodes one row at a time, where Arrow's per-call overhead would
    dominate; this gives the same numbers as ``to_matrix`` (tested): numbers as float,
    categories as their index in the training vocabulary, unknown or missing as NaN.
    """

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features = tuple(features)
        self._codes = [
            {c: float(i) for i, c in enumerate(f.categories)}
            if f.kind is FeatureKind.CATEGORICAL
            else None
            for f in self.features
        ]
        self._plan = [(f.name, codes) for f, codes in zip(self.features, self._codes, strict=True)]

    def encode(self, values: dict[str, Any]) -> np.ndarray:
        out = []
        for name, codes in self._plan:
            value = values.get(name)
            if value is None:
                out.append(_NAN)
            elif codes is not None:
                out.append(codes.get(value if type(value) is str else str(value), _NAN))
            elif type(value) is float or type(value) is int:  # the common case, fast
                out.append(value)
            else:
                out.append(_number(value))
        return np.array([out], dtype=np.float64)


_NAN = float("nan")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
