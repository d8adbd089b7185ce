"""The Open Inference Protocol v2 (KServe/Triton) request and response, with binary data.

A request is JSON, or JSON followed by raw tensor bytes when the client uses the binary
tensor data extension: the ``Inference-Header-Content-Length`` header gives the JSON's
length and each input's ``parameters.binary_data_size`` its share of the rest, in input
order. ``data`` may be flat or nested by the shape (row-major). Shapes and datatypes are
checked against the values; a service's inputs are its entity keys (``BYTES`` or an
integer type) and its request features (a number type, or ``BYTES`` for a category).

Outputs are ``score`` (``FP64``) and ``decision`` (``BYTES``); a request may ask for a
subset and for binary outputs (``outputs[].parameters.binary_data`` or the request's
``parameters.binary_data_output``, which tritonclient sets by default).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from gristmill.errors import BadRequest, ServingInputError
from gristmill.serving.http import EXACT_FLOAT_INT, INEXACT, parse_json, unknown_fields

MAX_BATCH = 1_000
HEADER_LENGTH = b"inference-header-content-length"
OUTPUTS = ("score", "decision")
OUTPUT_TYPES = {"score": "FP64", "decision": "BYTES"}

INTEGER_RANGES = {
    "INT8": (-(1 << 7), (1 << 7) - 1),
    "INT16": (-(1 << 15), (1 << 15) - 1),
    "INT32": (-(1 << 31), (1 << 31) - 1),
    "INT64": (-(1 << 63), (1 << 63) - 1),
    "UINT8": (0, (1 << 8) - 1),
    "UINT16": (0, (1 << 16) - 1),
    "UINT32": (0, (1 << 32) - 1),
    "UINT64": (0, (1 << 64) - 1),
}
FLOATS = ("FP16", "FP32", "FP64")
STRUCT = {
    "BOOL": "?",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
DATATYPES = (*STRUCT, "BYTES")
REQUEST_FIELDS = ("id", "parameters", "inputs", "outputs")
TENSOR_FIELDS = ("name", "shape", "datatype", "parameters", "data")
OUTPUT_FIELDS = ("name", "parameters")


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: list[Any]


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[tuple[str, bool]] = field(default_factory=list)
    """Requested outputs and whether each is sent as binary data."""


def parse(raw: bytes, header_length: bytes | None) -> InferRequest:
    """An infer request's JSON (and binary tail) -> checked tensors."""
    split = _header_length(header_length, len(raw))
    body = parse_json(raw[:split] if split is not None else raw)
    binary = memoryview(raw)[split:] if split is not None else memoryview(b"")
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with inputs")
    unknown_fields(body, REQUEST_FIELDS, "")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ServingInputError("id must be a string")
    parameters = _object(body.get("parameters", {}), "parameters")
    default_binary = _flag(parameters.get("binary_data_output", False), "binary_data_output")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ServingInputError("inputs must be a non-empty list of tensors")
    tensors, used = [], 0
    for i, tensor in enumerate(inputs):
        parsed, size = _tensor(tensor, f"inputs[{i}]", binary[used:])
        tensors.append(parsed)
        used += size
    if used != len(binary):
        raise BadRequest(
            f"the body has {len(binary) - used} byte(s) of binary data that no input claims",
            hint="each binary input's parameters.binary_data_size must give its exact size",
        )
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise BadRequest(f"input {twice!r} is given twice")
    return InferRequest(request_id, tensors, _outputs(body.get("outputs"), default_binary))


def _header_length(value: bytes | None, total: int) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) > total:
        raise BadRequest(
            f"Inference-Header-Content-Length is {value.decode(errors='replace')!r}; it must "
            f"be the JSON's length in bytes, at most the body's {total}"
        )
    return int(value)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ServingInputError(f"{where} must be an object")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ServingInputError(f"{where} must be true or false")
    return value


