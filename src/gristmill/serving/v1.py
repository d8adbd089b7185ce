"""The ``/v1`` predict request and the reply of a batch.

A request is ``{"entity": {...}, "features": {...}}`` or ``{"instances": [one, ...]}``
(up to ``MAX_BATCH``); nothing else is read, and an unknown field is refused by name. A
batch answers every instance in order: a failed instance (an unknown entity, say) is
``null`` in ``predictions`` and described in ``errors`` by its index, while the others
are answered; the status is 200 when at least one instance was answered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gristmill.errors import BadRequest, GristmillError, ServingInputError
from gristmill.serving.http import Reply, json_reply, unknown_fields
from gristmill.serving.runtime import Prediction, ServiceRuntime

MAX_BATCH = 1_000
ONE_FIELDS = ("entity", "features")
BATCH_FIELDS = ("instances",)


def instances(
    body: Any, runtime: ServiceRuntime
) -> tuple[list[tuple[dict[str, str], dict[str, Any]]], bool]:
    """The checked (entity, features) of each instance, and whether it was a batch."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with entity (or instances)")
    if "instances" not in body:
        return [_one(body, runtime, "")], False
    if "entity" in body or "features" in body:
        raise ServingInputError(
            "send either entity (one prediction) or instances (a batch), not both"
        )
    unknown_fields(body, BATCH_FIELDS, "")
    items = body["instances"]
    if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
        raise ServingInputError(f"instances must be a list of 1 to {MAX_BATCH} objects")
    return [_one(item, runtime, f"instances[{i}].") for i, item in enumerate(items)], True


def _one(item: Any, runtime: ServiceRuntime, where: str) -> tuple[dict[str, str], dict[str, Any]]:
    if not isinstance(item, dict):
        raise ServingInputError(f"{where.rstrip('.') or 'the body'} must be an object with entity")
    unknown_fields(item, ONE_FIELDS, where)
    if "entity" not in item:
        raise ServingInputError(f'{where}entity is required, e.g. {{"entity": {{...}}}}')
    return runtime.check(item["entity"], item.get("features", {}), where)


def batch_reply(
    results: Sequence[Prediction | GristmillError], status_of: Callable[[GristmillError], int]
) -> Reply:
    predictions: list[dict[str, Any] | None] = []
    errors: list[dict[str, Any]] = []
    for i, result in enumerate(results):
        if isinstance(result, Prediction):
            predictions.append(result.to_dict())
            continue
        predictions.append(None)
        errors.append({"index": i, **result.to_dict(), "status": status_of(result)})
    if errors and len(errors) == len(results):
        status = errors[0]["status"]
        first = errors[0]
        return json_reply(
            {
                "error": first["error"],
                "message": f"no instance could be answered; instances[0]: {first['message']}",
                "hint": first["hint"],
                "status": status,
                "predictions": predictions,
                "errors": errors,
            },
            status,
        )
    return json_reply({"predictions": predictions, "errors": errors})
