"""Path traversal against the three ``{filename}`` endpoints: nothing outside a kind's folder is served."""

from __future__ import annotations

import os

import pytest
from tests.support.settings import make_settings

from neuronscope import create_app

SECRET = "TOP-SECRET-MARKER-7f3a"
KINDS = ("activations", "clusters", "queries")

PAYLOADS = [
    "../secret.json",
    "..%2fsecret.json",
    "%2e%2e%2fsecret.json",
    "%2e%2e/secret.json",
    "..%252fsecret.json",
    "%252e%252e%252fsecret.json",
    "....//secret.json",
    "..%5csecret.json",
    "..\\secret.json",
    "%2e%2e%5c%2e%2e%5csecret.json",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "secret.json%00.json",
    "secret.json%00",
    "..",
    ".",
    "%2e%2e",
    ".secret.json",
    "..%c0%afsecret.json",
    "%c0%ae%c0%ae%c0%afsecret.json",
    "C:%5cWindows%5cwin.ini",
    "file:%2f%2f%2fetc%2fpasswd",
    "~%2fsecret.json",
    "..;/secret.json",
    "secret.json%20",
    "a" * 300 + ".json",
    "secret",
    "link.npz",
    "%252e%252e%255csecret.json",
]


@pytest.fixture(scope="module")
def data_app(models_dir, tmp_path_factory):
    """An app with one file of each kind, a secret beside the data dir, and planted symlinks."""
    tmp_path = tmp_path_factory.mktemp("traversal")
    client = create_app(make_settings(tmp_path / "data", models_dir)).test_client()
    activation = client.post("/api/activations/generate", json={"prompt": "Hello world"}).json["filename"]
    cluster = client.post("/api/clusters/generate", json={"activation_file": activation, "layer_index": 0, "n_clusters": 2}).json["filename"]
    query = client.post("/api/queries/neuron", json={"layer_index": 0, "neuron_index": 0}).json["filename"]
    secret = tmp_path / "secret.json"
    secret.write_text(f'{{"prompt": "{SECRET}", "n_layers": 1, "tokens": ["{SECRET}"]}}')
    data = tmp_path / "data"
    for kind in KINDS:
        os.symlink(secret, data / kind / "link.json")
        os.symlink(secret, data / kind / "link.npz")
    return client, {"activations": activation, "clusters": cluster, "queries": query}, data


def assert_refused(response) -> None:
    assert response.status_code in (400, 404), (response.status_code, response.data[:200])
    assert response.is_json and set(response.json) == {"error", "details"}
    assert SECRET not in response.get_data(as_text=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_traversal_payloads_are_refused(data_app, kind, payload):
    client, _, _ = data_app
    assert_refused(client.get(f"/api/{kind}/{payload}"))


@pytest.mark.parametrize("kind", KINDS)
def test_symlink_inside_data_pointing_outside_is_refused(data_app, kind):
    client, _, _ = data_app
    assert_refused(client.get(f"/api/{kind}/link.json"))
    assert "link.json" not in client.get(f"/api/{kind}/files").json["files"]


@pytest.mark.parametrize("kind", KINDS)
def test_another_kinds_file_is_not_found(data_app, kind):
    client, names, _ = data_app
    for other, name in names.items():
        response = client.get(f"/api/{kind}/{name}")
        if other == kind:
            assert response.status_code == 200
        else:
            assert_refused(response)


def test_a_symlinked_sidecar_is_refused(data_app):
    client, names, data = data_app
    sidecar = data / "activations" / names["activations"].replace(".json", ".npz")
    kept = sidecar.with_name("kept.bin")
    sidecar.rename(kept)
    os.symlink(data.parent / "secret.json", sidecar)
    try:
        assert_refused(client.get(f"/api/activations/{names['activations']}"))
    finally:
        sidecar.unlink()
        kept.rename(sidecar)
    assert client.get(f"/api/activations/{names['activations']}").status_code == 200


def test_file_names_in_bodies_are_checked_too(data_app):
    client, names, _ = data_app
    for name in ["../secret.json", "link.json", "/etc/passwd", "secret.json\x00", names["clusters"]]:
        assert_refused(client.post("/api/clusters/generate", json={"activation_file": name, "layer_index": 0, "n_clusters": 2}))
        assert_refused(client.post("/api/queries/cluster", json={"cluster_id": 0, "cluster_file": name.replace(names["clusters"], names["queries"])}))
