"""/healthz, /readyz, /metrics."""

from __future__ import annotations

import uuid
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from api.gate import metrics_allowed
from api.problems import problem, problem_responses
from api.schemas import Check, Ready
from api.state import AppState, state_of
from videopipe.db.repos import ops

router = APIRouter(tags=["operations"])

State = Annotated[AppState, Depends(state_of)]


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_database(state: AppState) -> Check:
    try:
        with state.services.sessions() as s:
            ops.ping(s)
        return Check(ok=True, detail="reachable")
    except Exception as exc:
        return Check(ok=False, detail=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")


def _check_broker(state: AppState) -> Check:
    url = state.settings.broker_url
    if not url:
        return Check(ok=True, detail="none configured: stages run in this process")
    try:
        from kombu import Connection

        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return Check(ok=True, detail="reachable")
    except Exception as exc:
        return Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:200])


def _check_storage(state: AppState) -> Check:
    try:
        state.services.store.exists(f"readyz/{uuid.uuid4().hex}")
        return Check(ok=True, detail="reachable")
    except Exception as exc:
        return Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:200])


def _check_vlm(state: AppState) -> Check:
    settings = state.settings
    if settings.vlm == "none":
        return Check(ok=True, detail="none configured: extractive results")
    if settings.vlm_url:
        try:
            headers = {"Authorization": f"Bearer {settings.vlm_api_key}"} if settings.vlm_api_key else {}
            r = httpx.get(settings.vlm_url.rstrip("/") + "/models", timeout=2.0, headers=headers)
            r.raise_for_status()
            return Check(ok=True, detail=f"{settings.vlm_url} answers")
        except Exception as exc:
            return Check(ok=False, detail=f"{settings.vlm_url}: {type(exc).__name__}: {exc}"[:200])
    return Check(ok=True, detail=f"{settings.vlm}: in-process (loaded on first use)")


@router.get("/readyz", response_model=Ready, summary="Database, broker, storage, VLM (details as /metrics)",
            responses={503: {"model": Ready, "description": "Not ready"}})  # fmt: skip
def readyz(request: Request, state: State) -> JSONResponse:
    checks = {"database": _check_database(state), "broker": _check_broker(state), "storage": _check_storage(state),
              "vlm": _check_vlm(state)}  # fmt: skip
    essential = all(checks[k].ok for k in ("database", "broker", "storage"))
    status = "unavailable" if not essential else ("ready" if checks["vlm"].ok else "degraded")
    client = request.client.host if request.client else None
    if not metrics_allowed(state.settings, client, request.headers.get("authorization")):
        # Load balancers need the verdict; the details name internal hosts, URLs and database errors.
        checks = {name: Check(ok=check.ok, detail="ok" if check.ok else "failing") for name, check in checks.items()}
    body = Ready(status=status, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if essential else 503)


@router.get("/metrics", summary="Prometheus metrics (Bearer api.metrics_token when set, else loopback clients)",
            response_class=Response, responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                                                **problem_responses(403)})  # fmt: skip
def metrics(request: Request, state: State) -> Response:
    client = request.client.host if request.client else None
    if not metrics_allowed(state.settings, client, request.headers.get("authorization")):
        needs = "`Authorization: Bearer <metrics token>`" if state.settings.api.metrics_token else "a loopback client"
        return problem(403, "forbidden", f"/metrics shows every tenant's counts: it answers {needs} only", request)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
