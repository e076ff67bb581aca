"""`edgezo serve model`: a real uvicorn server on a loopback port, API keys, budgets, malformed input."""

import base64

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from edgezo.host.service.auth import Credential, load_credentials, parse_spec  # noqa: E402
from edgezo.host.service.client import HttpBlackBox  # noqa: E402
from edgezo.host.service.model_server import create_model_app  # noqa: E402
from edgezo.host.service.runner import ServerThread  # noqa: E402

from edgezo.adapters.robustify.blackbox import BlackBoxError, OnnxBlackBox, QueryBudgetExceeded  # noqa: E402
from edgezo.adapters.robustify.onnx_export import export_module  # noqa: E402

pytestmark = pytest.mark.service

KEY, SMALL, LABELS = "key-unlimited-0001", "key-small-budget-01", "key-labels-only-001"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    path = tmp_path_factory.mktemp("model") / "clf.onnx"
    export_module(model, torch.randn(2, 4), path, output_name="logits")
    return path


@pytest.fixture(scope="module")
def server(onnx_model):
    keys = [Credential("a", KEY, None), Credential("b", SMALL, 10)]
    with ServerThread(create_model_app(onnx_model, keys)) as srv:
        yield srv


def _post(server, body, key=KEY):
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(f"{server.url}/v1/predict", json=body, headers=headers, timeout=10)


def test_predict_returns_probabilities_only(server, onnx_model):
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    r = _post(server, {"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"probabilities", "queries_used", "queries_left"}
    assert np.allclose(body["probabilities"], OnnxBlackBox(onnx_model)(x).numpy(), atol=1e-6)
    labels = _post(server, {"inputs": x.tolist(), "output": "labels"}).json()["labels"]
    assert labels == np.argmax(body["probabilities"], -1).tolist()
    b64 = _post(server, {"inputs_b64": base64.b64encode(x.tobytes()).decode(), "shape": [5, 4]}).json()
    assert b64["probabilities"] == body["probabilities"]


def test_missing_or_wrong_key_is_401(server):
    x = [[0.0] * 4]
    assert _post(server, {"inputs": x}, key=None).status_code == 401
    r = _post(server, {"inputs": x}, key="not-a-valid-key")
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    assert httpx.get(f"{server.url}/v1/model", timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_budget_refuses_whole_request_with_429(server):
    assert _post(server, {"inputs": [[0.0] * 4] * 8}, key=SMALL).json()["queries_left"] == 2
    r = _post(server, {"inputs": [[0.0] * 4] * 3}, key=SMALL)
    assert r.status_code == 429 and "8 of 10" in r.json()["detail"]
    usage = httpx.get(f"{server.url}/v1/usage", headers={"X-API-Key": SMALL}, timeout=10).json()
    assert usage["queries_used"] == 8 and usage["queries_left"] == 2  # the refused request cost nothing


@pytest.mark.parametrize("body,fragment", [
    ({"inputs": [[0.0] * 5]}, "shape [4]"),
    ({"inputs": [[0.0, 1.0], [2.0]]}, "rectangular"),
    ({"inputs": []}, "non-empty"),
    ({"inputs": [[0.0] * 4], "weights": True}, "Extra inputs"),
    ({"inputs_b64": "!!!", "shape": [1, 4]}, "base64"),
    ({"inputs_b64": base64.b64encode(b"\0" * 12).decode(), "shape": [1, 4]}, "holds 3"),
    ({}, "exactly one"),
])
def test_malformed_requests_are_422(server, body, fragment):
    r = _post(server, body)
    assert r.status_code == 422
    assert fragment in str(r.json()["detail"])


def test_openapi_exposes_no_weights(server):
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert set(spec["paths"]) == {"/healthz", "/v1/model", "/v1/usage", "/v1/predict"}
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]
    info = httpx.get(f"{server.url}/v1/model", headers={"X-API-Key": KEY}, timeout=10).json()
    assert info == {"input_shape": [4], "num_classes": 3, "output": "probabilities", "dtype": "float32"}


def test_http_black_box_client(server, onnx_model):
    x = torch.randn(7, 4)
    remote = HttpBlackBox(server.url, KEY, max_batch=3)
    assert remote.input_shape == (4,) and remote.num_classes == 3
    assert torch.allclose(remote(x), OnnxBlackBox(onnx_model)(x), atol=1e-6)
    assert remote.queries == 7 and remote.calls == 1
    with pytest.raises(BlackBoxError, match="refused the API key"):
        HttpBlackBox(server.url, "wrong-key-000000")
    small = HttpBlackBox(server.url, SMALL)
    with pytest.raises(QueryBudgetExceeded, match="budget exhausted"):
        small(torch.zeros(50, 4))


def test_labels_only_endpoint(onnx_model):
    app = create_model_app(onnx_model, [Credential("c", LABELS, None)], output="labels")
    with ServerThread(app) as srv:
        r = _post(srv, {"inputs": [[0.0] * 4]}, key=LABELS)
        assert r.status_code == 200 and set(r.json()) == {"labels", "queries_used", "queries_left"}
        assert _post(srv, {"inputs": [[0.0] * 4], "output": "probabilities"}, key=LABELS).status_code == 403
        with pytest.raises(BlackBoxError, match="labels only"):
            HttpBlackBox(srv.url, LABELS)
        assert HttpBlackBox(srv.url, LABELS, output="labels").labels(torch.zeros(2, 4)).shape == (2,)


def test_credentials_from_env_and_toml(tmp_path, monkeypatch):
    creds = parse_spec("secret-aaaa:100, secret-bbbb")
    assert [(c.secret, c.limit) for c in creds] == [("secret-aaaa", 100), ("secret-bbbb", None)]
    with pytest.raises(ValueError, match="shorter than 8"):
        parse_spec("short")
    monkeypatch.delenv("EDGEZO_MODEL_KEYS", raising=False)
    with pytest.raises(ValueError, match="EDGEZO_MODEL_KEYS"):
        load_credentials(None, "keys", "EDGEZO_MODEL_KEYS")
    f = tmp_path / "keys.toml"
    f.write_text('[keys]\nalice = { key = "k-alice-123456", budget = 5 }\n')
    assert load_credentials(f, "keys", "EDGEZO_MODEL_KEYS") == [Credential("alice", "k-alice-123456", 5)]
    f.write_text('[tokens]\nx = { token = "t-1234567890" }\n')
    with pytest.raises(ValueError, match=r"no \[keys\] table"):
        load_credentials(f, "keys", "EDGEZO_MODEL_KEYS")
