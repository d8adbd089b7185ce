"""Estimator backends behind one small interface, chosen through a registry.

Each backend fits on the encoded features, predicts scores (the positive class's
probability, or the value for regression), explains a prediction by per-feature
contributions where it can, and writes and reads its model in a safe native format:
LightGBM's and XGBoost's own text/JSON model files and skops for scikit-learn (loaded
against an explicit list of trusted types). Nothing is pickled.
"""

from __future__ import annotations

import io
import json
import math
import sys
import threading
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, cast

import numpy as np
import pyarrow as pa

from gristmill.definitions.models import Estimator, EstimatorKind, Task
from gristmill.errors import ArtifactError, MissingExtraError, UnknownNameError
from gristmill.execution.ml.features import Feature, FeatureKind, to_matrix, to_pandas

DEFAULT_ROUNDS = 200
_ROUND_ALIASES = ("n_estimators", "num_iterations", "num_boost_round", "num_round", "num_trees")


def import_lightgbm_for_scoring() -> None:
    """Import LightGBM without its scikit-learn wrappers, in processes that only score.

    At import LightGBM imports scikit-learn (and with it scipy.stats) for ``LGBMClassifier``
    and friends, which gristmill never uses (it trains with ``lgb.train`` and scores with
    ``lgb.Booster``): 2.8 of the 4.2 s ``import lightgbm`` took here, paid by every serving
    process at start. Hiding scikit-learn for that one import makes LightGBM skip them;
    scikit-learn stays importable for anything else. No-op if either is already imported.
    """
    if "lightgbm" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # `import sklearn` raises
    try:
        import lightgbm  # noqa: F401
    except ImportError:  # not installed: whoever needs it says so
        pass
    finally:
        del sys.modules["sklearn"]


class Backend(ABC):
    kind: ClassVar[EstimatorKind]
    format: ClassVar[str]

    def __init__(self, task: Task, features: Sequence[Feature]) -> None:
        self.task = task
        self.features = tuple(features)

    @abstractmethod
    def fit(self, spec: Estimator, data: pa.Table, y: np.ndarray, seed: int) -> Any: ...

    @abstractmethod
    def predict(self, model: Any, data: pa.Table | pa.RecordBatch) -> np.ndarray: ...

    @abstractmethod
    def dumps(self, model: Any) -> bytes: ...

    @abstractmethod
    def loads(self, data: bytes) -> Any: ...

    def importance(self, model: Any) -> dict[str, float]:
        return {}

    def predict_row(self, model: Any, row: np.ndarray) -> float:
        """Score one encoded row (the online path)."""
        raise NotImplementedError

    def contributions(self, model: Any, row: np.ndarray) -> np.ndarray | None:
        """Per-feature contributions to one encoded row's raw score, or None if unknown."""
        return None

    def score_and_contributions(
        self, model: Any, row: np.ndarray
    ) -> tuple[float, np.ndarray | None]:
        """Both at once where one call gives both (same score as ``predict_row`` to 1e-12)."""
        return self.predict_row(model, row), self.contributions(model, row)

    def params(self, spec: Estimator) -> dict[str, Any]:
        return dict(spec.params)


