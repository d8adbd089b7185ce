"""A service at run time: lookup -> encode -> score -> decide, as stages of one signature.

Each stage takes the ``Call`` being answered and fills in its part; the runtime is the
list of stages. The hot path stays out of pandas and Arrow: the online store returns
JSON arrays, ``RowEncoder`` makes the model's float row, the booster scores it, the
policy names the action and the model's own contributions give the reason codes.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from gristmill.definitions.services import OnMissing, Service
from gristmill.errors import (
    EntityNotFound,
    ServiceConfigError,
    ServingInputError,
    UnknownModelError,
)
from gristmill.execution.ml.bundle import LoadedModel
from gristmill.execution.ml.features import FeatureKind, RowEncoder
from gristmill.serving.http import EXACT_FLOAT_INT, INEXACT
from gristmill.storage.online import OnlineStore
from gristmill.storage.online.base import entity_key


@dataclass(frozen=True)
class View:
    """An online feature view as a service reads it."""

    name: str
    entity: tuple[str, ...]
    columns: tuple[str, ...]


@dataclass
class Call:
    """One prediction on its way through the stages."""

    entity: dict[str, Any]
    given: dict[str, Any]
    features: dict[str, Any] = field(default_factory=dict)
    found: bool = True
    row: np.ndarray | None = None
    score: float = float("nan")
    contributions: np.ndarray | None = None
    decision: str = ""
    reasons: list[dict[str, Any]] = field(default_factory=list)


Stage = Callable[[Call], None]


@dataclass
class Prediction:
    request_id: str
    service: str
    model: str
    model_version: int
    entity: dict[str, Any]
    score: float
    decision: str
    reasons: list[dict[str, Any]]
    features: dict[str, Any]
    found: bool
    latency_ms: float
    variant: str = "champion"
    shadow: Prediction | None = None
    """The other version's answer to the same request (logged, not returned)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "service": self.service,
            "model": self.model,
            "model_version": self.model_version,
            "entity": self.entity,
            "score": self.score,
            "decision": self.decision,
            "reasons": self.reasons,
            "found": self.found,
            "latency_ms": self.latency_ms,
            "variant": self.variant,
        }


class Lookup:
    def __init__(self, spec: Service, views: Sequence[View], store: OnlineStore) -> None:
        self.spec = spec
        self.views = tuple(views)
        self.store = store
        self.defaults = dict(spec.defaults)

    def __call__(self, call: Call) -> None:
        for view in self.views:
            key = entity_key([call.entity[k] for k in view.entity])
            (raw,) = self.store.get(view.name, [key])
            if raw is None:
                if self.spec.on_missing is OnMissing.ERROR:
                    raise EntityNotFound(
                        f"no online features in {view.name!r} for "
                        + ", ".join(f"{k}={call.entity[k]!r}" for k in view.entity),
                        hint="check the entity, or serve it with on_missing='defaults'",
                    )
                call.found = False
                call.features.update(self.defaults)
                continue
            call.features.update(zip(view.columns, orjson.loads(raw), strict=True))


class Encode:
    """Request features (checked by ``ServiceRuntime.check``) over looked-up ones -> a row."""

    def __init__(self, model: LoadedModel) -> None:
        self.encoder = RowEncoder(model.manifest.features)

    def __call__(self, call: Call) -> None:
        call.features.update(call.given)
        call.row = self.encoder.encode(call.features)


class Score:
    """The score and, when the policy gives reasons, the feature contributions."""

    def __init__(self, model: LoadedModel, reasons: bool) -> None:
        self.model = model
        self.reasons = reasons

    def __call__(self, call: Call) -> None:
        assert call.row is not None
        backend, model = self.model.backend, self.model.model
        if self.reasons:
            call.score, call.contributions = backend.score_and_contributions(model, call.row)
        else:
            call.score = backend.predict_row(model, call.row)


class Decide:
    def __init__(self, spec: Service, model: LoadedModel) -> None:
        self.policy = spec.policy
        self.model = model
        self.names = model.feature_names

    def __call__(self, call: Call) -> None:
        call.decision = self.policy.decide(call.score)
        contributions = call.contributions
        if self.policy.reasons == 0 or contributions is None:
            return
        top = np.argsort(-contributions, kind="stable")[: self.policy.reasons].tolist()
        values = contributions.tolist()
        call.reasons = [
            {
                "feature": self.names[i],
                "value": call.features.get(self.names[i]),
                "contribution": round(values[i], 6),
            }
            for i in top
        ]


