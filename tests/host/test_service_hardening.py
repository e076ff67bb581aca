"""The HTTP services under hostile input: 4xx (never 500) for any client body, JSON-safe 422s, clear
4xx/502 for any target answer (its words never repeated), an outbound allow-list, and budgets and
quotas that stay exact when several processes share one database."""

import json
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from edgezo.host.service.auth import Credential  # noqa: E402
from edgezo.host.service.model_server import create_model_app  # noqa: E402
from edgezo.host.service.robustify_server import create_robustify_app  # noqa: E402
from edgezo.host.service.runner import ServerThread  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from edgezo.adapters.robustify.onnx_export import export_module  # noqa: E402

pytestmark = pytest.mark.service

KEY, TOKEN = "model-key-hard-01", "token-hard-000001"
SECRET = "SECRET-TARGET-TEXT"


def _strict_json(text: str):
    """Parse as RFC 8259 JSON: NaN / Infinity are refused."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "clf.onnx"
    export_module(torch.nn.Linear(64, 10), torch.zeros(2, 64), path, output_name="logits")
    return path


@pytest.fixture(scope="module")
def model_client(onnx_model):
    app = create_model_app(onnx_model, [Credential("k", KEY, None)])
    with TestClient(app, headers={"X-API-Key": KEY}) as client:
        yield client


ROW = ",".join(["0.5"] * 64)
BAD_PREDICT_BODIES = [
    f'{{"inputs": [[NaN,{ROW[4:]}]]}}', f'{{"inputs": [[Infinity,{ROW[4:]}]]}}',
    f'{{"inputs": [[-Infinity,{ROW[4:]}]]}}',
    f'{{"inputs": [[1e400,{ROW[4:]}]]}}', f'{{"inputs": [[{"9" * 500},{ROW[4:]}]]}}',
    '{"inputs_b64": "AAAA", "shape": [4294967296, 4294967296]}', '{"inputs_b64": "AAAA", "shape": [65536, 65536]}',
    '{"inputs_b64": "AAAA", "shape": [-1]}', '{"inputs_b64": "AAAA", "shape": [1.5]}',
    '{"inputs_b64": "AAAA", "shape": []}',
    '{"inputs_b64": "AAAA", "shape": ["a"]}', '{"inputs_b64": "AAAA", "shape": [99999999999999999999999]}',
    '{"inputs_b64": "!!!", "shape": [1, 64]}', '{"inputs_b64": "AAAA", "shape": [1, 64]}', '{"inputs_b64": "AAAA"}',
    '{"inputs": "abc"}', '{"inputs": []}', '{"inputs": [1, [2]]}', '{"inputs": [[1, 2]]}', '{"inputs": null}',
    '{"inputs": [[' + ROW + ']], "output": "weights"}', '{"inputs": [[' + ROW + ']], "colour": 1}',
    '{"inputs": ' + "[" * 5000 + "]" * 5000 + "}", "not json", "", "[]", "99999999999999999999999", '{"inputs": {}}',
    '{"inputs": [[' + ROW + ']], "inputs_b64": "AAAA"}', '{"inputs": [["x"' + ",1" * 63 + "]]}",
]


@pytest.mark.parametrize("body", BAD_PREDICT_BODIES, ids=range(len(BAD_PREDICT_BODIES)))
def test_model_endpoint_answers_any_body_with_4xx_and_valid_json(model_client, body):
    r = model_client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    _strict_json(r.text)


def test_model_endpoint_still_answers_good_bodies(model_client):
    r = model_client.post("/v1/predict", json={"inputs": [[0.5] * 64, [0.0] * 64]})
    assert r.status_code == 200 and len(r.json()["probabilities"]) == 2


# --- the job service ---------------------------------------------------------------------------
def _fake_target() -> FastAPI:
    """A target whose first path segment says how to misbehave (answers to GET /<mode>/v1/model)."""
    app = FastAPI()

    @app.get("/{mode}/v1/model")
    def info(mode: str):
        answers = {
            "text": PlainTextResponse(f"hello {SECRET}"),
            "missing": JSONResponse({"num_classes": 10, "note": SECRET}),
            "badshape": JSONResponse({"input_shape": "sixty-four " + SECRET, "num_classes": 10}),
            "hugeshape": JSONResponse({"input_shape": [2**40], "num_classes": 10}),
            "negative": JSONResponse({"input_shape": [-64], "num_classes": 10}),
            "list": JSONResponse([1, 2, 3]),
            "error500": PlainTextResponse(SECRET, status_code=500),
            "error418": JSONResponse({"detail": SECRET}, status_code=418),
            "refused": JSONResponse({"detail": SECRET}, status_code=401),
            "spent": JSONResponse({"detail": SECRET}, status_code=429),
            "redirect": JSONResponse({}, status_code=302, headers={"Location": "http://198.51.100.1/"}),
            "wrongsize": JSONResponse({"input_shape": [3, 32, 32], "num_classes": 10, "output": "probabilities"}),
        }
        return answers[mode]

    return app


@pytest.fixture(scope="module")
def fake_target():
    with ServerThread(_fake_target()) as srv:
        yield srv


@pytest.fixture
def jobs(tmp_path):
    tokens = [Credential("t", TOKEN, 1000)]
    app = create_robustify_app(tmp_path / "jobs.sqlite", tmp_path / "work", tokens, start_worker=False,
                               allow_targets=["allowed.example"])
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def _job(url="http://127.0.0.1:9/x", **over):
    body = {"target": {"url": url, "api_key": "k" * 16}, "data": {"dataset": "digits", "train_size": 8,
            "test_size": 1}, "query_budget": 900, "estimator": "cge",
            "settings": {"latent_dim": 2, "epochs": 1, "ae_epochs": 1, "warmup_epochs": 1, "n0": 2, "n": 4,
                         "batch_size": 8}}
    body.update(over)
    return body


def _raw(body: dict) -> str:
    return json.dumps(body, allow_nan=True)


BAD_JOBS = [
    _raw(_job(query_budget=2**70)), _raw(_job(query_budget=2**63)), _raw(_job(query_budget=1.5)),
    _raw(_job(query_budget="9")), _raw(_job(sigma=float("nan"))), _raw(_job(sigma=float("inf"))),
    _raw(_job(q=2**64)), _raw(_job(settings={"epochs": 1e308})), _raw(_job(settings={"n": 10**30})),
    _raw(_job(settings={"radii": [float("nan")]})), _raw(_job(settings={"radii": "0.5"})),
    _raw(_job(settings={"radii": [10**400]})), _raw(_job(settings={"epochs": 10**400})),
    _raw(_job(settings={"batch_size": -1})), _raw(_job(settings={"mu": float("inf")})),
    _raw(_job(data={"dataset": "digits", "train_size": 10**20})),
    _raw(_job(data={"dataset": "digits", "path": "../x"})),
    _raw(_job(data={"dataset": "x" * 100})), _raw(_job(url="http://evil.example.com/")),
    _raw(_job(url="http://[::1")), _raw(_job(url="http://127.0.0.1.evil.example/")),
    _raw(_job(url="http://allowed.example.evil/")), _raw(_job(url="https://user@10.0.0.1/")),
    _raw({"target": "x"}), _raw({"target": {"url": "http://127.0.0.1/", "api_key": ""}}), "[]", "null", "{",
    '{"target": {"url": "http://127.0.0.1/", "api_key": "k"}, "query_budget": NaN}',
]


@pytest.mark.parametrize("body", BAD_JOBS, ids=range(len(BAD_JOBS)))
def test_job_service_answers_any_body_with_4xx_and_valid_json(jobs, body):
    r = jobs.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    _strict_json(r.text)


def test_allow_list_is_checked_before_any_contact(jobs):
    r = jobs.post("/v1/jobs", json=_job(url="http://evil.example.com/"))
    assert r.status_code == 422 and "not on this service's allow-list" in r.json()["detail"]


@pytest.mark.parametrize("mode,status,fragment", [
    ("text", 502, "not JSON"), ("missing", 502, "input_shape"), ("badshape", 502, "input_shape"),
    ("hugeshape", 502, "input_shape"), ("negative", 502, "input_shape"), ("list", 502, "edgezo model endpoint"),
    ("error500", 502, "status 500"), ("error418", 502, "status 418"), ("redirect", 502, "status 302"),
    ("refused", 422, "refused the API key"), ("spent", 422, "budget"), ("wrongsize", 422, "shape [3, 32, 32]"),
])
def test_odd_target_answers_are_clear_and_never_reflected(jobs, fake_target, mode, status, fragment):
    r = jobs.post("/v1/jobs", json=_job(url=f"{fake_target.url}/{mode}"))
    assert r.status_code == status, r.text
    assert fragment in r.json()["detail"] and SECRET not in r.text


# --- budgets across processes ------------------------------------------------------------------
def test_two_model_servers_sharing_a_usage_db_never_exceed_the_budget(onnx_model, tmp_path, server_steps):
    """2 processes × 4 client threads × 20 one-sample requests against a budget of 37: exactly 37 answered."""
    budget, db = 37, tmp_path / "usage.sqlite"
    procs, urls = [], []
    try:
        for _ in range(2):
            proc, url = server_steps.start(["model", "--onnx", str(onnx_model), "--usage-db", str(db)],
                                     {"EDGEZO_MODEL_KEYS": f"{KEY}:{budget}"})
            procs.append(proc)
            urls.append(url)
        for url, proc in zip(urls, procs):
            server_steps.wait(proc, url)
        codes: list[int] = []
        lock = threading.Lock()

        def client(url):
            with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as c:
                for _ in range(20):
                    code = c.post("/v1/predict", json={"inputs": [[0.1] * 64], "output": "labels"}).status_code
                    with lock:
                        codes.append(code)

        threads = [threading.Thread(target=client, args=(urls[i % 2],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sorted(set(codes)) == [200, 429] and codes.count(200) == budget, codes
        usage = httpx.get(urls[0] + "/v1/usage", headers={"X-API-Key": KEY}, timeout=10).json()
        assert usage["queries_used"] == budget and usage["queries_left"] == 0
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def test_job_quota_is_exact_across_processes(tmp_path):
    """Two processes each try 25 jobs of 10 queries against one token's quota of 105: exactly 10 are created."""
    script = textwrap.dedent(f"""
        import sys
        from edgezo.host.service.jobs import JobStore
        store = JobStore({str(tmp_path / "jobs.sqlite")!r})
        made = sum(store.create("owner", {{}}, 10, quota=105) is not None for _ in range(25))
        print(made)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    made = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        made.append(int(out))
    from edgezo.host.service.jobs import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    assert sum(made) == 10 and len(store.list("owner")) == 10 and store.reserved("owner") == 100
    store.close()


def test_job_store_set_up_waits_while_another_process_holds_the_new_file(tmp_path, monkeypatch):
    """SQLite refuses a WAL switch at once ("database is locked") while another connection sets the
    same new file up; the store retries instead of failing its process."""
    import sqlite3

    from edgezo.host.service.jobs import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    calls = []

    class Busy:
        def execute(self, sql):
            calls.append(sql)
            if len(calls) < 3:
                raise sqlite3.OperationalError("database is locked")

    real = store._db
    store._db = Busy()
    store._execute_when_free("PRAGMA journal_mode=WAL")
    assert calls == ["PRAGMA journal_mode=WAL"] * 3
    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # gives up after its wait
        store._execute_when_free("PRAGMA journal_mode=WAL", wait_s=-1.0)
    store._db = real
    store.close()
