"""``image-proxy serve`` as a user runs it: a real process, the embedded default, curl-like use."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.images import decode
from tests.support.processes import wait_answering
from tests.support.servers import free_port


def printed(process: subprocess.Popen[bytes]) -> str:
    """What a stopped ``process`` printed (its output, piped)."""
    assert process.stdout is not None
    return process.stdout.read().decode(errors="replace") if process.poll() is not None else ""


def test_serve_embedded_default_answers_with_a_png() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_answering(process, url, 30, lambda: printed(process))
        response = httpx.post(f"{url}/v1/images/generations", timeout=60,
                              json={"model": "local", "prompt": "a red apple"})
        assert response.status_code == 200
        assert decode(response.json()["data"][0]["b64_json"]).size == (1024, 1024)
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_serve_without_a_traceback(workers: int) -> None:
    """Ctrl-C (SIGINT) on ``serve`` as run in a terminal: the server stops and the command exits
    130, the status of an interrupted command, saying nothing of a KeyboardInterrupt (uvicorn
    re-raises the signal once it has shut down, and asyncio turned that into a traceback)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port),
                                "--workers", str(workers)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_answering(process, f"http://127.0.0.1:{port}", 30, lambda: printed(process))
        time.sleep(0.5 * workers)  # every worker has installed its signal handlers
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = output.decode(errors="replace")
    assert process.returncode in (0, 130), text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