_BACKENDS: dict[EstimatorKind, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    _BACKENDS[cls.kind] = cls
    return cls


def backend(kind: EstimatorKind | str, task: Task, features: Sequence[Feature]) -> Backend:
    try:
        return _BACKENDS[EstimatorKind(kind)](task, features)
    except (KeyError, ValueError):
        raise UnknownNameError("estimator", str(kind), [k.value for k in _BACKENDS]) from None


def _normalized(values: dict[str, float]) -> dict[str, float]:
    total = sum(values.values()) or 1.0
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    return {k: round(v / total, 6) for k, v in ranked}


@register
class LightGBMBackend(Backend):
    kind = EstimatorKind.LIGHTGBM
    format = "lightgbm-text"

    def params(self, spec: Estimator) -> dict[str, Any]:
        params = {
            "objective": "binary" if self.task is Task.CLASSIFICATION else "regression",
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": 20,
            "verbose": -1,
            "deterministic": True,
            "force_col_wise": True,
        }
        params.update(spec.params)
        return params

    def fit(self, spec: Estimator, data: pa.Table, y: np.ndarray, seed: int) -> Any:
        import lightgbm as lgb

        params = self.params(spec)
        rounds = DEFAULT_ROUNDS
        for alias in _ROUND_ALIASES:
            if alias in params:
                rounds = int(params.pop(alias))
        params["seed"] = params.get("seed", seed)
        categorical = [i for i, f in enumerate(self.features) if f.kind is FeatureKind.CATEGORICAL]
        dataset = lgb.Dataset(
            to_matrix(data, self.features),
            label=y,
            feature_name=[f.name for f in self.features],
            categorical_feature=categorical or "auto",
            params={"verbose": -1},
        )
        return lgb.train(params, dataset, num_boost_round=rounds)

    def predict(self, model: Any, data: pa.Table | pa.RecordBatch) -> np.ndarray:
        return np.asarray(model.predict(to_matrix(data, self.features)), dtype=np.float64)

    def predict_row(self, model: Any, row: np.ndarray) -> float:
        return float(_fast(model, _NORMAL, len(self.features)).predict(row)[0])

    def contributions(self, model: Any, row: np.ndarray) -> np.ndarray | None:
        # SHAP values in raw-score (log-odds) space; the last value is the bias
        return _fast(model, _CONTRIB, len(self.features)).predict(row)[:-1]

    def score_and_contributions(
        self, model: Any, row: np.ndarray
    ) -> tuple[float, np.ndarray | None]:
        # SHAP values add up to the raw score (with the bias), so one call gives both where
        # the objective's link is known: the TreeSHAP call is most of a request's work
        link = _link(model)
        if link is None:
            return super().score_and_contributions(model, row)
        values = _fast(model, _CONTRIB, len(self.features)).predict(row)
        return link(math.fsum(values)), values[:-1]

    def dumps(self, model: Any) -> bytes:
        return str(model.model_to_string()).encode()

    def loads(self, data: bytes) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_str=data.decode())

    def importance(self, model: Any) -> dict[str, float]:
        gains = model.feature_importance(importance_type="gain")
        return _normalized({f.name: float(g) for f, g in zip(self.features, gains, strict=True)})


_NORMAL, _CONTRIB = 0, 3  # LightGBM's C_API_PREDICT_NORMAL / C_API_PREDICT_CONTRIB
_LINKS: dict[int, tuple[Any, Callable[[float], float] | None]] = {}


def _link(booster: Any) -> Callable[[float], float] | None:
    """Raw score -> prediction for the booster's objective; None where it is not plain.

    ``binary sigmoid:s`` is 1 / (1 + exp(-s * raw)); the regression objectives without a
    transform are the raw score. Anything else (multiclass, poisson's exp, custom) keeps
    LightGBM's own prediction.
    """
    found = _LINKS.get(id(booster))
    if found is not None and found[0] is booster:
        return found[1]
    objective = str(booster.dump_model(num_iteration=1).get("objective", ""))
    name, *options = objective.split()
    link: Callable[[float], float] | None = None
    if name == "binary":
        scale = next((float(o.split(":")[1]) for o in options if o.startswith("sigmoid:")), 1.0)

        def link(raw: float) -> float:
            return 1.0 / (1.0 + math.exp(-scale * raw))
    elif name in ("regression", "regression_l1", "huber", "fair", "quantile", "mape"):
        if "sqrt" not in options:

            def link(raw: float) -> float:
                return raw

    _LINKS[id(booster)] = (booster, link)
    return link


