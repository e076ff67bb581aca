"""`edgezo serve robustify`: real uvicorn servers on loopback ports — auth, budgets, malformed requests,
a job end to end, cancel, and restart-and-resume after the service process is killed."""

import json
import signal
import time

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from edgezo.host.service.auth import Credential  # noqa: E402
from edgezo.host.service.model_server import create_model_app  # noqa: E402
from edgezo.host.service.robustify_server import create_robustify_app  # noqa: E402
from edgezo.host.service.runner import ServerThread  # noqa: E402

from edgezo.adapters.robustify.onnx_export import export_module  # noqa: E402

pytestmark = pytest.mark.service

MODEL_KEY, POOR_KEY = "model-key-000001", "model-key-poor-01"
TOKEN, OTHER, QUOTA = "token-alpha-0001", "token-beta-00002", "token-quota-0003"

# A job small enough for a test: 48 training images, 2 certified, latent d_z = 4, CGE.
SETTINGS = {"latent_dim": 4, "batch_size": 8, "ae_epochs": 1, "warmup_epochs": 1, "epochs": 2, "n0": 10, "n": 40,
            "denoiser_width": 4, "denoiser_depth": 3, "ae_width": 4, "checkpoint_every": 2}


@pytest.fixture(scope="module")
def model_server(tmp_path_factory, digits):
    torch.manual_seed(0)
    clf = torch.nn.Linear(64, 10)
    path = tmp_path_factory.mktemp("model") / "digits.onnx"
    export_module(clf, digits.x_test[:2], path, output_name="logits")
    keys = [Credential("defender", MODEL_KEY, None), Credential("poor", POOR_KEY, 150)]
    with ServerThread(create_model_app(path, keys)) as srv:
        yield srv


def _job(model_server, budget=100_000, key=MODEL_KEY, **over):
    body = {"target": {"url": model_server.url, "api_key": key}, "data": {"dataset": "digits", "train_size": 48,
            "test_size": 2}, "query_budget": budget, "estimator": "cge", "settings": dict(SETTINGS)}
    body.update(over)
    return body


def _client(url, token=TOKEN):
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _wait(client, job_id, done=("completed", "failed", "cancelled"), timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in done:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job['progress']}")


@pytest.fixture
def service(tmp_path):
    tokens = [Credential("alpha", TOKEN, None), Credential("beta", OTHER, None), Credential("q", QUOTA, 1000)]
    app = create_robustify_app(tmp_path / "jobs.sqlite", tmp_path / "work", tokens, poll_interval=0.05)
    with ServerThread(app) as srv:
        yield srv


def test_auth_is_required_everywhere(service):
    for method, path in [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/x"),
                         ("POST", "/v1/jobs/x/cancel"), ("GET", "/v1/jobs/x/artifacts"),
                         ("GET", "/v1/jobs/x/artifacts/metrics.json")]:
        r = httpx.request(method, service.url + path, timeout=10)
        assert r.status_code == 401, (method, path)
        assert r.headers["www-authenticate"] == "Bearer"
        bad = httpx.request(method, service.url + path, headers={"Authorization": "Bearer nope-nope-nope"},
                            timeout=10)
        assert bad.status_code == 401
    spec = httpx.get(service.url + "/openapi.json", timeout=10).json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/artifacts",
            "/v1/jobs/{job_id}/artifacts/{name}"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


@pytest.mark.parametrize("mutate,status,fragment", [
    (lambda b: b.pop("target"), 422, "target"),
    (lambda b: b.update(colour="red"), 422, "colour"),
    (lambda b: b["target"].update(url="ftp://x"), 422, "url"),
    (lambda b: b.update(query_budget=-5), 422, "query_budget"),
    (lambda b: b.update(sigma=0), 422, "sigma"),
    (lambda b: b["settings"].update(latent_dmi=3), 422, "unknown robustify setting"),
    (lambda b: b["settings"].update(q=3), 422, "top level"),
    (lambda b: b.update(data={"dataset": "imagenet"}), 422, "unknown dataset"),
    (lambda b: b.update(query_budget=50), 422, "too small"),
    (lambda b: b["target"].update(api_key="wrong-key-00000"), 422, "refused the API key"),
])
def test_malformed_or_impossible_jobs_are_422(service, model_server, mutate, status, fragment):
    body = _job(model_server)
    mutate(body)
    with _client(service.url) as c:
        r = c.post("/v1/jobs", json=body)
    assert r.status_code == status, r.text
    assert fragment in json.dumps(r.json()["detail"])