class _Variant:
    """One model version's stages after the lookup: encode, score, decide."""

    def __init__(self, name: str, spec: Service, model: LoadedModel, views: Sequence[View]):
        _check_sources(spec, model, views)
        self.name = name
        self.model = model
        self.stages: tuple[Stage, ...] = (
            Encode(model),
            Score(model, spec.policy.reasons > 0),
            Decide(spec, model),
        )

    def run(self, looked_up: Call, *, alone: bool = False) -> Call:
        """The stages on a copy of the looked-up call (on the call itself when ``alone``)."""
        call = looked_up if alone else Call(
            entity=looked_up.entity,
            given=looked_up.given,
            features=dict(looked_up.features),
            found=looked_up.found,
        )  # fmt: skip
        for stage in self.stages:
            stage(call)
        return call


class ServiceRuntime:
    """A service ready to answer: its model version(s) loaded, its stages built.

    With a challenger, both versions score every request from the same looked-up
    features; ``challenger_share`` of the requests get the challenger's answer and the
    rest the champion's, and the other answer is returned as the ``shadow`` (logged, not
    sent to the caller).
    """

    def __init__(
        self,
        spec: Service,
        model: LoadedModel,
        views: Sequence[View],
        store: OnlineStore,
        *,
        challenger: LoadedModel | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.spec = spec
        self.model = model
        self.challenger = challenger
        self.views = tuple(views)
        self.entity = tuple(dict.fromkeys(k for v in self.views for k in v.entity))
        self.lookup = Lookup(spec, self.views, store)
        self.primary = _Variant("champion", spec, model, self.views)
        self.secondary = (
            _Variant("challenger", spec, challenger, self.views) if challenger else None
        )
        self.draw = draw
        self._numeric = self.numeric

    @property
    def versions(self) -> tuple[int, int | None]:
        return self.model.version, self.challenger.version if self.challenger else None

    @property
    def categorical(self) -> frozenset[str]:
        """Model features the champion reads as categories."""
        return frozenset(
            f.name for f in self.model.manifest.features if f.kind is FeatureKind.CATEGORICAL
        )

    @property
    def numeric(self) -> frozenset[str]:
        """Request features that some served version reads as a number."""
        models = [self.model] + ([self.challenger] if self.challenger else [])
        return frozenset(
            f.name
            for m in models
            for f in m.manifest.features
            if f.kind is FeatureKind.NUMERIC and f.name in self.spec.request_features
        )

    def check(
        self, entity: Any, features: Any, where: str = ""
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """A request's entity and features, validated; errors name the field at ``where``."""
        if not isinstance(entity, dict):
            raise ServingInputError(
                f"{where}entity must be an object, e.g. "
                + orjson.dumps({k: "..." for k in self.entity}).decode()
            )
        keys = {}
        for key, value in entity.items():
            if key not in self.entity:
                raise ServingInputError(
                    f"{where}entity.{key} is not an entity key of service {self.spec.name!r}",
                    hint=f"entity keys: {', '.join(self.entity)}",
                )
            text = _key_text(value)
            if text is None:
                raise ServingInputError(
                    f"{where}entity.{key} must be a string or an integer"
                    + (INEXACT if type(value) is float and value.is_integer() else "")
                )
            keys[key] = text
        missing = [k for k in self.entity if not keys.get(k)]
        if missing:
            raise ServingInputError(f"{where}entity.{missing[0]} is required")
        if not isinstance(features, dict):
            raise ServingInputError(f"{where}features must be an object")
        given = {}
        for name, value in features.items():
            if name not in self.spec.request_features:
                raise ServingInputError(
                    f"{where}features.{name} is not a request feature of {self.spec.name!r}",
                    hint=f"request features: {', '.join(self.spec.request_features) or 'none'}",
                )
            given[name] = self._feature(name, value, where)
        return keys, given

    def _feature(self, name: str, value: Any, where: str) -> Any:
        if value is None:
            return None
        if name in self._numeric:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ServingInputError(f"{where}features.{name} must be a number, not {value!r}")
            return value
        text = _key_text(value)
        if text is None:
            raise ServingInputError(
                f"{where}features.{name} must be a string (a category), not {value!r}"
            )
        return text

    def predict(self, entity: Mapping[str, Any], features: Mapping[str, Any]) -> Prediction:
        """Check the request, then answer it."""
        return self.answer(*self.check(dict(entity), dict(features)))

    def answer(
        self, entity: dict[str, str], features: dict[str, Any], *, version: int | None = None
    ) -> Prediction:
        """Answer a request that ``check`` accepted; ``version``: by that version alone."""
        clock = time.perf_counter()
        call = Call(entity=entity, given=features)
        self.lookup(call)
        request_id = _request_id()
        if version is not None:
            chosen = self.variant(version)
            return self._prediction(request_id, chosen, chosen.run(call, alone=True), clock)
        if self.secondary is None:
            primary = self.primary
            return self._prediction(request_id, primary, primary.run(call, alone=True), clock)
        served, other = self.primary, self.secondary
        if self.draw() < self.spec.challenger_share:
            served, other = other, served
        answer = self._prediction(request_id, served, served.run(call), clock)
        answer.shadow = self._prediction(request_id, other, other.run(call), clock)
        return answer

    @property
    def served_versions(self) -> list[int]:
        return [v.model.version for v in (self.primary, self.secondary) if v is not None]

    def variant(self, version: int) -> _Variant:
        """The served variant of model ``version``."""
        for variant in (self.primary, self.secondary):
            if variant is not None and variant.model.version == version:
                return variant
        raise UnknownModelError(
            f"service {self.spec.name!r} does not serve version {version} of {self.model.name!r}",
            hint="served versions: " + ", ".join(map(str, self.served_versions)),
        )

    def _prediction(
        self, request_id: str, variant: _Variant, call: Call, clock: float
    ) -> Prediction:
        return Prediction(
            request_id=request_id,
            service=self.spec.name,
            model=variant.model.name,
            model_version=variant.model.version,
            entity={k: call.entity[k] for k in self.entity},
            score=call.score,
            decision=call.decision,
            reasons=call.reasons,
            features=call.features,
            found=call.found,
            latency_ms=round((time.perf_counter() - clock) * 1000, 3),
            variant=variant.name,
        )


class _RequestIds:
    """Unique request ids: 16 random hex digits per process, then a counter (32 in all).

    Ids are not secrets; they only must never repeat, across workers and restarts too.
    A counter after a random prefix costs a tenth of a random UUID per request.
    """

    def __init__(self) -> None:
        self.restart()
        os.register_at_fork(after_in_child=self.restart)  # a forked child: its own prefix

    def restart(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = 0

    def __call__(self) -> str:
        self._count += 1
        return f"{self._prefix}{self._count:016x}"


_request_id = _RequestIds()


def _key_text(value: Any) -> str | None:
    """An entity key or category as text: strings, and integers (``7`` or ``7.0``)."""
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    if type(value) is float and value.is_integer() and abs(value) <= EXACT_FLOAT_INT:
        return str(int(value))
    return None  # a float beyond 2**53 (a JSON integer too large for 64 bits) is not exact


def _check_sources(spec: Service, model: LoadedModel, views: Sequence[View]) -> None:
    available = {c for v in views for c in v.columns} | set(spec.request_features)
    available |= {k for k, _ in spec.defaults}
    numeric = {f.name for f in model.manifest.features if f.kind is FeatureKind.NUMERIC}
    for name, value in spec.defaults:
        if name in numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ServiceConfigError(
                f"service {spec.name!r}: defaults[{name!r}] is {value!r}, but "
                f"{model.name} v{model.version} reads {name!r} as a number",
                location=spec.location,
                hint="give a number (or leave it out: a missing feature is NaN)",
            )
    missing = [f for f in model.feature_names if f not in available]
    if missing:
        raise ServiceConfigError(
            f"service {spec.name!r}: {model.name} v{model.version} needs "
            f"{', '.join(missing)}, which no lookup, request feature or default provides",
            location=spec.location,
            hint="add the feature view to lookups=, or list them in request_features=",
        )
