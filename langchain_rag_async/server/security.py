"""What the server lets in: bearer-key checks, indexing paths confined to roots, safe binds."""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.config import ServerConfig
from langchain_rag_async.errors import ConfigurationError, RequestError

__all__ = (
    "LOOPBACK_NAMES",
    "aconfine_path",
    "allowed_hosts",
    "authorized",
    "check_bind",
    "confine_path",
    "is_loopback",
    "unauthorized",
)

_BEARER = "bearer "
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
"""The ``Host`` names a loopback-bound server answers by default."""


def authorized(header: str | None, api_key: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``api_key`` (constant-time comparison).

    With no key configured every request is authorized.
    """
    if api_key is None:
        return True
    if not header or not header[: len(_BEARER)].lower() == _BEARER:
        return False
    given = header[len(_BEARER) :].strip().encode()
    return hmac.compare_digest(given, api_key.encode())


def unauthorized() -> RequestError:
    """The 401 every protected endpoint answers without the right key."""
    return RequestError(
        401,
        "missing or incorrect API key: send 'Authorization: Bearer <key>' with the key the "
        "server was started with (RAG_API_KEY)",
        type="authentication_error",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def confine_path(raw: str, roots: Sequence[Path]) -> Path:
    """Resolve ``raw`` (symlinks and ``..`` included) and require it to lie under a root.

    Args:
        raw: The path a client asked to index.
        roots: The directories allowed at start (``--root`` / ``RAG_SERVE_ROOTS``).

    Returns:
        The resolved path.

    Raises:
        RequestError: 403 when no root is configured or the path lies outside all of them,
            400 when the path is empty or malformed, 404 when it does not exist.
    """
    if not raw or not raw.strip() or "\x00" in raw:
        raise RequestError(400, "path must be a non-empty file system path", param="path")
    if not roots:
        raise RequestError(
            403,
            "indexing over HTTP is off: start the server with --root DIR (or RAG_SERVE_ROOTS) "
            "to allow directories under DIR",
            type="permission_error",
            code="path_not_allowed",
            param="path",
        )
    try:
        resolved = Path(os.path.realpath(raw))
    except (OSError, ValueError) as exc:
        raise RequestError(400, f"path {raw!r} cannot be resolved: {exc}", param="path") from exc
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if resolved == real_root or real_root in resolved.parents:
            if not resolved.exists():
                raise RequestError(404, f"path {raw!r} does not exist", param="path")
            return resolved
    raise RequestError(
        403,
        f"path {raw!r} lies outside the directories this server may index",
        type="permission_error",
        code="path_not_allowed",
        param="path",
    )


async def aconfine_path(raw: str, roots: Sequence[Path]) -> Path:
    """:func:`confine_path` off the event loop (resolving a path touches the file system)."""
    return await run_in_executor(None, confine_path, raw, roots)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(settings: ServerConfig) -> tuple[str, ...] | None:
    """The ``Host`` header names to serve, or ``None`` for any (see ``ServerConfig``).

    Unset, a loopback ``host`` serves only :data:`LOOPBACK_NAMES` (DNS rebinding: a page
    whose name is made to resolve to 127.0.0.1 must not reach the index via a browser).
    """
    if settings.allowed_hosts is not None:
        return None if "*" in settings.allowed_hosts else settings.allowed_hosts
    return LOOPBACK_NAMES if is_loopback(settings.host) else None


def check_bind(settings: ServerConfig) -> None:
    """Refuse to expose the server beyond this machine without a key (unless insecure).

    Raises:
        ConfigurationError: A non-loopback host, no ``api_key`` and no ``insecure``.
    """
    if is_loopback(settings.host) or settings.api_key or settings.insecure:
        return
    raise ConfigurationError(
        f"refusing to serve on {settings.host} without an API key: set RAG_API_KEY, bind "
        "127.0.0.1, or pass --insecure if the network in front of it is trusted"
    )
