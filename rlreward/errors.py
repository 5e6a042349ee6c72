"""Every exception rlreward raises on purpose, and the one translation of Ray's failures.

Clients (:mod:`rlreward.client`; the foreign error, httpx or Ray, attached as ``__cause__``)::

    RewardClientError            base class
    ├── RewardRequestError       the server refused the request as a whole; retrying will not help
    │   └── AuthenticationError  401/403: missing or wrong API key
    └── RewardServerError        no answer within the retry budget: unreachable, overloaded, replica
        │                        died, 5xx; or the server broke the protocol
        └── RewardTimeoutError   the last attempt timed out

Commands: :class:`UsageError` (printed as one line, exit code 2).

:func:`classify_ray_error` is the single place where a Ray / Ray Serve exception from a replica call
is sorted into "overloaded", "unavailable" (retry) or "bug" (do not); the client's handle mode and
the HTTP ingress both use it. ``ray`` is imported only when such an exception is classified.
:func:`awaited` lets ``asyncio.wait_for`` / ``asyncio.run`` take a Ray ``DeploymentResponse`` (an
awaitable, not a coroutine) at that same boundary.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal, TypeVar

T = TypeVar("T")


class UsageError(Exception):
    """A user-facing failure of a command (bad flag, missing file): one line, exit code 2."""


class RewardClientError(Exception):
    """Base class of every error the clients raise."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.retry_after_s = retry_after_s


class RewardRequestError(RewardClientError):
    """The server refused the request as a whole (HTTP 4xx: malformed, too large, ...). Not retried."""


class AuthenticationError(RewardRequestError):
    """HTTP 401: the server wants ``Authorization: Bearer <api_key>`` and did not get the right one."""


class RewardServerError(RewardClientError):
    """The server could not answer: unreachable, overloaded, a replica died, 5xx (after all retries)."""

    retryable = True


class RewardTimeoutError(RewardServerError):
    """An attempt took longer than ``timeout_s`` (raised when it was the last one)."""


class _Fatal(RewardServerError):
    """A server-side failure that retrying will not fix (a bug, a protocol mismatch)."""

    retryable = False


class ReplicaUnhealthy(RuntimeError):
    """Raised by a replica that cannot score any more (its wake from sleep failed): the call is
    answered ``unavailable`` (503, retried by the clients) and Serve replaces the replica."""


@dataclass(frozen=True)
class RayFailure:
    """What a failed replica call means for the caller."""

    kind: Literal["overloaded", "unavailable", "bug"]
    message: str
    retry_after_s: float | None = None


def classify_ray_error(exc: BaseException) -> RayFailure | None:
    """Sort a Ray / Ray Serve exception raised by a replica call; None if it is not one of Ray's.

    * ``overloaded``: ``BackPressureError`` (the replica queue is full, in requests or, raised by the
      replica itself, in bytes), retry after its delay;
    * ``unavailable``: the replica or actor died, restarts, or is not yet running (also when the
      death arrives wrapped in a ``RayTaskError``), the request was cancelled, the object was lost;
    * ``bug``: the replica's own code raised (``RayTaskError``): retrying will not help.
    """
    try:
        from ray.exceptions import RayActorError, RayError, RayTaskError
        from ray.serve.exceptions import BackPressureError, RayServeException
    except ImportError:  # pragma: no cover - only reachable without ray
        return None
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BackPressureError):  # raised by a replica (its byte bound), wrapped by Ray
        exc = cause
    if isinstance(exc, BackPressureError):
        return RayFailure("overloaded", f"reward replicas are overloaded ({exc})", exc.retry_after_s or 1.0)
    if isinstance(exc, RayActorError) or isinstance(getattr(exc, "cause", None), RayActorError):
        return RayFailure(
            "unavailable", f"a reward replica died or is unavailable ({type(exc).__name__})", 1.0
        )
    if isinstance(exc, ReplicaUnhealthy) or isinstance(getattr(exc, "cause", None), ReplicaUnhealthy):
        return RayFailure(
            "unavailable",
            "a reward replica is unhealthy (its wake from sleep failed) and being replaced",
            1.0,
        )
    if isinstance(exc, RayTaskError):
        return RayFailure("bug", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (RayError, RayServeException)):
        # ReplicaUnavailable, DeploymentUnavailable, RequestCancelled, ObjectLost, ...
        return RayFailure(
            "unavailable", f"no reward replica could take the request ({type(exc).__name__})", 1.0
        )
    return None


async def awaited(aw: Awaitable[T]) -> T:
    """``await aw`` as a coroutine: what ``asyncio.run`` and ``asyncio.wait_for`` need for an awaitable
    that is not one (a Ray ``DeploymentResponse``, a client's coroutine result)."""
    return await aw
