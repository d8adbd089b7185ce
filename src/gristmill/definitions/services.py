"""Services: a model alias, the features it looks up, and a decision policy.

A service turns a request (an entity and request-time features) into a decision a
business system can act on: online lookups -> feature row -> model score -> action, with
reason codes (the features that pushed the score most). The same service scores online
(``gristmill serve``) and from the command line (``gristmill predict``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gristmill.definitions.models import Model
from gristmill.definitions.objects import Definition, Table, _caller_location, check_name
from gristmill.errors import DefinitionError


class OnMissing(StrEnum):
    ERROR = "error"
    """An entity without online features is an error (HTTP 404)."""
    DEFAULTS = "defaults"
    """Score it with ``defaults`` (features not listed there are missing, NaN)."""


@dataclass(frozen=True)
class Band:
    action: str
    min_score: float


@dataclass(frozen=True)
class DecisionPolicy:
    """Score bands -> named actions, highest band first, plus top-k reason codes."""

    bands: tuple[Band, ...]
    default: str
    reasons: int = 3

    def decide(self, score: float) -> str:
        for band in self.bands:
            if score >= band.min_score:
                return band.action
        return self.default


def decision(
    thresholds: Mapping[str, float], *, default: str = "none", reasons: int = 3
) -> DecisionPolicy:
    """Actions by score: ``{"retention_offer": 0.5, "watch": 0.2}`` -> >= 0.5, >= 0.2, else
    ``default``. ``reasons``: how many reason codes (top feature contributions) to return."""
    location = _caller_location()
    if not thresholds:
        raise DefinitionError("a decision policy needs at least one threshold", location=location)
    if reasons < 0:
        raise DefinitionError("reasons must be 0 or more", location=location)
    bands = sorted((Band(a, float(t)) for a, t in thresholds.items()), key=lambda b: -b.min_score)
    names = [b.action for b in bands] + [default]
    if len(set(names)) != len(names):
        raise DefinitionError(
            f"decision actions must be distinct: {', '.join(names)}", location=location
        )
    return DecisionPolicy(bands=tuple(bands), default=default, reasons=reasons)


@dataclass(frozen=True)
class Service(Definition):
    """Not a graph node: nothing is built for it, and it may share its model's name."""

    model: str
    alias: str
    lookups: tuple[str, ...]
    """Online feature views read by entity."""
    request_features: tuple[str, ...]
    """Features the request carries (they override looked-up values of the same name)."""
    policy: DecisionPolicy
    on_missing: OnMissing = OnMissing.ERROR
    defaults: tuple[tuple[str, Any], ...] = ()
    webhook: str | None = None
    challenger: str | None = None
    """An alias scored beside ``alias`` on every request (shadow), when it exists."""
    challenger_share: float = 0.0
    """Share of requests answered by the challenger instead (0: shadow only)."""

    def validate(self, nodes: Mapping[str, Definition]) -> None:
        """Services live beside the graph (a service may share its model's name)."""
        for name in (self.model, *self.lookups):
            if name not in nodes:
                raise DefinitionError(
                    f"service {self.name!r} reads {name!r}, which the project does not define",
                    location=self.location,
                )
        if not isinstance(nodes[self.model], Model):
            raise DefinitionError(
                f"service {self.name!r}: {self.model!r} is not a model", location=self.location
            )
        for view in self.lookups:
            node = nodes[view]
            if not isinstance(node, Table) or node.feature is None or not node.feature.online:
                raise DefinitionError(
                    f"service {self.name!r}: {view!r} is not an online feature view",
                    location=self.location,
                    hint="lookups read gm.feature_view(..., online=True) tables",
                )


def service(
    name: str,
    *,
    model: str,
    alias: str = "champion",
    lookups: Sequence[str] = (),
    request_features: Sequence[str] = (),
    policy: DecisionPolicy | None = None,
    on_missing: str = "error",
    defaults: Mapping[str, Any] | None = None,
    webhook: str | None = None,
    challenger: str | None = None,
    challenger_share: float = 0.0,
    description: str = "",
) -> Service:
    """Declare a service: ``model``'s ``alias`` fed by online ``lookups`` and the request.

    Args:
        lookups: online feature views; their entity keys are what a request names.
        request_features: model features the request carries (e.g. ``channel``).
        policy: ``gm.decision({...})``; default: a single band at the model's threshold.
        on_missing: ``error`` (404 for an unknown entity) or ``defaults``.
        defaults: feature values used for an unknown entity when ``on_missing="defaults"``.
        webhook: URL that receives each decision as JSON (never blocks the response).
        challenger: an alias (e.g. ``challenger``) scored in shadow on every request.
        challenger_share: share of requests the challenger answers instead (0 to 1).
    """
    location = _caller_location()
    check_name(name, location)
    try:
        missing = OnMissing(on_missing)
    except ValueError:
        raise DefinitionError(
            f"service {name!r}: on_missing must be 'error' or 'defaults', not {on_missing!r}",
            location=location,
        ) from None
    if not 0 <= challenger_share <= 1 or (challenger_share and not challenger):
        raise DefinitionError(
            f"service {name!r}: challenger_share must be 0..1 and needs challenger=",
            location=location,
        )
    return Service(
        name=name,
        location=location,
        description=description,
        model=model,
        alias=alias,
        lookups=tuple(lookups),
        request_features=tuple(request_features),
        policy=policy or DecisionPolicy(bands=(Band("positive", 0.5),), default="negative"),
        on_missing=missing,
        defaults=tuple(sorted((defaults or {}).items())),
        webhook=webhook,
        challenger=challenger,
        challenger_share=challenger_share,
    )
