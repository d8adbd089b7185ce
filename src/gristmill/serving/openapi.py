"""The OpenAPI 3.1 document of the serving app, as strict as the server.

Each served service gets its own paths with its own request schema (its entity keys and
request features, typed; no other field), so a body is valid by the document exactly
when the server reads it. What JSON Schema cannot say is in the descriptions: an OIP
input's ``shape`` must hold as many values as its ``data`` (else 400), and the binary
tensor data extension (a JSON header plus raw bytes, not describable as JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gristmill import __version__
from gristmill.serving.oip import FLOATS, INTEGER_RANGES, MAX_BATCH, OUTPUT_TYPES

if TYPE_CHECKING:
    from gristmill.definitions.sources.intake import IntakeSource
    from gristmill.serving.runtime import ServiceRuntime

REF = "#/components/schemas/"
INT_MINIMUM, INT_MAXIMUM = -(1 << 63), (1 << 64) - 1
"""Bounds of an integer input: from INT64's minimum to UINT64's maximum."""
ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "location": {"type": ["string", "null"]},
        "hint": {"type": ["string", "null"]},
        "status": {"type": "integer"},
        "predictions": {"type": "array"},
        "errors": {"type": "array"},
    },
    "required": ["error", "message", "status"],
}
OIP_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "the message"},
        "type": {"type": "string"},
        "hint": {"type": ["string", "null"]},
        "status": {"type": "integer"},
    },
    "required": ["error"],
}
REASON = {
    "type": "object",
    "properties": {
        "feature": {"type": "string"},
        "value": {},
        "contribution": {"type": "number"},
    },
    "required": ["feature", "value", "contribution"],
}
PREDICTION = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string"},
        "service": {"type": "string"},
        "model": {"type": "string"},
        "model_version": {"type": "integer"},
        "entity": {"type": "object"},
        "score": {"type": ["number", "null"]},
        "decision": {"type": "string"},
        "reasons": {"type": "array", "items": {"$ref": REF + "Reason"}},
        "found": {"type": "boolean"},
        "latency_ms": {"type": "number"},
        "variant": {"type": "string"},
    },
    "required": ["request_id", "service", "model_version", "score", "decision", "reasons"],
}
INSTANCE_ERROR = {
    "type": "object",
    "properties": {"index": {"type": "integer"}, **ERROR["properties"]},  # type: ignore[dict-item]
    "required": ["index", "error", "message", "status"],
}
BATCH = {
    "type": "object",
    "description": "One entry per instance, in order: null where that instance failed, "
    "described in errors by its index.",
    "properties": {
        "predictions": {
            "type": "array",
            "items": {"anyOf": [{"$ref": REF + "Prediction"}, {"type": "null"}]},
        },
        "errors": {"type": "array", "items": {"$ref": REF + "InstanceError"}},
    },
    "required": ["predictions", "errors"],
}
TENSOR_OUT = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
    "required": ["name", "datatype", "shape"],
}
INFER_RESPONSE = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": {"$ref": REF + "OutputTensor"}},
    },
    "required": ["model_name", "outputs"],
}
TENSOR_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
MODEL_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": TENSOR_META},
        "outputs": {"type": "array", "items": TENSOR_META},
    },
    "required": ["name", "platform", "inputs", "outputs"],
}


def openapi(
    runtimes: Mapping[str, ServiceRuntime], intake: Mapping[str, IntakeSource] | None = None
) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": ERROR,
        "OipError": OIP_ERROR,
        "Reason": REASON,
        "Prediction": PREDICTION,
        "InstanceError": INSTANCE_ERROR,
        "Batch": BATCH,
        "OutputTensor": TENSOR_OUT,
        "InferResponse": INFER_RESPONSE,
        "ModelMetadata": MODEL_METADATA,
    }
    paths: dict[str, Any] = {
        "/v2": {"get": _get("server metadata", _object({"name": {}, "version": {}}), False)},
        "/v2/health/live": {"get": _get("live", _object({"live": {"type": "boolean"}}), False)},
        "/v2/health/ready": {"get": _ready()},
        "/metrics": {"get": _text_get("Prometheus text exposition")},
        "/openapi.json": {"get": _get("this document", {"type": "object"}, True)},
    }
    for name, runtime in sorted(runtimes.items()):
        schemas.update(_service_schemas(name, runtime))
        paths[f"/v1/services/{name}/predict"] = {"post": _predict(name)}
        for base in (f"/v2/models/{name}", f"/v2/models/{name}/versions/{{version}}"):
            versioned = "{version}" in base
            paths[base] = {"get": _oip_get("model metadata", REF + "ModelMetadata", versioned)}
            paths[f"{base}/ready"] = {
                "get": _oip_get("model ready", None, versioned),
            }
            paths[f"{base}/infer"] = {"post": _infer(name, versioned)}
    if intake:
        schemas["IntakeAccepted"] = INTAKE_ACCEPTED
    for name, source in sorted((intake or {}).items()):
        paths[f"/v1/intake/{name}"] = {"post": _intake(name, source)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gristmill serving", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }


INTAKE_ACCEPTED = {
    "type": "object",
    "properties": {
        "source": {"type": "string"},
        "request": {"type": "integer", "description": "the request's number in the buffer"},
        "rows": {"type": "integer"},
        "duplicate": {
            "type": "boolean",
            "description": "true: a retry of a request already stored (stored once)",
        },
    },
    "required": ["source", "request", "rows", "duplicate"],
}


def _intake(name: str, source: IntakeSource) -> dict[str, Any]:
    """Any JSON object is taken as a row (its columns are checked when the rows land, a
    row that breaks the contract quarantined then), so the body schema says only that."""
    from gristmill.execution.sources.intake import MAX_ROWS_PER_REQUEST
    from gristmill.serving.intake import LINES

    line_types = [kind.decode() for kind in LINES]

    declared = ", ".join(source.contract.columns) or "any"
    rows = {
        "anyOf": [
            {"type": "array", "items": {"type": "object"}, "maxItems": MAX_ROWS_PER_REQUEST},
            {"type": "object"},
        ],
        "description": f"rows of {name}: an array of objects, one object, or JSON lines "
        f"(declared columns: {declared})",
    }
    lines = {"type": "string", "description": "one JSON object per line"}
    return {
        "summary": f"Rows for the intake source {name}, acknowledged once stored",
        **_secured(True),
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the same on every retry of one request: stored once",
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": rows},
                **{kind: {"schema": lines} for kind in line_types},
            },
        },
        "responses": {
            "202": {
                "description": "stored durably; landed by `gristmill ingest`",
                **_json({"$ref": REF + "IntakeAccepted"}),
            },
            **_errors(400, 401, 403, 409, 413, 415),
            "429": {
                "description": "the buffer is full",
                "headers": {"Retry-After": {"schema": {"type": "integer"}, "required": True}},
                **_json({"$ref": REF + "Error"}),
            },
        },
    }


def _service_schemas(name: str, runtime: ServiceRuntime) -> dict[str, Any]:
    categorical = runtime.categorical
    features = {
        f: {"type": ["string", "integer", "null"]}
        if f in categorical
        else {"type": ["number", "null"]}
        for f in runtime.spec.request_features
    }
    one = {
        "type": "object",
        "properties": {
            "entity": {
                "type": "object",
                "properties": {
                    k: {"type": ["string", "integer"], "minLength": 1, **_int_bounds()}
                    for k in runtime.entity
                },
                "required": list(runtime.entity),
                "additionalProperties": False,
            },
            "features": {"type": "object", "properties": features, "additionalProperties": False},
        },
        "required": ["entity"],
        "additionalProperties": False,
    }
    batch = {
        "type": "object",
        "properties": {
            "instances": {
                "type": "array",
                "items": {"$ref": f"{REF}{name}.One"},
                "minItems": 1,
                "maxItems": MAX_BATCH,
            }
        },
        "required": ["instances"],
        "additionalProperties": False,
    }
    inputs = [_input(k, ("BYTES", "INT64", "INT32"), key=True) for k in runtime.entity]
    inputs += [
        _input(
            f,
            ("BYTES", "INT64", "INT32") if f in categorical else ("FP64", "FP32", "INT64", "INT32"),
        )
        for f in runtime.spec.request_features
    ]
    infer = {
        "type": "object",
        "description": "Each input's shape is [n] or [n, 1], n the same for every input "
        "(1 to 1000), and its product equals the number of values in data: else 400. "
        "The binary tensor data extension (Inference-Header-Content-Length) is also read.",
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
            "inputs": {
                "type": "array",
                "items": {"oneOf": [b for i in inputs for b in i]},
                "minItems": 1,
                "allOf": [
                    {"contains": {"type": "object", "properties": {"name": {"const": k}}}}
                    for k in runtime.entity
                ],
            },
            "outputs": {
                "type": "array",
                "minItems": 1,
                "maxItems": len(OUTPUT_TYPES),
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"enum": list(OUTPUT_TYPES)},
                        "parameters": {
                            "type": "object",
                            "properties": {"binary_data": {"type": "boolean"}},
                            "additionalProperties": False,
                        },
                    },
                    "required": ["name"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["inputs"],
        "additionalProperties": False,
    }
    return {f"{name}.One": one, f"{name}.Batch": batch, f"{name}.Infer": infer}


def _int_bounds() -> dict[str, int]:
    return {"minimum": INT_MINIMUM, "maximum": INT_MAXIMUM}


def _input(name: str, datatypes: tuple[str, ...], key: bool = False) -> list[dict[str, Any]]:
    """One schema per datatype an input may be sent as (values typed accordingly); an
    entity key's strings are not empty."""
    branches = []
    for datatype in datatypes:
        if datatype == "BYTES":
            value: dict[str, Any] = {"type": "string", **({"minLength": 1} if key else {})}
        elif datatype in FLOATS:
            value = {"type": "number"}
        else:
            low, high = INTEGER_RANGES[datatype]
            value = {"type": "integer", "minimum": low, "maximum": high}
        branches.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": name},
                    "datatype": {"const": datatype},
                    "shape": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH},
                        "minItems": 1,
                        "maxItems": 2,
                    },
                    "data": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"anyOf": [value, {"type": "array", "items": value}]},
                    },
                },
                "required": ["name", "datatype", "shape", "data"],
                "additionalProperties": False,
            }
        )
    return branches


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


