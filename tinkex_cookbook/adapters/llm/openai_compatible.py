"""OpenAI-compatible chat completions over HTTP (OpenAI, vLLM, llama.cpp, Ollama, LiteLLM ...).

``OpenAICompatibleHTTP`` is the shared plumbing (client ownership, auth header, retries,
error mapping); the embeddings adapter imports it from here.

Retries: 429 (honouring a numeric ``Retry-After``, capped), 5xx, timeouts and connection
errors are retried up to ``max_attempts`` with exponential backoff; 401/403 raise
``ConfigError`` at once; anything else, or an unparseable body, raises ``LLMServiceError``.
The API key is only ever sent as an ``Authorization: Bearer`` header: it is kept out of
``repr`` and redacted from every message and log line.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

import httpx

from tinkex_cookbook.adapters.retry import backoff_delay
from tinkex_cookbook.errors import ConfigError, CookbookError
from tinkex_cookbook.ports.llm import ChatMessage, Completion

__all__ = ["LLMServiceError", "OpenAICompatibleHTTP", "OpenAICompatibleLLMClient"]

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = 60.0
"""Upper bound (seconds) on a server's ``Retry-After`` we are willing to honour."""
_RETRYABLE_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_KEY_HINT = "set TINKEX_LLM_API_KEY / OPENAI_API_KEY"


class LLMServiceError(CookbookError, RuntimeError):
    """An LLM/embedding endpoint failed after retries, or answered with something unusable.

    ``path``, ``status`` and ``attempts`` are also attributes; the message names all three.
    """

    def __init__(
        self, message: str, *, path: str | None = None, status: int | str | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.status = status
        self.attempts = attempts


def _hint(status: int | str, timeout: float) -> str:
    """What to do about a failure that outlived the retries; nothing for answers we could not use."""
    if status == 429:
        return ". Hint: the endpoint is rate limiting: lower the request rate, or raise max_attempts / backoff"
    if isinstance(status, int) and status >= 500:
        return ". Hint: the endpoint is failing: retry later, or check TINKEX_LLM_BASE_URL"
    if isinstance(status, str) and "Timeout" in status:
        return (f". Hint: no answer within the {timeout:g} s timeout: check that the server is up, "
                "or raise the adapter's timeout")
    if isinstance(status, str):
        return (". Hint: the connection failed or was cut: check that the server is up and "
                "TINKEX_LLM_BASE_URL is right")
    return ""


def _retry_after_seconds(response: httpx.Response) -> float | None:
    """A numeric ``Retry-After`` (seconds), clamped to ``[0, MAX_RETRY_AFTER]``; else None."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:  # an HTTP-date: fall back to our own backoff
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class OpenAICompatibleHTTP:
    """Shared HTTP plumbing for OpenAI-compatible endpoints.

    Builds an ``httpx.Client`` only when ``http_client`` is not given (``transport`` is
    passed to the one it builds); ``close()`` closes only a client it built.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url or not str(base_url).strip():
            raise ConfigError("an OpenAI-compatible adapter needs a base URL: set TINKEX_LLM_BASE_URL")
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1 (got {max_attempts!r})")
        if backoff < 0 or timeout <= 0:
            raise ConfigError(f"backoff must be >= 0 and timeout > 0 (got {backoff!r}, {timeout!r})")
        if http_client is not None and transport is not None:
            raise ConfigError("pass http_client= or transport=, not both")
        self.base_url = str(base_url).strip().rstrip("/")
        self.model = model
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._sleep = sleep
        self._api_key = api_key or None
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else httpx.Client(
            timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client if this adapter built it; an injected client is left open."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _fail(self, path: str, status: int | str, attempts: int, detail: str) -> LLMServiceError:
        message = (
            f"POST {path} to {self.base_url} failed after {attempts} attempt(s) "
            f"(last status: {status}): {detail}{_hint(status, self.timeout)}"
        )
        return LLMServiceError(self._redact(message), path=path, status=status, attempts=attempts)

    def _post_json(self, path: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """POST ``payload`` to ``base_url + path`` with retries: (decoded JSON object, attempts)."""
        url = self.base_url + path
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                response = self._client.post(url, json=payload, headers=self._headers())
            except _RETRYABLE_TRANSPORT_ERRORS as exc:
                status = f"{type(exc).__name__}"
                if last:
                    raise self._fail(path, status, attempt, self._redact(str(exc) or status)) from None
                delay = backoff_delay(attempt, self.backoff)
                logger.warning("POST %s: %s (attempt %d/%d), retrying in %.2fs",
                               path, status, attempt, self.max_attempts, delay)
                self._sleep(delay)
                continue
            except httpx.HTTPError as exc:  # unsupported protocol, bad URL ...: not retryable
                raise self._fail(path, type(exc).__name__, attempt, self._redact(str(exc))) from None

            code = response.status_code
            if code in (401, 403):
                raise ConfigError(
                    f"the endpoint rejected the API key (HTTP {code} from POST {path} "
                    f"at {self.base_url}): {_KEY_HINT}"
                )
            if code == 429 or code >= 500:
                if last:
                    raise self._fail(path, code, attempt, self._snippet(response))
                retry_after = _retry_after_seconds(response) if code == 429 else None
                delay = retry_after if retry_after is not None else backoff_delay(attempt, self.backoff)
                logger.warning("POST %s: HTTP %d (attempt %d/%d), retrying in %.2fs",
                               path, code, attempt, self.max_attempts, delay)
                self._sleep(delay)
                continue
            if code >= 400 or code < 200:
                raise self._fail(path, code, attempt, self._snippet(response))
            try:
                body = response.json()
            except ValueError:
                raise self._fail(path, code, attempt, "response body is not JSON: "
                                 + self._snippet(response)) from None
            if not isinstance(body, dict):
                raise self._fail(path, code, attempt,
                                 f"expected a JSON object, got {type(body).__name__}")
            return body, attempt
        raise AssertionError("unreachable")  # pragma: no cover

    def _snippet(self, response: httpx.Response, limit: int = 200) -> str:
        try:
            text = response.text
        except Exception:  # noqa: BLE001 - undecodable body: say so, do not mask the real error
            text = "<undecodable body>"
        text = " ".join(text.split())
        return self._redact(text[:limit] + ("..." if len(text) > limit else "")) or "<empty body>"


def _int_usage(usage: Any) -> dict[str, int]:
    if not isinstance(usage, dict):
        return {}
    return {str(k): int(v) for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}


class OpenAICompatibleLLMClient(OpenAICompatibleHTTP):
    """``LLMClient`` over ``POST {base_url}/chat/completions``."""

    path = "/chat/completions"

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
    ) -> Completion:
        payload: dict[str, Any] = {
            "messages": [dict(message) for message in messages],
            "temperature": temperature,
        }
        chosen = model or self.model
        if chosen is not None:
            payload["model"] = chosen
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        body, attempts = self._post_json(self.path, payload)
        try:
            choice = body["choices"][0]
            content = choice["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._fail(self.path, 200, attempts,
                             "response has no choices[0].message") from None
        if content is not None and not isinstance(content, str):
            raise self._fail(self.path, 200, attempts,
                             f"choices[0].message.content is {type(content).__name__}, not a string")
        finish_reason = choice.get("finish_reason") or "stop"
        return Completion(content or "", str(finish_reason), _int_usage(body.get("usage")))