def _tensor(tensor: Any, where: str, binary: memoryview) -> tuple[Tensor, int]:
    if not isinstance(tensor, dict):
        raise ServingInputError(f"{where} must be an object with name, shape, datatype, data")
    unknown_fields(tensor, TENSOR_FIELDS, f"{where}.")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if not isinstance(name, str) or not name:
        raise ServingInputError(f"{where}.name must be a non-empty string")
    where = f"input {name!r}"
    if datatype not in DATATYPES:
        raise ServingInputError(
            f"{where}: datatype {datatype!r} is not one of the protocol's",
            hint=f"datatypes: {', '.join(DATATYPES)}",
        )
    sizes = [_integral(d) for d in shape] if isinstance(shape, list) else []
    dims = [d for d in sizes if d is not None and 0 < d <= MAX_BATCH]
    if not 0 < len(sizes) <= 2 or len(dims) != len(sizes):
        raise ServingInputError(
            f"{where}: shape must be [n] or [n, 1] with n from 1 to {MAX_BATCH}, not {shape!r}"
        )
    shape = dims
    count = math.prod(shape)
    parameters = _object(tensor.get("parameters", {}), f"{where}: parameters")
    for key in parameters:
        if key != "binary_data_size":
            raise ServingInputError(
                f"{where}: parameters.{key} is not supported",
                hint="input parameters: binary_data_size (the binary tensor data extension)",
            )
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise BadRequest(f"{where} has both data and parameters.binary_data_size")
        if type(size) is not int or size < 0:
            raise ServingInputError(f"{where}: binary_data_size must be a byte count, not {size!r}")
        if size > len(binary):
            raise BadRequest(
                f"{where}: binary_data_size {size} is more than the {len(binary)} byte(s) "
                "of binary data left in the body"
            )
        values = _from_binary(bytes(binary[:size]), datatype, count, where)
        return Tensor(name, datatype, tuple(shape), values), size
    if "data" not in tensor:
        raise ServingInputError(f"{where} needs data (or parameters.binary_data_size)")
    values = _values(tensor["data"], shape, where)
    if len(values) != count:
        raise BadRequest(
            f"{where}: shape {shape} holds {count} value(s) but data has {len(values)}",
            hint="make the shape's product equal to the number of values",
        )
    values = [_checked(value, datatype, where) for value in values]
    return Tensor(name, datatype, tuple(shape), values), 0


def _values(data: Any, shape: list[int], where: str) -> list[Any]:
    """``data`` flat, or nested exactly as the shape says (row-major)."""
    if not isinstance(data, list):
        raise ServingInputError(f"{where}: data must be a list (flat, or nested by the shape)")
    if not any(isinstance(item, list) for item in data):
        return data
    if (
        len(shape) == 1
        or len(data) != shape[0]
        or not all(
            isinstance(item, list)
            and len(item) == shape[1]
            and not any(isinstance(v, list) for v in item)
            for item in data
        )
    ):
        wanted = (
            "flat: shape [n] takes no nested lists"
            if len(shape) == 1
            else f"a list of {shape[0]} lists of {shape[1]}, or flat"
        )
        raise BadRequest(f"{where}: nested data must follow the shape {shape} ({wanted})")
    return [value for item in data for value in item]


