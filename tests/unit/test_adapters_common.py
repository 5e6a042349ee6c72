"""Shared adapter machinery: client recipes, per-loop clients, wire encoding of images.

Also home of :class:`LocalScorerClient`, the in-process transport the adapter unit tests use: the
real :class:`rlreward.engine.scorer.Scorer` on the tiny checkpoint behind the client's ``score`` method,
with a JSON round trip of the samples so that anything an HTTP client could not send fails here too.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import pickle
import threading

import pytest

from rlreward.adapters._common import ClientHolder, ClientSpec, score_async, score_sync, wire_image
from rlreward.schema import ScoreResult, as_list
from tests.conftest import noise_png

_SCORERS: dict[str, object] = {}
_SCORERS_LOCK = threading.Lock()


def _scorer_for(model_dir: str):
    with _SCORERS_LOCK:
        if model_dir not in _SCORERS:
            from rlreward.engine.scorer import Scorer

            _SCORERS[model_dir] = Scorer.from_pretrained(model_dir, dtype="float32", device="cpu")
        return _SCORERS[model_dir]


class LocalScorerClient:
    """``RewardClient``-shaped in-process transport (picklable: it holds only the model path)."""

    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir
        self.calls: list[list[dict]] = []

    def __getstate__(self):
        return {"model_dir": self.model_dir}

    def __setstate__(self, state):
        self.__init__(state["model_dir"])

    def score(self, samples: list[dict]) -> list[ScoreResult]:
        wire = json.loads(json.dumps(samples))  # what HTTP would carry
        self.calls.append(wire)
        return _scorer_for(self.model_dir).score(wire)


class AsyncLocalScorerClient(LocalScorerClient):
    async def score(self, samples: list[dict]) -> list[ScoreResult]:  # type: ignore[override]
        return await asyncio.to_thread(LocalScorerClient.score, self, samples)


class LocalFactory:
    """Picklable client factory for adapters (``client_factory=LocalFactory(dir)``)."""

    def __init__(self, model_dir: str, asynchronous: bool = False) -> None:
        self.model_dir, self.asynchronous = model_dir, asynchronous
        self.made: list[LocalScorerClient] = []

    def __getstate__(self):
        return {"model_dir": self.model_dir, "asynchronous": self.asynchronous}

    def __setstate__(self, state):
        self.__init__(**state)

    def __call__(self) -> LocalScorerClient:
        client = (AsyncLocalScorerClient if self.asynchronous else LocalScorerClient)(self.model_dir)
        self.made.append(client)
        return client

    def calls(self) -> list[list[dict]]:
        return [c for client in self.made for c in client.calls]


class DeadClient:
    """A client whose server is gone: every call fails as the real client does after its retries."""

    def score(self, samples):
        raise ConnectionError("reward server unreachable at http://127.0.0.1:9 (after retries)")


def dead_factory():
    return DeadClient()


def pil_noise(seed: int):
    from PIL import Image

    return Image.open(io.BytesIO(noise_png(seed))).convert("RGB")


# -- tests -------------------------------------------------------------------------------------------
def test_client_spec_needs_an_address(monkeypatch):
    monkeypatch.delenv("RLREWARD_URL", raising=False)
    monkeypatch.delenv("RLREWARD_APP_NAME", raising=False)
    with pytest.raises(ValueError, match="RLREWARD_URL"):
        ClientSpec()._kwargs()
    with pytest.raises(ValueError, match="not both"):
        ClientSpec(url="http://a:1", app_name="x")


def test_client_spec_reads_worker_environment(monkeypatch):
    monkeypatch.setenv("RLREWARD_URL", "http://rm:8000")
    monkeypatch.setenv("RLREWARD_API_KEY", "k")
    assert ClientSpec(timeout_s=5)._kwargs() == {"url": "http://rm:8000", "api_key": "k", "timeout_s": 5}
    assert ClientSpec(app_name="rlreward")._kwargs() == {"app_name": "rlreward", "timeout_s": 300.0}


def test_holder_pickles_without_live_client(tiny_model_dir):
    holder = ClientHolder(factory=LocalFactory(tiny_model_dir))
    assert holder.sync() is holder.sync()
    clone = pickle.loads(pickle.dumps(holder))
    assert clone._sync is None and clone.factory.model_dir == tiny_model_dir
    assert clone.sync() is not holder.sync()


def test_async_holder_gives_each_event_loop_its_own_client(tiny_model_dir):
    holder = ClientHolder(factory=LocalFactory(tiny_model_dir, asynchronous=True))

    async def get():
        return holder.for_loop()

    first, second = asyncio.run(get()), asyncio.run(get())
    assert first is not second
    assert len(holder._async) == 1  # the closed loop's client was dropped


def test_score_helpers_accept_sync_and_async_clients(tiny_model_dir):
    sample = {"prompt": "2+2?", "response": "4"}
    sync = score_sync(ClientHolder(factory=LocalFactory(tiny_model_dir)), [sample])
    via_thread = asyncio.run(score_async(ClientHolder(factory=LocalFactory(tiny_model_dir)), [sample]))
    native = asyncio.run(score_async(ClientHolder(factory=LocalFactory(tiny_model_dir, True)), [sample]))
    assert sync[0].ok and via_thread[0].ok and native[0].ok
    # Three scorers, three passes: equal within fp32 noise (bitwise only on some CPUs).
    assert via_thread[0].score == pytest.approx(sync[0].score, abs=1e-5)
    assert native[0].score == pytest.approx(sync[0].score, abs=1e-5)


def test_wire_image_is_lossless_and_encodes_shared_images_once():
    from PIL import Image

    img = pil_noise(1)
    memo: dict = {}
    uri = wire_image(img, memo)
    assert uri.startswith("data:image/png;base64,") and wire_image(img, memo) is uri
    back = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert back.tobytes() == img.tobytes()
    raw = noise_png(2)
    assert base64.b64decode(wire_image(raw).split(",", 1)[1]) == raw
    assert wire_image({"bytes": raw, "path": "x.png"}) == wire_image(raw)
    assert wire_image({"bytes": None, "path": "imgs/x.png"}) == "imgs/x.png"
    assert wire_image("/data/a.png") == "/data/a.png"


def test_as_list_flattens_numpy_arrays_from_parquet():
    import numpy as np

    assert as_list(np.array(["a", "b"], dtype=object)) == ["a", "b"]
    assert as_list(None) == [] and as_list("x") == ["x"] and as_list(("a",)) == ["a"]


def test_shared_holder_follows_the_environment_address(monkeypatch):
    from rlreward.adapters._common import ClientSpec, shared_holder

    spec = ClientSpec()  # no address: $RLREWARD_URL decides
    monkeypatch.setenv("RLREWARD_URL", "http://127.0.0.1:1")
    first = shared_holder(spec)
    assert shared_holder(ClientSpec()) is first  # same connection, same holder
    monkeypatch.setenv("RLREWARD_URL", "http://127.0.0.1:2")
    second = shared_holder(spec)
    assert second is not first
    assert second.spec._kwargs()["url"] == "http://127.0.0.1:2"