class _FastRow:
    """LightGBM's single-row fast path (``LGBM_BoosterPredictForMatSingleRowFast``).

    ``Booster.predict`` builds a predictor and deep-copies its parameters on every call:
    ~60 us for one row, most of an online request. The fast config is made once per
    booster, prediction type and thread (it is not thread-safe) and gives the same
    numbers (tested). It uses lightgbm's own ctypes handle to the library, pinned by the
    package's lightgbm version.
    """

    def __init__(self, booster: Any, predict_type: int, columns: int) -> None:
        import ctypes

        from lightgbm.basic import _c_str, _safe_call
        from lightgbm.libpath import _LIB  # where it is defined; basic only re-imports it

        self._lib, self._check, self._ctypes = _LIB, _safe_call, ctypes
        self.handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(predict_type),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(1),  # float64 rows
                ctypes.c_int32(columns),
                _c_str("num_threads=1"),
                ctypes.byref(self.handle),
            )
        )
        width = columns + 1 if predict_type == _CONTRIB else 1
        self._out = np.empty(width, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._length = ctypes.c_int64()
        self._length_ref = ctypes.byref(self._length)
        # the row is copied into a buffer whose address is taken once: making a ctypes
        # pointer of each request's array cost more than LightGBM's own work on a small tree
        self._in = np.empty(columns, dtype=np.float64)
        self._in_ptr = self._in.ctypes.data_as(ctypes.c_void_p)

    def predict(self, row: np.ndarray) -> np.ndarray:
        self._in[:] = row.reshape(-1)
        self._check(
            self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                self.handle, self._in_ptr, self._length_ref, self._out_ptr
            )
        )
        return self._out.copy()

    def __del__(self) -> None:
        self._lib.LGBM_FastConfigFree(self.handle)


_FAST = threading.local()


def _fast(booster: Any, predict_type: int, columns: int) -> _FastRow:
    cache: dict[tuple[int, int], tuple[Any, _FastRow]] = _FAST.__dict__.setdefault("cache", {})
    key = (id(booster), predict_type)
    found = cache.get(key)
    if found is None or found[0] is not booster:  # a new booster reusing a freed id
        found = (booster, _FastRow(booster, predict_type, columns))
        cache[key] = found
    return found[1]


@register
class XGBoostBackend(Backend):
    kind = EstimatorKind.XGBOOST
    format = "xgboost-json"

    def _xgb(self) -> Any:
        try:
            import xgboost
        except ModuleNotFoundError:
            raise MissingExtraError("xgboost", "xgboost") from None
        return xgboost

    def fit(self, spec: Estimator, data: pa.Table, y: np.ndarray, seed: int) -> Any:
        xgb = self._xgb()
        params = {
            "objective": "binary:logistic"
            if self.task is Task.CLASSIFICATION
            else "reg:squarederror",
            "eta": 0.1,
            "max_depth": 6,
            "seed": seed,
            "nthread": 1,
        }
        params.update(spec.params)
        rounds = DEFAULT_ROUNDS
        for alias in _ROUND_ALIASES:
            if alias in params:
                rounds = int(params.pop(alias))
        matrix = xgb.DMatrix(to_matrix(data, self.features), label=y, missing=np.nan)
        return xgb.train(params, matrix, num_boost_round=rounds)

    def predict(self, model: Any, data: pa.Table | pa.RecordBatch) -> np.ndarray:
        xgb = self._xgb()
        matrix = xgb.DMatrix(to_matrix(data, self.features), missing=np.nan)
        return np.asarray(model.predict(matrix), dtype=np.float64)

    def predict_row(self, model: Any, row: np.ndarray) -> float:
        return float(model.inplace_predict(row)[0])

    def contributions(self, model: Any, row: np.ndarray) -> np.ndarray | None:
        matrix = self._xgb().DMatrix(row, missing=np.nan)
        return np.asarray(model.predict(matrix, pred_contribs=True))[0, :-1]

    def dumps(self, model: Any) -> bytes:
        return bytes(model.save_raw(raw_format="json"))

    def loads(self, data: bytes) -> Any:
        xgb = self._xgb()
        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        return booster


