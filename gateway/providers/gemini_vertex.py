"""Vertex AI for the Gemini provider: its endpoint and its bearer tokens.

Endpoint (https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/projects.locations.publishers.models/streamGenerateContent):
``https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent``
(``https://aiplatform.googleapis.com/...`` for ``location = "global"``); the
request and response bodies are the Gemini API's.

Tokens: Google application default credentials through ``google-auth``
(https://google-auth.readthedocs.io/en/latest/reference/google.auth.html#google.auth.default):
``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's user credentials, or the
metadata server on Google Cloud; scope ``cloud-platform``. ``google-auth``
is synchronous (it refreshes over ``requests``), so finding the credentials
and refreshing a token run in a worker thread, once at a time; a valid
token is returned with no I/O.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ..errors import UpstreamAuthError

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def vertex_base_url(project: str, location: str) -> str:
    """Everything before ``/models/{model}:...`` for Vertex AI's Gemini models."""
    host = (
        "aiplatform.googleapis.com"
        if location == "global"
        else f"{location}-aiplatform.googleapis.com"
    )
    return f"https://{host}/v1/projects/{project}/locations/{location}/publishers/google"


class Credentials(Protocol):
    """What the token source uses of ``google.auth.credentials.Credentials``."""

    token: str | None

    @property
    def valid(self) -> bool: ...

    def refresh(self, request: Any) -> None: ...


def _default_credentials() -> Credentials:
    import google.auth

    credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM])
    return credentials


def _transport_request() -> Any:
    from google.auth.transport.requests import Request

    return Request()


class VertexTokens:
    """Bearer tokens for Vertex AI. ``credentials``: a credentials object (tests
    pass a fake); default: application default credentials, found on first use.

    :meth:`token` raises :class:`~gateway.errors.UpstreamAuthError` when no
    credentials are found or a refresh fails (the client cannot fix that;
    the reason is in ``detail``). One refresh runs at a time, in a task of
    its own: a caller cancelled while it runs (its client left) leaves it
    to finish for the next caller, and no thread is started twice.
    """

    def __init__(self, credentials: Credentials | None = None) -> None:
        self._credentials = credentials
        self._refresh: asyncio.Task[str] | None = None

    async def token(self) -> str:
        """A valid access token (refreshed first when expired or absent)."""
        credentials = self._credentials
        if credentials is not None and credentials.valid and credentials.token:
            return credentials.token
        task = self._refresh
        if task is None or task.done():
            task = self._refresh = asyncio.ensure_future(self._fetch())
            task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _fetch(self) -> str:
        try:
            if self._credentials is None:
                self._credentials = await asyncio.to_thread(_default_credentials)
            credentials = self._credentials
            if not credentials.valid or not credentials.token:
                await asyncio.to_thread(credentials.refresh, _transport_request())
        except Exception as exc:  # google.auth.exceptions.*, OSError from a transport
            raise UpstreamAuthError(
                "The gateway could not obtain Google credentials for Vertex AI",
                detail=f"{type(exc).__name__}: {exc}",
            ) from exc
        if not credentials.token:
            raise UpstreamAuthError(
                "The gateway could not obtain Google credentials for Vertex AI",
                detail="the credentials have no token after a refresh",
            )
        return credentials.token


def _retrieve(task: asyncio.Task[str]) -> None:
    """A refresh whose every caller left: its failure is not logged as unretrieved."""
    if not task.cancelled():
        task.exception()
