"""Azure OpenAI deployments as an upstream (docs/azure.md).

The endpoint is ``base_url`` or ``AZURE_OPENAI_ENDPOINT``. Two URL shapes,
both Chat Completions on the wire
(https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference):

- the v1 API (``api_version`` unset):
  ``POST {base_url}/openai/v1/chat/completions``, the deployment name as
  ``model`` (https://learn.microsoft.com/en-us/azure/ai-foundry/openai/api-version-lifecycle);
- the classic deployments API: ``POST {base_url}/openai/deployments/
  {deployment}/chat/completions?api-version={api_version}``.

Native Responses (``responses_api = "native"``): ``{base_url}/openai/v1/responses``,
or ``{base_url}/openai/responses?api-version=...`` with a preview version
that serves it (https://learn.microsoft.com/en-us/azure/ai-foundry/openai/how-to/responses).

Authentication: the ``api-key`` header, or ``Authorization: Bearer`` with a
Microsoft Entra ID token (``entra_token_env``). A model's ``headers`` are
set after these, ``query`` next to ``api-version``.

Streams are OpenAI's with Azure's additions, relayed unchanged to Chat
Completions clients and skipped by the translations: a first chunk with
empty ``choices`` and ``prompt_filter_results``, ``content_filter_results``
(and, with the asynchronous filter, ``content_filter_offsets``) per choice,
and ``finish_reason: "content_filter"`` when the output was filtered
(https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-filter).
"""

from __future__ import annotations

from urllib.parse import quote

from ..config import AzureModel, OpenAIModel
from .openai import OpenAIProvider, OpenAIResponsesProvider


def _azure(model: OpenAIModel) -> AzureModel:
    if not isinstance(model, AzureModel):  # pragma: no cover - the registry's choice
        raise TypeError(f"an Azure provider needs an AzureModel, got {type(model).__name__}")
    return model


class _AzureEndpoint:
    """URL, query and key header of an Azure OpenAI endpoint (mixed in
    before an OpenAI endpoint class, whose ``path`` it places)."""

    kind = "azure"
    path: str

    def _endpoint(self, model: OpenAIModel) -> str:
        azure = _azure(model)
        base = azure.endpoint.rstrip("/") + "/openai"
        if azure.api_version is None:
            return f"{base}/v1{self.path}"
        if self.path == "/responses":
            return f"{base}/responses"
        return f"{base}/deployments/{quote(azure.target_model, safe='')}{self.path}"

    def _query(self, model: OpenAIModel) -> dict[str, str]:
        azure = _azure(model)
        version = {"api-version": azure.api_version} if azure.api_version else {}
        return {**version, **azure.upstream_query()}

    def _auth(self, model: OpenAIModel) -> dict[str, str]:
        azure = _azure(model)
        credential = azure.api_key()
        if not credential:
            return {}
        if azure.entra_token_env is not None:
            return {"Authorization": f"Bearer {credential}"}
        return {"api-key": credential}


class AzureProvider(_AzureEndpoint, OpenAIProvider):
    """A configured :class:`~gateway.config.AzureModel`: Chat Completions."""


class AzureResponsesProvider(_AzureEndpoint, OpenAIResponsesProvider):
    """An :class:`~gateway.config.AzureModel` with ``responses_api = "native"``."""
