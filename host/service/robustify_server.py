"""``edgezo serve robustify``: black-box robustification as an HTTP job service.

A client (bearer token in ``Authorization: Bearer <token>``) submits a job —
the target model endpoint and its API key, a data reference, a query budget,
σ, the estimator — then polls its status (stage, progress, queries used),
downloads the artifacts (front end as ONNX, certification report) or cancels
it. Jobs live in SQLite and a worker thread runs them one at a time; a job
interrupted by a restart continues from its checkpoint. Each token sees only
its own jobs; a token may carry a quota of queries over all its jobs.

Endpoints (OpenAPI at ``/openapi.json``, docs at ``/docs``):

* ``GET /healthz``
* ``POST /v1/jobs`` → 201 (422 malformed / impossible settings, 429 quota exhausted)
* ``GET /v1/jobs`` · ``GET /v1/jobs/{id}`` (404 unknown)
* ``POST /v1/jobs/{id}/cancel`` (409 when already finished)
* ``GET /v1/jobs/{id}/artifacts`` · ``GET /v1/jobs/{id}/artifacts/{name}`` (409 until completed)
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Security, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from edgezo.adapters.robustify import BlackBoxError, QueryBudgetExceeded, RobustifyConfig
from edgezo.data import DataError
from edgezo.errors import ConfigError

from .auth import Credential, match
from .client import HttpBlackBox
from .jobs import FINAL, JobStore
from .validation import LOOPBACK, SQLITE_INT_MAX, host_allowed, install_error_handlers, target_host
from .worker import ARTIFACTS, JobWorker, resolve_data

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
Size = Annotated[int, Field(ge=1, le=10_000_000)]


class Target(BaseModel):
    model_config = _STRICT

    url: str = Field(..., pattern=r"^https?://", max_length=2048,
                     description="base URL of an `edgezo serve model` endpoint (its host must be on the service's "
                                 "allow-list)")
    api_key: str = Field(..., min_length=1, max_length=4096,
                         description="the API key for that endpoint (never shown back)")


class DataRef(BaseModel):
    model_config = _STRICT

    dataset: str = Field("digits", max_length=64, description="digits, mnist, fashion-mnist or cifar10")
    path: str | None = Field(None, max_length=4096, description="directory relative to the service's --data-root")
    train_size: Size | None = Field(None, description="use the first k training images")
    test_size: Size = Field(100, description="certify the first m test images")


class JobRequest(BaseModel):
    model_config = _STRICT

    target: Target
    data: DataRef = DataRef()
    query_budget: int = Field(..., ge=1, le=SQLITE_INT_MAX, description="the most queries this job may send to the "
                                                                        "target")
    sigma: float = Field(0.25, gt=0, le=1e6, description="smoothing noise σ")
    method: Literal["zo-ae-ds", "zo-ds"] = "zo-ae-ds"
    estimator: Literal["rge", "cge"] = "rge"
    q: int = Field(16, ge=1, le=1_000_000, description="RGE directions per sample")
    settings: Annotated[dict[str, Any], Field(max_length=64)] = Field(
        default_factory=dict, description="other RobustifyConfig fields: latent_dim, epochs, n0, n, alpha, radii, "
                                          "batch_size, ...")

    def config(self) -> RobustifyConfig:
        reserved = {"query_budget", "sigma", "method", "estimator", "q"} & set(self.settings)
        if reserved:
            raise ConfigError(f"set {', '.join(sorted(reserved))} at the top level of the request, not in settings")
        return RobustifyConfig.from_dict({**self.settings, "query_budget": self.query_budget, "sigma": self.sigma,
                                          "method": self.method, "estimator": self.estimator, "q": self.q})


class JobView(BaseModel):
    id: str
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    created: float
    updated: float
    progress: dict[str, Any]
    queries_used: int
    query_budget: int
    error: str | None
    sessions: int
    cancel_requested: bool
    request: dict[str, Any]
    result: dict[str, Any] | None


class JobList(BaseModel):
    jobs: list[JobView]


class Artifact(BaseModel):
    name: str
    size: int
    url: str


class ArtifactList(BaseModel):
    job: str
    artifacts: list[Artifact]


def probe_target(target: Target, features: int, image_shape: list[int]) -> None:
    """Ask the target for its sample shape: 422 when it refuses the key or does not fit the data, 502 when
    it does not answer as an edgezo model endpoint (its own words are never repeated)."""
    try:
        probe = HttpBlackBox(target.url, target.api_key, timeout=10.0, retries=0)
    except QueryBudgetExceeded:
        raise HTTPException(422, detail="target: its query budget for this API key is exhausted") from None
    except BlackBoxError as err:
        if err.status == 401:
            raise HTTPException(422, detail="target: the model endpoint refused the API key") from None
        raise HTTPException(502, detail=f"target: {err}") from None
    probe.close()
    if math.prod(probe.input_shape) != features:
        raise HTTPException(422, detail=f"the target takes samples of shape {list(probe.input_shape)}, "
                                        f"the data has images of shape {image_shape}")


def _view(job: dict) -> JobView:
    request = dict(job["request"])
    request["target"] = {**request["target"], "api_key": "***"}
    return JobView(**{**job, "request": request})


ERRORS = {401: {"description": "missing or unknown bearer token"},
          404: {"description": "unknown job"}}


def create_robustify_app(db_path: str | os.PathLike, workdir: str | os.PathLike, tokens: list[Credential], *,
                         data_root: str | os.PathLike | None = None, start_worker: bool = True,
                         poll_interval: float = 0.5, check_target: bool = True,
                         allow_targets: Sequence[str] = ()) -> FastAPI:
    """The job service. The worker starts with the app (lifespan) and stops with it, leaving jobs resumable.

    Target endpoints are contacted only when their host is loopback or in ``allow_targets``.
    """
    if not tokens:
        raise ValueError("the robustify service needs at least one bearer token")
    workdir = Path(workdir)
    store = JobStore(db_path)
    allowed = (*LOOPBACK, *allow_targets)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        store.requeue_interrupted()
        worker = JobWorker(store, workdir, data_root=data_root, poll_interval=poll_interval, allowed_hosts=allowed)
        app.state.worker = worker
        if start_worker:
            worker.start()
        try:
            yield
        finally:
            worker.stop()
            store.close()

    app = FastAPI(title="edgezo robustify service", version="1", lifespan=lifespan,
                  description="Train a denoiser (+ encoder) in front of a black-box classifier with zeroth-order "
                              "optimization through its query API (ZO-AE-DS) and certify it with randomized "
                              "smoothing.")
    app.state.store = store
    install_error_handlers(app)
    caller, own_job = _access(store, tokens)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    _job_routes(app, store, caller, own_job, allowed=allowed, data_root=data_root, check_target=check_target)
    _artifact_routes(app, caller, own_job)
    return app


def _access(store: JobStore, tokens: list[Credential]):
    """``caller`` (the bearer token's credential, else 401) and ``own_job`` (the caller's job, else 404)."""
    bearer = HTTPBearer(auto_error=False, description="a token from the service's token list")

    def caller(creds: HTTPAuthorizationCredentials | None = Security(bearer)) -> Credential:
        cred = match(tokens, creds.credentials if creds is not None else None)
        if cred is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or unknown bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        return cred

    def own_job(job_id: str, cred: Credential) -> dict:
        job = store.get(job_id)
        if job is None or job["owner"] != cred.owner:
            raise HTTPException(404, detail=f"no job {job_id!r}")
        return job

    return caller, own_job


def _job_routes(app: FastAPI, store: JobStore, caller, own_job, *, allowed, data_root, check_target: bool) -> None:
    """Submit, list, read and cancel jobs."""
    @app.post("/v1/jobs", response_model=JobView, status_code=201,
              responses={**ERRORS, 422: {"description": "malformed request, impossible settings, bad target or "
                                                        "data, a target not on the allow-list, or a budget too "
                                                        "small for the job"},
                         429: {"description": "the token's query quota is exhausted"},
                         502: {"description": "the target did not answer as an edgezo model endpoint"}})
    def submit(req: JobRequest, cred: Credential = Depends(caller)) -> JobView:
        if not host_allowed(req.target.url, allowed):
            raise HTTPException(422, detail=f"target host {target_host(req.target.url)!r} is not on this service's "
                                            "allow-list (start it with --allow-target HOST)")
        try:
            config = req.config()
            x_train, x_test, _, _ = resolve_data(req.data.model_dump(), data_root)
            config.check_budget(x_train.shape[0], x_test.shape[0], math.prod(x_train.shape[1:]))
        except (ConfigError, DataError) as err:
            raise HTTPException(422, detail=str(err)) from None
        if check_target:
            probe_target(req.target, math.prod(x_train.shape[1:]), list(x_train.shape[1:]))
        request = req.model_dump()
        request["config"] = config.as_dict()
        job = store.create(cred.owner, request, req.query_budget, quota=cred.limit)
        if job is None:
            raise HTTPException(429, detail=f"query quota exhausted: the jobs of this token have committed "
                                            f"{store.reserved(cred.owner)} of {cred.limit} queries, this job asks "
                                            f"for {req.query_budget}")
        return _view(job)

    @app.get("/v1/jobs", response_model=JobList, responses=ERRORS)
    def list_jobs(cred: Credential = Depends(caller)) -> JobList:
        return JobList(jobs=[_view(j) for j in store.list(cred.owner)])

    @app.get("/v1/jobs/{job_id}", response_model=JobView, responses=ERRORS)
    def get_job(job_id: str, cred: Credential = Depends(caller)) -> JobView:
        return _view(own_job(job_id, cred))

    @app.post("/v1/jobs/{job_id}/cancel", response_model=JobView, status_code=202,
              responses={**ERRORS, 409: {"description": "the job already finished"}})
    def cancel(job_id: str, cred: Credential = Depends(caller)) -> JobView:
        job = own_job(job_id, cred)
        if job["status"] in FINAL:
            raise HTTPException(409, detail=f"job {job_id} is already {job['status']}")
        app.state.worker.cancel(job_id)
        return _view(store.request_cancel(job_id))


def _artifact_routes(app: FastAPI, caller, own_job) -> None:
    """A completed job's artifacts: the list and each file."""

    def completed_dir(job_id: str, cred: Credential) -> Path:
        job = own_job(job_id, cred)
        if job["status"] != "completed":
            raise HTTPException(409, detail=f"job {job_id} is {job['status']}; artifacts are available once it "
                                            "completed")
        return app.state.worker.job_dir(job_id)

    @app.get("/v1/jobs/{job_id}/artifacts", response_model=ArtifactList,
             responses={**ERRORS, 409: {"description": "the job has not completed"}})
    def artifacts(job_id: str, cred: Credential = Depends(caller)) -> ArtifactList:
        folder = completed_dir(job_id, cred)
        items = [Artifact(name=n, size=(folder / n).stat().st_size, url=f"/v1/jobs/{job_id}/artifacts/{n}")
                 for n in ARTIFACTS if (folder / n).is_file()]
        return ArtifactList(job=job_id, artifacts=items)

    @app.get("/v1/jobs/{job_id}/artifacts/{name}", response_class=FileResponse,
             responses={**ERRORS, 409: {"description": "the job has not completed"}})
    def artifact(job_id: str, name: str, cred: Credential = Depends(caller)) -> FileResponse:
        folder = completed_dir(job_id, cred)
        if name not in ARTIFACTS or not (folder / name).is_file():
            raise HTTPException(404, detail=f"job {job_id} has no artifact {name!r}")
        media = "application/json" if name.endswith(".json") else "application/octet-stream"
        return FileResponse(folder / name, media_type=media, filename=name)
