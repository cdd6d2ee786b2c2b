"""How Bedrock requests are authenticated: SigV4 or a Bedrock API key.

- **SigV4** (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html)
  through botocore (``SigV4Auth`` over an ``AWSRequest``; signing name
  ``bedrock``, from the ``bedrock-runtime`` service model). Credentials come
  from botocore's standard chain (``botocore.session.Session.get_credentials``:
  environment, shared credentials and config files with ``profile``, SSO,
  container credentials, instance metadata). Resolving them may do I/O (a
  file, an HTTP call to the instance metadata service or the container
  endpoint, an STS call), so it never runs on the event loop: it runs in a
  worker thread (``asyncio.to_thread``), first when the provider is built
  (at start-up) and then whenever botocore says the credentials need a
  refresh (``RefreshableCredentials.refresh_needed``: within 15 minutes of
  their expiry). Concurrent requests share the one resolution in flight; a
  request cancelled while it waits does not cancel it. Signing itself is
  CPU only (an HMAC chain and a SHA-256 of the body).
- **Bedrock API keys** (https://docs.aws.amazon.com/bedrock/latest/userguide/api-keys.html):
  ``Authorization: Bearer <key>``, the key from ``AWS_BEARER_TOKEN_BEDROCK``
  (the variable the AWS SDKs read) or the model's ``api_key_env``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError
from botocore.session import Session

from ..errors import GatewayError, UpstreamNotConfigured

log = structlog.get_logger("gateway.providers.bedrock")

SIGNING_NAME = "bedrock"
"""The service's ``signingName`` in botocore's ``bedrock-runtime`` model."""


class BearerAuth:
    """``Authorization: Bearer <key>`` on every request."""

    __slots__ = ("_headers",)

    def __init__(self, token: str) -> None:
        self._headers = {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        return None

    async def headers(self, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` plus the key."""
        return {**headers, **self._headers}


class SigV4:
    """SigV4 with credentials from botocore's chain (see the module docstring)."""

    __slots__ = ("_credentials", "_pending", "_profile", "_region")

    def __init__(self, region: str, profile: str | None = None) -> None:
        self._region = region
        self._profile = profile
        self._credentials: Credentials | None = None
        self._pending: asyncio.Future[Credentials] | None = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        # Built at start-up, inside the loop: resolve now, off the loop, so
        # the first request does not wait for it. A failure is raised again
        # (and reported) by the first request.
        self._resolve().add_done_callback(_consume)

    def close(self) -> None:
        """Stop waiting for a resolution in flight (its thread finishes on its own)."""
        if self._pending is not None:
            self._pending.cancel()

    def _resolve(self) -> asyncio.Future[Credentials]:
        pending = self._pending
        if pending is None:
            pending = self._pending = asyncio.ensure_future(asyncio.to_thread(self._load))
            pending.add_done_callback(self._resolved)
        return pending

    def _resolved(self, future: asyncio.Future[Credentials]) -> None:
        self._pending = None
        if not future.cancelled() and future.exception() is None:
            self._credentials = future.result()

    def _load(self) -> Credentials:
        """In a worker thread: the chain's credentials, refreshed if due."""
        credentials = self._credentials
        try:
            if credentials is None:
                credentials = Session(profile=self._profile).get_credentials()
            if credentials is not None:
                credentials.get_frozen_credentials()  # refreshes when due
        except BotoCoreError as exc:
            raise UpstreamNotConfigured(
                "The gateway could not load its AWS credentials",
                detail=f"{type(exc).__name__}: {exc}",
            ) from None
        if credentials is None:
            raise UpstreamNotConfigured(
                "The gateway has no AWS credentials for Bedrock",
                detail="no credentials in the AWS chain (environment, profile, container, "
                "instance role) and no AWS_BEARER_TOKEN_BEDROCK",
            )
        return credentials

    async def frozen(self) -> ReadOnlyCredentials:
        """Credentials for one request (waits for a resolution only when due)."""
        credentials = self._credentials
        if credentials is None or (
            isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed()
        ):
            credentials = await asyncio.shield(self._resolve())
        return credentials.get_frozen_credentials()

    async def headers(self, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` plus ``X-Amz-Date``, ``Authorization`` (and
        ``X-Amz-Security-Token`` for temporary credentials), signing the
        method, ``url``, ``headers`` and ``body`` as sent."""
        credentials = await self.frozen()
        request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
        SigV4Auth(credentials, SIGNING_NAME, self._region).add_auth(request)
        return dict(request.headers.items())


def _consume(future: asyncio.Future[Credentials]) -> None:
    """The start-up resolution's outcome: a failure is logged once
    (``upstream_credentials_missing``) and raised again by each request."""
    if future.cancelled():
        return
    err = future.exception()
    if err is not None:
        detail = err.detail if isinstance(err, GatewayError) else repr(err)
        log.warning(
            "upstream_credentials_missing",
            provider="bedrock",
            error=str(err),
            detail=detail,
            hint="set AWS credentials (env, AWS_PROFILE, a role) or AWS_BEARER_TOKEN_BEDROCK",
        )
