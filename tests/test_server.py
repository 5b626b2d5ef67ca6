"""run_api_server.py on the real WSGI server (waitress), with a tiny model."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, dict(response.headers), json.loads(response.read())


@pytest.fixture
def server(models_dir, tmp_path):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "NEURONSCOPE_DATA_DIR": str(tmp_path / "data"),
           "NEURONSCOPE_MODELS_DIR": str(models_dir), "NEURONSCOPE_MODEL": "tiny-llama", "NEURONSCOPE_OFFLINE": "1",
           "NEURONSCOPE_INDEX_DEFAULT_CORPUS": "0"}
    env.pop("HOST", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_api_server.py")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            get_json(base + "/api/health")
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read())
            time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def test_server_serves_with_model_preloaded_on_localhost(server):
    status, headers, body = get_json(server + "/api/health")
    assert status == 200 and body["model"] == "tiny-llama" and body["model_ready"] is True
    assert headers["Server"] == "NeuronScope"
    assert server.startswith("http://127.0.0.1:")


def test_server_errors_are_json(server):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server + "/api/nope", timeout=5)
    assert info.value.code == 404
    assert set(json.loads(info.value.read())) == {"error", "details"}


def test_help_documents_options():
    out = subprocess.run([sys.executable, str(ROOT / "run_api_server.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--host", "--port", "--model", "--device", "--data-dir"):
        assert flag in out.stdout


def test_bad_configuration_stops_the_server_with_a_message_not_a_traceback(tmp_path):
    env = {**os.environ, "NEURONSCOPE_EXECUTOR": "dask", "NEURONSCOPE_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, str(ROOT / "run_api_server.py")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert "NEURONSCOPE_EXECUTOR must be local or ray" in out.stderr and "Traceback" not in out.stderr
