"""What the trainer adapters share: how to reach the server (:class:`ClientSpec`, picklable, so an
adapter rebuilds its live client after crossing a process or Ray boundary), image references made
JSON-safe (:func:`wire_image`), and scoring helpers that never raise into a trainer.

Nothing here imports torch, transformers or ray: trainer nodes only need the client.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from rlreward.errors import awaited
from rlreward.schema import ScoreResult, image_data_uri

__all__ = [
    "ClientSpec",
    "ClientHolder",
    "wire_image",
    "score_async",
    "score_sync",
    "send_hint_async",
    "send_hint_sync",
]

log = logging.getLogger("rlreward.adapters")

#: Environment variables read when no address is given (trainer workers are often configured by env).
ENV_URL = "RLREWARD_URL"
ENV_APP = "RLREWARD_APP_NAME"
ENV_API_KEY = "RLREWARD_API_KEY"


class ClientSpec(BaseModel):
    """How an adapter reaches the reward server. Plain data: it pickles and crosses Ray boundaries.

    The one options model of the connection, shared by every trainer: ``OpenRLHFOptions`` and
    ``VerlRewardOptions`` extend it with their own fields, TRL's reward functions take the same
    keywords. Exactly one of ``url`` (HTTP, from anywhere) and ``app_name`` (a Ray Serve handle, from
    inside the serving Ray cluster; no HTTP hop) is used. With neither, ``$RLREWARD_URL`` then
    ``$RLREWARD_APP_NAME`` are read when the client is built (so a spec made on the driver can be
    completed by a worker's environment).

    >>> ClientSpec(url="http://rm:8000").model_dump(exclude_defaults=True)
    {'url': 'http://rm:8000'}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(
        default=None, description="HTTP base URL of the rlreward app, e.g. http://rm:8000."
    )
    app_name: str | None = Field(default=None, description="Ray Serve application name (in-cluster handle).")
    api_key: str | None = Field(default=None, description="Bearer token; default: $RLREWARD_API_KEY if set.")
    timeout_s: float = Field(default=300.0, gt=0, description="Per-request timeout of the client, seconds.")
    client_options: dict[str, Any] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("client_options", "options"),
        description="Further RewardClient keyword arguments (retry budget, chunk_size, ...).",
    )
    record_trace: str | None = Field(
        default=None,
        description="Append one JSON line per request (sizes and times, no payload) to this file, for "
        "rlreward loadtest --shape trace / rlreward tune --trace; off by default (rlreward.trace).",
    )

    @model_validator(mode="after")
    def _one_address(self) -> ClientSpec:
        if self.url and self.app_name:
            raise ValueError("give either url (HTTP) or app_name (Ray handle), not both")
        return self

    def _kwargs(self) -> dict[str, Any]:
        url = self.url or (None if self.app_name else os.environ.get(ENV_URL))
        app = self.app_name or (None if url else os.environ.get(ENV_APP))
        if not url and not app:
            raise ValueError(
                "no reward server address: pass url='http://host:8000' (or app_name='rlreward' inside the "
                f"Ray cluster), or set ${ENV_URL} / ${ENV_APP} on the trainer's workers"
            )
        kwargs: dict[str, Any] = {"timeout_s": self.timeout_s, **self.client_options}
        if self.record_trace:
            kwargs["record_trace"] = self.record_trace
        if url:
            kwargs["url"] = url
            key = self.api_key or os.environ.get(ENV_API_KEY)
            if key:
                kwargs["api_key"] = key
        else:
            kwargs["app_name"] = app
        return kwargs

    def client_spec(self) -> ClientSpec:
        """Only the connection (what a :class:`ClientHolder` keeps), without a subclass' fields."""
        return ClientSpec.model_validate(self.model_dump(include=set(ClientSpec.model_fields)))

    def build_sync(self) -> Any:
        """A new :class:`rlreward.client.RewardClient`."""
        from rlreward.client import RewardClient

        return RewardClient(**self._kwargs())

    def build_async(self) -> Any:
        """A new :class:`rlreward.client.AsyncRewardClient` (bind it to one event loop)."""
        from rlreward.client import AsyncRewardClient

        return AsyncRewardClient(**self._kwargs())


#: Builds a client: anything with ``score(samples) -> list[ScoreResult]`` (sync) or an ``async`` one.
ClientFactory = Callable[[], Any]