# Types a scikit-learn artifact may hold: anything from these packages and nothing else.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


@register
class SklearnBackend(Backend):
    kind = EstimatorKind.SKLEARN
    format = "skops"

    def fit(self, spec: Estimator, data: pa.Table, y: np.ndarray, seed: int) -> Any:
        from sklearn.base import clone

        model = clone(spec.obj)
        _seed(model, seed)
        return model.fit(to_pandas(data, self.features), y)

    def predict(self, model: Any, data: pa.Table | pa.RecordBatch) -> np.ndarray:
        frame = to_pandas(data, self.features)
        if self.task is Task.CLASSIFICATION:
            return np.asarray(model.predict_proba(frame)[:, 1], dtype=np.float64)
        return np.asarray(model.predict(frame), dtype=np.float64)

    def predict_row(self, model: Any, row: np.ndarray) -> float:
        import pandas as pd

        frame = pd.DataFrame(
            {
                f.name: [f.categories[int(v)] if v == v else None]
                if f.kind is FeatureKind.CATEGORICAL
                else [v]
                for f, v in zip(self.features, row[0], strict=True)
            }
        )
        if self.task is Task.CLASSIFICATION:
            return float(model.predict_proba(frame)[0, 1])
        return float(model.predict(frame)[0])

    def contributions(self, model: Any, row: np.ndarray) -> np.ndarray | None:
        # coefficient x value for a bare linear model; pipelines transform first: unknown
        coef = getattr(model, "coef_", None)
        if coef is None or np.ravel(coef).shape[0] != row.shape[1]:
            return None
        return cast(np.ndarray, np.ravel(coef) * np.nan_to_num(row[0]))

    def dumps(self, model: Any) -> bytes:
        import skops.io as sio

        return canonical_zip(sio.dumps(model))

    def loads(self, data: bytes) -> Any:
        import skops.io as sio

        found = sio.get_untrusted_types(data=data)
        refused = [t for t in found if not t.startswith(TRUSTED_PREFIXES)]
        if refused:
            raise ArtifactError(
                f"the scikit-learn artifact holds types outside the trusted list: "
                f"{', '.join(refused)}",
                hint="only scikit-learn, numpy and scipy types are loaded",
            )
        return sio.loads(data, trusted=found)

    def importance(self, model: Any) -> dict[str, float]:
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        names = [f.name for f in self.features]
        values = getattr(final, "feature_importances_", None)
        if values is None and hasattr(final, "coef_"):
            values = np.abs(np.ravel(final.coef_))
        if values is None or len(values) != len(names):
            return {}
        return _normalized({n: float(v) for n, v in zip(names, values, strict=True)})


def _seed(model: Any, seed: int) -> None:
    params = model.get_params(deep=True)
    fixed = {k: seed for k, v in params.items() if k.endswith("random_state") and v is None}
    if fixed:
        model.set_params(**fixed)


def canonical_zip(data: bytes) -> bytes:
    """The same model as the same bytes.

    skops names array files and tags shared objects by ``id()`` and stamps the zip with
    the time. Here both are renumbered in order of first appearance in ``schema.json`` and
    the entries are written sorted with a fixed timestamp, so equal models get equal
    digests. The mapping is one-to-one, so what loads is unchanged.
    """
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    out[key] = ids.setdefault(value, len(ids) + 1)
                elif key == "file" and isinstance(value, str) and value in names:
                    suffix = value[value.rfind(".") :]
                    out[key] = files.setdefault(value, f"{len(files):05d}{suffix}")
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    names = set(source.namelist()) - {"schema.json"}
    canonical = json.dumps(walk(schema), sort_keys=True).encode()
    unmapped = names - set(files)
    if unmapped:
        raise ArtifactError(f"unexpected files in the skops archive: {sorted(unmapped)}")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        entries = [("schema.json", canonical)]
        entries += [(new, source.read(old)) for old, new in files.items()]
        for name, payload in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, payload)
    return out.getvalue()
