"""What every route depends on: the app's state (the services `videopipe.services` built) and the caller's
tenant, as FastAPI dependencies. Routes import from here, never from `api.app`, so the app imports its
routers at the top like any module."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from api.metrics import Metrics
from videopipe.auth import KeyStore
from videopipe.batches import Batches
from videopipe.config import Settings
from videopipe.errors import Unauthorized
from videopipe.jobs import JobEngine
from videopipe.library import Library
from videopipe.services import Services
from videopipe.uploads import Uploads

log = logging.getLogger("api")

DEFAULT_TENANT = "default"
TENANT_STATE = "videopipe_tenant"  # the key in scope["state"] (request.state) that carries the caller's tenant


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class AppState:
    services: Services
    metrics: Metrics
    auth_mode: str  # "open" or "keys"
    batch_wakeup: threading.Event = field(default_factory=threading.Event)  # set: move batches on now
    _keys_seen: tuple[float, bool] = (0.0, False)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def jobs(self) -> JobEngine:
        return self.services.jobs

    @property
    def library(self) -> Library:
        return self.services.library

    @property
    def uploads(self) -> Uploads:
        return self.services.uploads

    @property
    def batches(self) -> Batches:
        return self.services.batches

    @property
    def keys(self) -> KeyStore:
        return self.services.keys

    def open_now(self) -> bool:
        """Open mode ("auto") lasts until the first API key is created, and then ends for good: revoking every
        key does not reopen the server (the operator does, with VIDEOPIPE_API__AUTH=open)."""
        if self.auth_mode != "open":
            return False
        if self.settings.api.auth == "open":
            return True
        checked, any_keys = self._keys_seen
        if time.monotonic() - checked > 2.0:
            any_keys = self.keys.any_ever()
            self._keys_seen = (time.monotonic(), any_keys)
        if any_keys:
            self.auth_mode = "keys"
            log.info("an API key was created: API keys are required from now on (open mode has ended for good)")
        return not any_keys


async def state_of(request: Request) -> AppState:
    st: AppState = request.app.state.vp
    return st


_bearer = HTTPBearer(auto_error=False, description="An API key from `videopipe keys create --tenant NAME`")


async def tenant_of(request: Request, _declared: Annotated[Any, Depends(_bearer)] = None) -> str:
    """The caller's tenant, as `api.gate.Gate` found it from the request's headers before any body was read.
    (`_declared` only puts the bearer scheme in the OpenAPI schema.)"""
    tenant = request.scope.get("state", {}).get(TENANT_STATE)
    if not isinstance(tenant, str):  # a route outside /v1 asked for a tenant: the gate did not authenticate it
        raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    return tenant