class ClientHolder:
    """Lazily built clients for one adapter: one sync client, one async client per event loop.

    Pickling keeps only the recipe (``spec`` or ``factory``), never a live client: the holder is
    rebuilt on the other side of a process, Ray task or Ray actor boundary.
    """

    def __init__(self, spec: ClientSpec | None = None, factory: ClientFactory | None = None) -> None:
        if spec is None and factory is None:
            spec = ClientSpec()
        self.spec = spec
        self.factory = factory
        self._lock = threading.Lock()
        self._sync: Any = None
        self._async: dict[int, tuple[Any, Any]] = {}  # id(loop) -> (loop, client)

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "factory": self.factory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["factory"])

    def sync(self) -> Any:
        with self._lock:
            if self._sync is None:
                self._sync = self.factory() if self.factory is not None else self.spec.build_sync()
            return self._sync

    def for_loop(self) -> Any:
        """The client bound to the running event loop (an async client holds loop-bound connections)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async.get(id(loop))
            if entry is None or entry[0] is not loop:
                # Forget clients of closed loops; their connections died with the loop.
                self._async = {k: v for k, v in self._async.items() if not v[0].is_closed()}
                client = self.factory() if self.factory is not None else self.spec.build_async()
                entry = (loop, client)
                self._async[id(loop)] = entry
            return entry[1]


_SHARED: dict[str, ClientHolder] = {}
_SHARED_LOCK = threading.Lock()


def shared_holder(spec: ClientSpec) -> ClientHolder:
    """One :class:`ClientHolder` per connection in this process, for adapters that trainers call as
    plain functions (OpenRLHF's ``reward_func``, verl's ``compute_score``).

    The key is the spec *and* the address the environment gives it (``$RLREWARD_URL``,
    ``$RLREWARD_APP_NAME``, ``$RLREWARD_API_KEY``): a spec without an address follows the
    environment instead of keeping a client built for an earlier one.
    """
    env = [os.environ.get(name, "") for name in (ENV_URL, ENV_APP, ENV_API_KEY)]
    key = spec.model_dump_json() + "\0" + "\0".join(env)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = ClientHolder(spec)
        return _SHARED[key]


async def score_async(holder: ClientHolder, samples: list[dict]) -> list[ScoreResult]:
    """Score through the loop's client; a sync client runs in a worker thread."""
    if not samples:
        return []
    client = holder.for_loop()
    if inspect.iscoroutinefunction(client.score):
        out = await client.score(samples)
    else:  # a sync client: keep the trainer's event loop free while it waits
        out = await asyncio.to_thread(client.score, samples)
    return _check_results(out, len(samples))


def score_sync(holder: ClientHolder, samples: list[dict]) -> list[ScoreResult]:
    """Score with the sync client (an async-only client is driven on a private loop)."""
    if not samples:
        return []
    client = holder.sync()
    out = client.score(samples)
    if inspect.isawaitable(out):
        out = asyncio.run(awaited(out))
    return _check_results(out, len(samples))


def send_hint_sync(holder: ClientHolder, event: str, **kwargs: Any) -> None:
    """Best effort: send an RL-phase hint (``expect``/``rollout_started``/``step_done``) through the
    sync client, if it has hints (a custom client may not). Hints are advisory: a failure is logged
    and never reaches the trainer."""
    try:
        fn = getattr(holder.sync(), event, None)
        if fn is not None:
            out = fn(**kwargs)
            if inspect.isawaitable(out):
                asyncio.run(awaited(out))
    except Exception as exc:
        log.debug("rlreward hint %s not delivered: %s", event, exc)


async def send_hint_async(holder: ClientHolder, event: str, **kwargs: Any) -> None:
    """:func:`send_hint_sync` through the loop's client."""
    try:
        fn = getattr(holder.for_loop(), event, None)
        if fn is not None:
            out = fn(**kwargs) if inspect.iscoroutinefunction(fn) else await asyncio.to_thread(fn, **kwargs)
            if inspect.isawaitable(out):
                await out
    except Exception as exc:
        log.debug("rlreward hint %s not delivered: %s", event, exc)


def _check_results(results: Sequence[Any], n: int) -> list[ScoreResult]:
    results = [r if isinstance(r, ScoreResult) else ScoreResult.model_validate(r) for r in results]
    if len(results) != n:
        raise RuntimeError(f"the reward server returned {len(results)} results for {n} samples")
    return results


def wire_image(ref: Any, memo: dict[int, Any] | None = None) -> Any:
    """An image reference as JSON can carry it; what is already JSON-safe passes through.

    * a PIL image → ``data:image/png;base64,...`` (lossless, so the server sees the same pixels);
    * ``bytes`` → ``data:`` URI; a datasets-style ``{"bytes": ..., "path": ...}`` dict → its bytes
      (as a ``data:`` URI), else its decoded ``image``, else its ``path``;
    * ``str`` (path, URL, base64, ``data:`` URI) → unchanged: the *server* applies its path roots
      and URL allow-list.

    ``memo`` (keyed by ``id(ref)``) encodes an image shared by several samples once, e.g. the
    prompt image of a GRPO group.
    """
    if isinstance(ref, str):
        return ref
    if memo is not None and id(ref) in memo:
        return memo[id(ref)][1]
    out: Any
    if isinstance(ref, (bytes, bytearray, memoryview)):
        out = image_data_uri(ref)
    elif isinstance(ref, dict):
        # Encoded bytes first (smallest, exactly what was decoded for the policy), then the decoded
        # image itself, then a path (which the server must be allowed to read).
        if ref.get("bytes") is not None:
            out = wire_image(ref["bytes"])
        elif ref.get("image") is not None:
            out = wire_image(ref["image"])
        elif ref.get("path"):
            out = str(ref["path"])
        else:
            out = ref  # let the server say what is wrong with it
    elif type(ref).__module__.startswith("PIL."):
        out = image_data_uri(ref)
    else:
        out = ref
    if memo is not None:
        memo[id(ref)] = (ref, out)  # keep ref alive so its id is not reused within this call
    return out
