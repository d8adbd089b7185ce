"""Stalled and surplus connections: a deadline for each request, a bound on connections."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.serving.conftest import Built, Server, start

pytestmark = pytest.mark.slow

PREDICT = "/v1/services/churn/predict"


def _connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_stalled_connections_are_closed_while_others_are_answered(project: Built) -> None:
    server = start(project, "--request-timeout", "2")
    stalled = []
    try:
        for i in range(400):
            sock = _connect(server)
            if i % 3 == 0:  # headers never finished
                sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n".encode())
            elif i % 3 == 1:  # a body that stops halfway
                sock.sendall(
                    f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                    f'Authorization: Bearer {server.keys["service"]}\r\n\r\n{{"ent'.encode()
                )
            stalled.append(sock)  # and a third that sends nothing at all
        with httpx.Client() as client:
            for _ in range(50):
                clock = time.perf_counter()
                assert server.predict(client, "u_0000006").status_code == 200
                assert time.perf_counter() - clock < 1.0
        time.sleep(2.5)
        answers = [_read_all(sock) for sock in stalled]  # the server closed every one
        timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
        assert len(timed_out) == 400, {a[:30] for a in answers}
        assert b"did not arrive whole within 2 s" in timed_out[0]
        with httpx.Client() as client:
            assert server.predict(client, "u_0000006").status_code == 200
        # a kept-alive connection whose second request stalls gets its 408 too
        sock = _connect(server)
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n".encode())
        assert _read_all(sock).startswith(b"HTTP/1.1 408")
        stalled.append(sock)
    finally:
        for sock in stalled:
            sock.close()
        server.stop()


def test_connections_beyond_the_bound_get_503_with_retry_after(project: Built) -> None:
    server = start(project, "--max-connections", "50")
    held = [_connect(server) for _ in range(50)]
    try:
        time.sleep(0.2)
        r = httpx.post(
            f"{server.url}{PREDICT}",
            json={"entity": {"user_id": "u_0000006"}},
            headers=server.headers(),
        )
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "retry in a second" in r.json()["message"]
        for sock in held[:10]:
            sock.close()
        time.sleep(0.2)
        with httpx.Client() as client:
            assert server.predict(client, "u_0000006").status_code == 200
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_malformed_requests_are_logged_once_a_minute_without_tracebacks(project: Built) -> None:
    server = start(project)
    try:
        for i in range(300):
            sock = _connect(server)
            sock.sendall(b"\x16\x03\x01 not http at all %d\r\n\r\n" % i)  # e.g. TLS to plain
            assert _read_all(sock).startswith(b"HTTP/1.1 400")
            sock.close()
        with httpx.Client() as client:
            assert server.predict(client, "u_0000006").status_code == 200
    finally:
        server.stop()
    log = server.stderr()
    assert log.count("Invalid HTTP request received") == 1, log[-3000:]
    assert "Traceback" not in log


def test_a_failing_alias_reload_is_logged_once_not_every_tick(project: Built) -> None:
    import sqlite3

    server = start(project, "--reload-every", "0.1")
    try:
        with sqlite3.connect(project.root / ".gristmill" / "catalog.db") as conn:
            conn.execute("ALTER TABLE model_aliases RENAME TO model_aliases_gone")
        time.sleep(2)
        with httpx.Client() as client:  # the loaded version goes on serving
            assert server.predict(client, "u_0000006").status_code == 200
            with sqlite3.connect(project.root / ".gristmill" / "catalog.db") as conn:
                conn.execute("ALTER TABLE api_tokens RENAME TO api_tokens_gone")
            time.sleep(1.2)
            unknown = client.post(  # an unknown key makes it re-read the keys: it cannot
                f"{server.url}{PREDICT}",
                json={"entity": {"user_id": "u_0000006"}},
                headers={"Authorization": "Bearer gm_new_key"},
            )
        assert unknown.status_code == 503, unknown.text
        assert "the catalog cannot answer: no such table: api_tokens" in unknown.json()["message"]
        with sqlite3.connect(project.root / ".gristmill" / "catalog.db") as conn:
            conn.execute("ALTER TABLE model_aliases_gone RENAME TO model_aliases")
            conn.execute("ALTER TABLE api_tokens_gone RENAME TO api_tokens")
        time.sleep(1)
    finally:
        server.stop()
    log = server.stderr()
    assert log.count("could not reload a moved alias") == 1, log[-3000:]
    assert "no such table: model_aliases" in log and "reloading aliases works again" in log
