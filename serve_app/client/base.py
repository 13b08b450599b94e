"""What the sync and async clients share: their settings, and how a failed transfer reads."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

import serve_app
from serve_app.client.errors import TransportError
from serve_app.client.retry import RetryPolicy
from serve_app.client.watch import WatchSettings

USER_AGENT = f"orfeas-client/{serve_app.__version__}"
#: A model's file name when the answer names none.
_SUFFIXES = {
    "glb": ".glb",
    "obj": "_obj.zip",
    "stl": ".stl",
    "ply": ".ply",
    "3mf": ".3mf",
    "usdz": ".usdz",
}


@dataclass(frozen=True)
class ClientSettings:
    base_url: str
    headers: dict[str, str]
    timeout: httpx.Timeout
    retry: RetryPolicy
    watch: WatchSettings

    @classmethod
    def make(
        cls,
        base_url: str,
        api_key: str | None,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy | None,
        watch: WatchSettings | None,
    ) -> ClientSettings:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r:.80}")
        headers = {"User-Agent": USER_AGENT}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return cls(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            retry=retry or RetryPolicy(),
            watch=watch or WatchSettings(),
        )


def default_name(job_id: str, fmt: str) -> str:
    return f"{job_id}{_SUFFIXES.get(fmt, '.' + fmt)}"


def transport_error(exc: httpx.TransportError, method: str, path: str) -> TransportError:
    """The client's error for a request that got no answer (or a broken one)."""
    try:
        where = str(exc.request.url)
    except RuntimeError:  # no request attached
        where = path
    what = {
        httpx.ConnectError: "could not connect",
        httpx.ConnectTimeout: "timed out connecting",
        httpx.ReadTimeout: "timed out waiting for the answer",
        httpx.WriteTimeout: "timed out sending the request",
        httpx.RemoteProtocolError: "the connection broke",
    }.get(type(exc), type(exc).__name__)
    return TransportError(f"{method} {where}: {what}" + (f" ({exc})" if str(exc) else ""))
