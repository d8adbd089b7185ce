"""Promotion gates: small comparisons written as text in a model spec.

A gate compares one metric of the candidate with a number or with the same kind of
metric of another model version (``champion``), plus or minus a margin::

    "roc_auc >= 0.70"
    "roc_auc >= champion.roc_auc - 0.005"
    "log_loss <= champion.log_loss"
    "roc_auc.low >= 0.65"          # the lower bound of the bootstrap 95% interval

Gates are parsed with ``ast`` (never evaluated), so a typo fails at load time with its
location, not at promotion time.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gristmill.errors import DefinitionError, Location

_OPS: dict[type[ast.cmpop], tuple[str, Callable[[float, float], bool]]] = {
    ast.GtE: (">=", operator.ge),
    ast.Gt: (">", operator.gt),
    ast.LtE: ("<=", operator.le),
    ast.Lt: ("<", operator.lt),
}
PARTS = ("value", "low", "high")
REFERENCES = ("champion", "challenger")


@dataclass(frozen=True)
class MetricRef:
    """``roc_auc`` or ``roc_auc.low``, of the candidate or of an aliased version."""

    metric: str
    part: str = "value"
    alias: str | None = None

    def __str__(self) -> str:
        base = f"{self.alias}.{self.metric}" if self.alias else self.metric
        return base if self.part == "value" else f"{base}.{self.part}"

    def resolve(self, metrics: Mapping[str, Mapping[str, Any]]) -> float | None:
        entry = metrics.get(self.metric)
        if entry is None or entry.get(self.part) is None:
            return None
        return float(entry[self.part])


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    left: float | None
    right: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "passed": self.passed,
            "candidate": self.left,
            "bound": self.right,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Gate:
    text: str
    left: MetricRef
    op: str
    right: MetricRef | None
    offset: float

    @property
    def references(self) -> set[str]:
        return {self.right.alias} if self.right and self.right.alias else set()

    def check(
        self,
        candidate: Mapping[str, Mapping[str, Any]],
        others: Mapping[str, Mapping[str, Mapping[str, Any]] | None],
    ) -> GateResult:
        """Compare the candidate's metrics with a bound; ``others`` maps alias -> metrics."""
        left = self.left.resolve(candidate)
        if left is None:
            return GateResult(self.text, False, None, None, f"the candidate has no {self.left}")
        if self.right is None:
            bound = self.offset
        else:
            assert self.right.alias is not None
            reference = others.get(self.right.alias)
            if reference is None:
                return GateResult(
                    self.text, True, left, None, f"no {self.right.alias} yet: nothing to compare"
                )
            value = self.right.resolve(reference)
            if value is None:
                return GateResult(
                    self.text, True, left, None, f"the {self.right.alias} has no {self.right}"
                )
            bound = value + self.offset
        passed = _compare(self.op, left, bound)
        return GateResult(
            self.text, passed, left, bound, f"{left:.4f} {self.op} {bound:.4f}: {passed}"
        )


def _compare(op: str, left: float, right: float) -> bool:
    return next(fn for symbol, fn in _OPS.values() if symbol == op)(left, right)


def parse_gate(text: str, known_metrics: tuple[str, ...], location: Location) -> Gate:
    def fail(why: str) -> DefinitionError:
        return DefinitionError(
            f"gate {text!r}: {why}",
            location=location,
            hint="write `metric >= number` or `metric >= champion.metric - margin`; "
            f"metrics: {', '.join(known_metrics)}",
        )

    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise fail("not a comparison") from None
    if not isinstance(tree, ast.Compare) or len(tree.ops) != 1:
        raise fail("not a single comparison")
    op = _OPS.get(type(tree.ops[0]))
    if op is None:
        raise fail("use one of >=, >, <=, <")
    left = _metric(tree.left, known_metrics, fail, allow_alias=False)
    right, offset = _bound(tree.comparators[0], known_metrics, fail)
    return Gate(text=text.strip(), left=left, op=op[0], right=right, offset=offset)


def _bound(
    node: ast.expr, known: tuple[str, ...], fail: Callable[[str], DefinitionError]
) -> tuple[MetricRef | None, float]:
    number = _number(node)
    if number is not None:
        return None, number
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        margin = _number(node.right)
        if margin is None:
            raise fail("the margin must be a number")
        ref = _metric(node.left, known, fail, allow_alias=True)
        return ref, margin if isinstance(node.op, ast.Add) else -margin
    return _metric(node, known, fail, allow_alias=True), 0.0


def _number(node: ast.expr) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand)
        return -inner if inner is not None else None
    return None


def _metric(
    node: ast.expr,
    known: tuple[str, ...],
    fail: Callable[[str], DefinitionError],
    *,
    allow_alias: bool,
) -> MetricRef:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.insert(0, node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise fail("expected a metric name")
    names.insert(0, node.id)
    alias = None
    if names[0] in REFERENCES:
        if not allow_alias:
            raise fail(f"the left side is the candidate's metric, not {names[0]}'s")
        alias = names.pop(0)
    elif allow_alias and len(names) == 1:
        raise fail(f"{names[0]!r}: compare with a number or champion.{names[0]}")
    if not names or names[0] not in known:
        raise fail(f"unknown metric {'.'.join(names)!r}")
    part = names[1] if len(names) > 1 else "value"
    if len(names) > 2 or part not in PARTS:
        raise fail(f"{'.'.join(names)!r}: a metric part is one of {', '.join(PARTS[1:])}")
    return MetricRef(metric=names[0], part=part, alias=alias)