def _errors(*codes: int, oip: bool = False) -> dict[str, Any]:
    schema = {"$ref": REF + ("OipError" if oip else "Error")}
    out: dict[str, Any] = {}
    for code in codes:
        entry: dict[str, Any] = {"description": "error", **_json(schema)}
        if code == 401:
            entry["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "required": True}
            }
        out[str(code)] = entry
    return out


def _secured(secured: bool) -> dict[str, Any]:
    return {"security": [{"bearer": []}]} if secured else {"security": []}


def _get(summary: str, schema: dict[str, Any], secured: bool, *extra: int) -> dict[str, Any]:
    codes = (*((401, 403) if secured else ()), *extra)
    return {
        "summary": summary,
        **_secured(secured),
        "responses": {"200": {"description": summary, **_json(schema)}, **_errors(*codes)},
    }


def _ready() -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"ready": {"type": "boolean"}, "reason": {"type": "string"}},
        "required": ["ready"],
    }
    return {
        "summary": "ready: 200; not ready (no model, or the log cannot be written): 503",
        **_secured(False),
        "responses": {
            "200": {"description": "ready", **_json(schema)},
            "503": {"description": "not ready", **_json(schema)},
        },
    }


def _text_get(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        **_secured(True),
        "description": 'Needs a viewer key or above unless [serve] metrics = "public".',
        "responses": {
            "200": {
                "description": summary,
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **_errors(401, 403),
        },
    }


def _version_param(versioned: bool) -> list[dict[str, Any]]:
    if not versioned:
        return []
    return [{"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}]


def _oip_get(summary: str, ref: str | None, versioned: bool) -> dict[str, Any]:
    schema = {"$ref": ref} if ref else _object({"name": {}, "ready": {"type": "boolean"}})
    return {
        "summary": summary,
        "parameters": _version_param(versioned),
        **_secured(True),
        "responses": {
            "200": {"description": summary, **_json(schema)},
            **_errors(401, 403, 404, oip=True),
        },
    }


def _predict(name: str) -> dict[str, Any]:
    return {
        "summary": f"Score one entity (or a batch of instances) with {name} and decide",
        **_secured(True),
        "requestBody": {
            "required": True,
            **_json({"oneOf": [{"$ref": f"{REF}{name}.One"}, {"$ref": f"{REF}{name}.Batch"}]}),
        },
        "responses": {
            "200": {
                "description": "the prediction, or a batch's predictions and errors",
                **_json({"oneOf": [{"$ref": REF + "Prediction"}, {"$ref": REF + "Batch"}]}),
            },
            **_errors(400, 401, 403, 404, 413, 415, 422, 503),
        },
    }


def _infer(name: str, versioned: bool) -> dict[str, Any]:
    return {
        "summary": f"Open Inference Protocol v2 inference with {name}",
        "parameters": _version_param(versioned),
        **_secured(True),
        "requestBody": {"required": True, **_json({"$ref": f"{REF}{name}.Infer"})},
        "responses": {
            "200": {
                "description": "outputs (binary outputs: application/octet-stream with "
                "Inference-Header-Content-Length)",
                "content": {
                    "application/json": {"schema": {"$ref": REF + "InferResponse"}},
                    "application/octet-stream": {"schema": {"type": "string"}},
                },
            },
            **_errors(400, 401, 403, 404, 413, 415, 422, 503, oip=True),
        },
    }