def _integral(value: Any) -> int | None:
    """An integer, as JSON Schema counts them (``3`` and ``3.0``); else None. A float
    beyond 2**53 is not exact: a JSON integer below -2**63 or above 2**64 - 1 arrives as
    one (-2**63 - 1 would become -2**63, another entity)."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer() and abs(value) <= EXACT_FLOAT_INT:
        return int(value)
    return None


def _checked(value: Any, datatype: str, where: str) -> Any:
    if datatype == "BYTES":
        ok = isinstance(value, str)
    elif datatype == "BOOL":
        ok = isinstance(value, bool)
    elif datatype in FLOATS:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        low, high = INTEGER_RANGES[datatype]
        number = _integral(value) if not isinstance(value, bool) else None
        ok = number is not None and low <= number <= high
        value = number if ok else value
    if not ok:
        shown = _shown(value)
        raise ServingInputError(f"{where}: {shown} is not a {datatype} value")
    return value


def _shown(value: Any) -> str:
    """A value as it was read, saying why an integer the client sent became a float."""
    if type(value) is float and value.is_integer() and abs(value) > EXACT_FLOAT_INT:
        return f"{value!r}{INEXACT.replace('a string', 'BYTES')}"
    return repr(value)


def _from_binary(raw: bytes, datatype: str, count: int, where: str) -> list[Any]:
    if datatype == "BYTES":
        values, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise BadRequest(f"{where}: BYTES data ends inside an element's length")
            (length,) = struct.unpack_from("<I", raw, offset)
            element = raw[offset + 4 : offset + 4 + length]
            if len(element) != length:
                raise BadRequest(f"{where}: BYTES data ends inside an element")
            try:
                values.append(element.decode())
            except UnicodeDecodeError:
                raise ServingInputError(f"{where}: an element is not UTF-8 text") from None
            offset += 4 + length
    else:
        width = struct.calcsize(STRUCT[datatype])
        if len(raw) != width * count:
            raise BadRequest(
                f"{where}: {len(raw)} byte(s) of binary data, but shape and datatype need "
                f"{width * count} ({count} x {width})"
            )
        values = list(struct.unpack(f"<{count}{STRUCT[datatype]}", raw))
    if len(values) != count:
        raise BadRequest(f"{where}: the shape holds {count} value(s); the data has {len(values)}")
    return values


def _outputs(requested: Any, default_binary: bool) -> list[tuple[str, bool]]:
    if requested is None:
        return [(name, default_binary) for name in OUTPUTS]
    if not isinstance(requested, list) or not requested:
        raise ServingInputError("outputs must be a non-empty list of {name, parameters}")
    chosen: list[tuple[str, bool]] = []
    for i, output in enumerate(requested):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise ServingInputError(f"outputs[{i}] must be an object with a name")
        unknown_fields(output, OUTPUT_FIELDS, f"outputs[{i}].")
        name = output["name"]
        if name not in OUTPUTS:
            raise ServingInputError(
                f"outputs[{i}]: the model has no output {name!r}", hint="outputs: score, decision"
            )
        parameters = _object(output.get("parameters", {}), f"outputs[{i}].parameters")
        unsupported = sorted(set(parameters) - {"binary_data"})
        if unsupported:
            raise ServingInputError(
                f"outputs[{i}].parameters.{unsupported[0]} is not supported",
                hint="output parameters: binary_data",
            )
        binary = _flag(parameters.get("binary_data", default_binary), "binary_data")
        if any(name == taken for taken, _ in chosen):
            raise BadRequest(f"outputs[{i}]: output {name!r} is asked for twice")
        chosen.append((name, binary))
    return chosen


def rows(
    request: InferRequest, entity: Sequence[str], features: Sequence[str], numeric: Collection[str]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The request's tensors as one (entity, features) pair per row."""
    by_name = {t.name: t for t in request.inputs}
    for tensor in request.inputs:
        if tensor.name not in entity and tensor.name not in features:
            raise ServingInputError(
                f"input {tensor.name!r} is not an input of this model",
                hint=f"inputs: {', '.join([*entity, *features])}",
            )
        _check_kind(tensor, tensor.name in numeric)
    missing = [k for k in entity if k not in by_name]
    if missing:
        raise ServingInputError(f"input {missing[0]!r} (an entity key) is required")
    sizes = {t.shape[0] for t in request.inputs}
    widths = {math.prod(t.shape[1:]) for t in request.inputs}
    if len(sizes) != 1 or widths != {1}:
        raise BadRequest(
            "every input needs the same batch size and one value per row (shape [n] or [n, 1])",
            hint="; ".join(f"{t.name}: {list(t.shape)}" for t in request.inputs),
        )
    (n,) = sizes
    if not 0 < n <= MAX_BATCH:
        raise ServingInputError(f"a request takes 1 to {MAX_BATCH} rows, not {n}")
    return [
        (
            {k: _key(by_name[k].values[i]) for k in entity},
            {k: t.values[i] for k, t in by_name.items() if k not in entity},
        )
        for i in range(n)
    ]


def _check_kind(tensor: Tensor, numeric: bool) -> None:
    if numeric and tensor.datatype in ("BYTES", "BOOL"):
        raise ServingInputError(
            f"input {tensor.name!r} is a number; send it as FP64 (or another number type)"
        )
    if not numeric and tensor.datatype not in ("BYTES", *INTEGER_RANGES):
        raise ServingInputError(f"input {tensor.name!r} is text; send it as BYTES")


def _key(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def response(
    request: InferRequest, model_name: str, version: int, scores: list[float], decisions: list[str]
) -> tuple[bytes, int | None]:
    """The response body and, when some output is binary, the JSON header's length."""
    data: dict[str, list[float] | list[str]] = {"score": scores, "decision": decisions}
    outputs, tail = [], []
    for name, binary in request.outputs:
        output: dict[str, Any] = {
            "name": name,
            "datatype": OUTPUT_TYPES[name],
            "shape": [len(scores)],
        }
        if binary:
            raw = _to_binary(data[name], OUTPUT_TYPES[name])
            output["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            output["data"] = data[name]
        outputs.append(output)
    body: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = outputs
    head = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not tail:
        return head, None
    return head + b"".join(tail), len(head)


def _to_binary(values: list[Any], datatype: str) -> bytes:
    if datatype == "FP64":
        return np.asarray(values, dtype="<f8").tobytes()
    encoded = [v.encode() for v in values]
    return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