def test_job_end_to_end_and_isolation(service, model_server):
    import onnxruntime as ort

    with _client(service.url) as c:
        r = c.post("/v1/jobs", json=_job(model_server))
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["request"]["target"]["api_key"] == "***"
        done = _wait(c, job["id"])
        assert done["status"] == "completed", done["error"]
        assert done["queries_used"] == done["result"]["queries"]["total"] > 0
        assert set(done["result"]["certified_accuracy"]) == {"0", "0.25", "0.5", "0.75"}
        names = {a["name"] for a in c.get(f"/v1/jobs/{job['id']}/artifacts").json()["artifacts"]}
        assert {"frontend.onnx", "denoiser_encoder.onnx", "decoder.onnx", "certification.json"} <= names
        report = c.get(f"/v1/jobs/{job['id']}/artifacts/certification.json").json()
        assert report["certified_accuracy"] == done["result"]["certified_accuracy"]
        onnx_bytes = c.get(f"/v1/jobs/{job['id']}/artifacts/denoiser_encoder.onnx").content
        z = ort.InferenceSession(onnx_bytes).run(None, {"x": np.zeros((3, 1, 8, 8), np.float32)})[0]
        assert z.shape == (3, 4)
        assert c.get(f"/v1/jobs/{job['id']}/artifacts/checkpoint.pt").status_code == 404
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
        assert c.get("/v1/jobs/0123").status_code == 404
    with _client(service.url, OTHER) as other:  # another token sees nothing of it
        assert other.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert other.get("/v1/jobs").json() == {"jobs": []}


def test_budget_exhausted_at_the_target_fails_the_job(service, model_server):
    with _client(service.url) as c:
        job = c.post("/v1/jobs", json=_job(model_server, key=POOR_KEY)).json()
        done = _wait(c, job["id"])
    assert done["status"] == "failed" and "budget exhausted" in done["error"]


def test_token_quota_is_429(service, model_server):
    with _client(service.url, QUOTA) as c:
        r = c.post("/v1/jobs", json=_job(model_server, budget=5000))
    assert r.status_code == 429 and "quota exhausted" in r.json()["detail"]


def test_queued_job_cancel_and_artifacts_409(tmp_path, model_server):
    app = create_robustify_app(tmp_path / "jobs.sqlite", tmp_path / "work", [Credential("a", TOKEN, None)],
                               start_worker=False)
    with ServerThread(app) as srv, _client(srv.url) as c:
        job = c.post("/v1/jobs", json=_job(model_server)).json()
        assert job["status"] == "queued"
        r = c.get(f"/v1/jobs/{job['id']}/artifacts")
        assert r.status_code == 409 and "queued" in r.json()["detail"]
        r = c.post(f"/v1/jobs/{job['id']}/cancel")
        assert r.status_code == 202 and r.json()["status"] == "cancelled"
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409


def test_running_job_can_be_cancelled(service, model_server):
    with _client(service.url) as c:
        job = c.post("/v1/jobs", json=_job(model_server, settings=dict(SETTINGS, epochs=200))).json()
        deadline = time.monotonic() + 60
        while c.get(f"/v1/jobs/{job['id']}").json()["progress"].get("stage") != "stability":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
        done = _wait(c, job["id"], timeout=60)
    assert done["status"] == "cancelled" and done["cancel_requested"]
    assert 0 < done["queries_used"] < done["request"]["query_budget"]


@pytest.mark.slow
def test_killed_service_resumes_job_after_restart(tmp_path, model_server, serve_process, free_port):
    """SIGKILL the service process mid-training; a new process on the same job store resumes the job
    from its checkpoint (not from scratch) and completes it."""
    settings = dict(SETTINGS, epochs=12)  # 72 stability steps, a checkpoint every 2
    port = free_port()
    service = (["robustify", "--workdir", str(tmp_path / "work")], {"EDGEZO_SERVICE_TOKENS": TOKEN})
    proc, url = serve_process(*service, port=port)
    try:
        with _client(url) as c:
            job = c.post("/v1/jobs", json=_job(model_server, settings=settings)).json()
            deadline = time.monotonic() + 120
            while True:
                progress = c.get(f"/v1/jobs/{job['id']}").json()["progress"]
                if progress.get("stage") == "stability" and progress.get("step", 0) >= 6:
                    break
                assert time.monotonic() < deadline, progress
                time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert (tmp_path / "work" / "jobs" / job["id"] / "checkpoint.pt").is_file()
        proc, url = serve_process(*service, port=port)
        with _client(url) as c:
            done = _wait(c, job["id"], timeout=180)
    finally:
        proc.kill()
        proc.wait(30)
    assert done["status"] == "completed", done["error"]
    assert done["sessions"] == 2 and done["result"]["sessions"] == 2
    cert = json.loads((tmp_path / "work" / "jobs" / job["id"] / "certification.json").read_text())
    starts = cert["session_starts"]
    assert starts[1]["stage"] == "stability" and starts[1]["step"] >= 4  # resumed, not restarted
    assert done["queries_used"] >= cert["planned_queries"]["total"]  # work redone after the kill is counted
