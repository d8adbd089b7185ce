"""The Open Inference Protocol v2 with a real client: tritonclient over HTTP, JSON and binary."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from gristmill.workspace import Workspace
from tests.serving.conftest import Server

pytestmark = pytest.mark.slow

USERS = ["u_0000006", "u_0000011", "u_0000019"]


@pytest.fixture
def client(server: Server) -> triton.InferenceServerClient:
    with triton.InferenceServerClient(server.url.removeprefix("http://")) as client:
        yield client


def auth(server: Server, role: str = "service") -> dict[str, str]:
    return server.headers(role)  # a new dict each call: tritonclient adds to the one it gets


def users(binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("user_id", [len(USERS)], "BYTES")
    tensor.set_data_from_numpy(np.array(USERS, dtype=object), binary_data=binary)
    return tensor


def expected(server: Server) -> list[tuple[float, str]]:
    ws = Workspace.open(server.root)
    answers = [ws.services.predict("churn", {"user_id": u}) for u in USERS]
    ws.close()
    return [(a.score, a.decision) for a in answers]


def test_health_server_and_model_metadata(
    server: Server, client: triton.InferenceServerClient
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "gristmill" and "binary_tensor_data" in meta["extensions"]
    assert client.is_model_ready("churn", headers=auth(server, "viewer"))
    assert client.is_model_ready("churn", "1", headers=auth(server))
    assert not client.is_model_ready("churn", "9", headers=auth(server))
    assert not client.is_model_ready("nope", headers=auth(server))
    model = client.get_model_metadata("churn", "1", headers=auth(server))
    assert model["versions"] == ["1"] and model["platform"] == "lightgbm"
    assert [i["name"] for i in model["inputs"]] == ["user_id"]
    assert {o["name"]: o["datatype"] for o in model["outputs"]} == {
        "score": "FP64",
        "decision": "BYTES",
    }


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
@pytest.mark.parametrize("version", ["", "1"])
def test_infer_json_and_binary(
    server: Server,
    client: triton.InferenceServerClient,
    binary_in: bool,
    binary_out: bool,
    version: str,
) -> None:
    outputs = [
        triton.InferRequestedOutput(n, binary_data=binary_out) for n in ("score", "decision")
    ]
    result = client.infer(
        "churn",
        [users(binary_in)],
        model_version=version,
        outputs=outputs,
        request_id="r-17",
        headers=auth(server),
    )
    scores = result.as_numpy("score")
    decisions = [d.decode() if isinstance(d, bytes) else d for d in result.as_numpy("decision")]
    assert list(zip(scores.tolist(), decisions, strict=True)) == expected(server)
    response = result.get_response()
    assert response["id"] == "r-17" and response["model_version"] == "1"


def test_default_outputs_are_binary_and_a_requested_subset_is_all_that_comes(
    server: Server, client: triton.InferenceServerClient
) -> None:
    result = client.infer("churn", [users(True)], headers=auth(server))  # no outputs: binary
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    only = client.infer(
        "churn",
        [users(False)],
        outputs=[triton.InferRequestedOutput("score", binary_data=False)],
        headers=auth(server),
    )
    assert [o["name"] for o in only.get_response()["outputs"]] == ["score"]
    assert only.as_numpy("decision") is None


def test_errors_carry_the_message(server: Server, client: triton.InferenceServerClient) -> None:
    nobody = triton.InferInput("user_id", [1], "BYTES")
    nobody.set_data_from_numpy(np.array(["nobody"], dtype=object))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("churn", [nobody], headers=auth(server))
    assert caught.value.status() == "404"
    assert "no online features in 'user_profile' for user_id='nobody'" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("churn", [users(True)], model_version="9", headers=auth(server))
    assert "does not serve version 9" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("churn", [users(True)], headers=auth(server, "viewer"))
    assert caught.value.status() == "403" and "may not" in caught.value.message()


def _infer(server: Server, body: object) -> tuple[int, str]:
    import httpx

    r = httpx.post(f"{server.url}/v2/models/churn/infer", json=body, headers=auth(server))
    return r.status_code, r.json().get("error", "")


@pytest.mark.parametrize(
    ("tensor", "status", "says"),
    [
        (
            {"shape": [5], "datatype": "BYTES", "data": USERS},
            400,
            "holds 5 value(s) but data has 3",
        ),
        ({"shape": [3], "datatype": "FP32", "data": USERS}, 422, "is not a FP32 value"),
        ({"shape": [3], "datatype": "STRING", "data": USERS}, 422, "datatype 'STRING'"),
        ({"shape": [3], "datatype": "INT8", "data": [1, 2, 300]}, 422, "300 is not a INT8"),
        ({"shape": [3], "datatype": "BYTES"}, 422, "needs data"),
        ({"shape": [3], "datatype": "BYTES", "data": USERS, "x": 1}, 422, "x is not a field"),
        ({"shape": [3, 2], "datatype": "BYTES", "data": USERS * 2}, 400, "one value per row"),
        ({"shape": [0], "datatype": "BYTES", "data": []}, 422, "shape must be [n]"),
        ({"shape": [3], "datatype": "BYTES", "data": [USERS]}, 400, "shape [n] takes no nested"),
        (  # past 64 bits JSON parsers give a float: -2**63 - 1 must not become -2**63
            {"shape": [1], "datatype": "INT64", "data": [-(2**63) - 1]},
            422,
            "-9.223372036854776e+18 (it arrived as a float beyond 2**53",
        ),
        ({"shape": [3, 1], "datatype": "BYTES", "data": [[USERS]]}, 400, "must follow"),
        ({"shape": [2, 1], "datatype": "BYTES", "data": [["a"], ["b", "c"]]}, 400, "must follow"),
        ({"shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": -1}}, 422, "byte"),
    ],
)
def test_shapes_and_datatypes_are_checked(
    server: Server, tensor: dict, status: int, says: str
) -> None:
    assert _infer(server, {"inputs": [{"name": "user_id", **tensor}]})[0] == status
    assert says in _infer(server, {"inputs": [{"name": "user_id", **tensor}]})[1]


def test_nested_data_follows_the_shape(server: Server) -> None:
    import httpx

    body = {"inputs": [{"name": "user_id", "shape": [3, 1], "datatype": "BYTES",
                        "data": [[u] for u in USERS]}]}  # fmt: skip
    r = httpx.post(f"{server.url}/v2/models/churn/infer", json=body, headers=auth(server))
    assert r.status_code == 200, r.text
    score = {o["name"]: o for o in r.json()["outputs"]}["score"]
    assert score["data"] == [s for s, _ in expected(server)] and score["shape"] == [3]


def test_unknown_inputs_and_outputs_are_named(server: Server) -> None:
    base = {"name": "user_id", "shape": [1], "datatype": "BYTES", "data": [USERS[0]]}
    other = {**base, "name": "shop"}
    assert "input 'shop' is not an input" in _infer(server, {"inputs": [base, other]})[1]
    assert "given twice" in _infer(server, {"inputs": [base, base]})[1]
    assert (
        "no output 'prob'" in _infer(server, {"inputs": [base], "outputs": [{"name": "prob"}]})[1]
    )
    assert _infer(server, {"inputs": [base], "oops": 1}) == (422, "oops is not a field here")
    twice = {"inputs": [base], "outputs": [{"name": "score"}, {"name": "score"}]}
    assert _infer(server, twice) == (400, "outputs[1]: output 'score' is asked for twice")
