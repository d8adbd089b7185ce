"""The OpenAPI document of the serving app (what clients and schemathesis read)."""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "location": {"type": ["string", "null"]},
        "hint": {"type": ["string", "null"]},
        "status": {"type": "integer"},
    },
    "required": ["error", "message"],
}
ONE = {
    "type": "object",
    "properties": {
        "entity": {
            "type": "object",
            "additionalProperties": {"type": ["string", "integer"]},
            "example": {"user_id": "u_0000006"},
        },
        "features": {"type": "object", "additionalProperties": True},
    },
    "required": ["entity"],
}
PREDICTION = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string"},
        "service": {"type": "string"},
        "model": {"type": "string"},
        "model_version": {"type": "integer"},
        "entity": {"type": "object"},
        "score": {"type": "number"},
        "decision": {"type": "string"},
        "reasons": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "feature": {"type": "string"},
                    "value": {},
                    "contribution": {"type": "number"},
                },
            },
        },
        "found": {"type": "boolean"},
        "latency_ms": {"type": "number"},
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(c): {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def openapi(services: list[str]) -> dict[str, Any]:
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": services} if services else {"type": "string"},
    }
    security = [{"bearer": []}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "Gristmill serving", "version": "1"},
        "components": {
            "schemas": {"Error": ERROR, "One": ONE, "Prediction": PREDICTION},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/services/{name}/predict": {
                "post": {
                    "summary": "Score one entity (or a batch of instances) and decide",
                    "parameters": [name],
                    "security": security,
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/One"},
                                    {
                                        "type": "object",
                                        "properties": {
                                            "instances": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/One"},
                                                "minItems": 1,
                                                "maxItems": 1000,
                                            }
                                        },
                                        "required": ["instances"],
                                    },
                                ]
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "prediction(s)",
                            **_json({"$ref": "#/components/schemas/Prediction"}),
                        },
                        **_errors(400, 401, 403, 404, 413, 422, 503),
                    },
                }
            },
            "/v2/health/live": {"get": {"responses": {"200": {"description": "live"}}}},
            "/v2/health/ready": {"get": {"responses": {"200": {"description": "ready"}}}},
            "/v2/models/{name}": {
                "get": {
                    "parameters": [name],
                    "security": security,
                    "responses": {"200": {"description": "metadata"}, **_errors(401, 403, 404)},
                }
            },
            "/v2/models/{name}/infer": {
                "post": {
                    "parameters": [name],
                    "security": security,
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "inputs": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "name": {"type": "string"},
                                                "shape": {
                                                    "type": "array",
                                                    "items": {"type": "integer"},
                                                },
                                                "datatype": {"type": "string"},
                                                "data": {"type": "array"},
                                            },
                                            "required": ["name", "data"],
                                        },
                                    },
                                },
                                "required": ["inputs"],
                            }
                        ),
                    },
                    "responses": {
                        "200": {"description": "outputs"},
                        **_errors(400, 401, 403, 404, 413, 422, 503),
                    },
                }
            },
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text"}}}},
        },
    }
