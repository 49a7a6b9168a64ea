"""``image-proxy serve`` as a user runs it: a real process, the embedded default, curl-like use."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.support.images import decode
from tests.support.servers import free_port


def test_serve_embedded_default_answers_with_a_png() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)
        response = httpx.post(f"{url}/v1/images/generations", timeout=60,
                              json={"model": "local", "prompt": "a red apple"})
        assert response.status_code == 200
        assert decode(response.json()["data"][0]["b64_json"]).size == (1024, 1024)
    finally:
        process.terminate()
        process.wait(timeout=15)
