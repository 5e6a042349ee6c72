"""Image references are bounded before their cost is paid, and each hostile one gets its own code.

URL fetches run against real HTTP servers on 127.0.0.1 (threads of this process, closed at the end of
each test): one allow-listed, one not, so a redirect escape shows up as a connection the second one
receives.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rlreward.engine.config import Limits, MediaPolicy, ScorerConfig
from rlreward.engine.media import load_image, read_bytes, url_allowed
from rlreward.engine.scorer import Scorer
from rlreward.schema import ErrorCode, SampleError
from tests.conftest import noise_png, png_bytes

PNG = noise_png(5)


class _Server:
    """A local HTTP server whose handler is ``route(path) -> (status, headers, body-iterator)``."""

    def __init__(self, route) -> None:
        self.connections = 0
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.requests.append(self.path)
                status, headers, body = route(self.path, outer)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    for chunk in body:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    outer.client_went_away = True

            def log_message(self, *args) -> None:
                pass

        self.client_went_away = False
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def serving(route) -> Iterator[_Server]:
    srv = _Server(route)
    try:
        yield srv
    finally:
        srv.close()


def _png_route(path, srv):
    return 200, {"Content-Type": "image/png", "Content-Length": str(len(PNG))}, [PNG]


def _load(url: str, policy: MediaPolicy, limits: Limits | None = None):
    return load_image(url, policy, limits or Limits())


def _code(fn) -> str:
    with pytest.raises(SampleError) as info:
        fn()
    return info.value.code.value


# --- the allow-list -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://img.example.org/a/x.png", True),
        ("https://img.example.org/a/../a/x.png", True),
        ("https://img.example.org/b/x.png", False),  # another path
        ("https://img.example.org/a/../b/x.png", False),  # dot segments leave the prefix
        ("https://img.example.org.evil.net/a/x.png", False),  # a host that starts like the allowed one
        ("https://img.example.org@evil.net/a/x.png", False),  # user info
        ("https://img.example.org:8443/a/x.png", False),  # another port
        ("http://img.example.org/a/x.png", False),  # another scheme
        ("ftp://img.example.org/a/x.png", False),
    ],
)
def test_url_allow_list_compares_parsed_urls(url, allowed):
    assert url_allowed(url, ["https://img.example.org/a/"]) is allowed


def test_unsupported_scheme_is_url_not_allowed_not_image_not_found(tmp_path):
    policy = MediaPolicy(image_roots=[str(tmp_path)])
    for ref in ("ftp://127.0.0.1/x.png", "gopher://127.0.0.1/x", "s3://bucket/x.png"):
        assert _code(lambda ref=ref: read_bytes(ref, policy, Limits())) == "url_not_allowed"


# --- redirects ------------------------------------------------------------------------------------


def test_redirect_off_the_allow_list_never_connects_to_the_other_host():
    with serving(_png_route) as outside:

        def redirect(path, srv):
            return 302, {"Location": outside.base + "/secret.png", "Content-Length": "0"}, []

        with serving(redirect) as allowed:
            policy = MediaPolicy(allowed_url_prefixes=[allowed.base + "/"])
            with pytest.raises(SampleError) as info:
                _load(allowed.base + "/x.png", policy)
            assert info.value.code is ErrorCode.URL_NOT_ALLOWED
            assert "redirect" in info.value.message
            assert allowed.requests == ["/x.png"]
            assert outside.connections == 0 and outside.requests == []


def test_redirect_inside_the_allow_list_is_followed():
    def route(path, srv):
        if path == "/old.png":
            return 301, {"Location": "/new.png", "Content-Length": "0"}, []
        return _png_route(path, srv)

    with serving(route) as srv:
        policy = MediaPolicy(allowed_url_prefixes=[srv.base + "/"])
        loaded = _load(srv.base + "/old.png", policy)
        assert loaded.image.size == (84, 56)
        assert srv.requests == ["/old.png", "/new.png"]


def test_redirect_loop_stops_after_max_hops():
    def route(path, srv):
        return 302, {"Location": "/loop", "Content-Length": "0"}, []

    with serving(route) as srv:
        policy = MediaPolicy(allowed_url_prefixes=[srv.base + "/"], max_url_redirects=2)
        assert _code(lambda: _load(srv.base + "/loop", policy)) == "image_not_found"
        assert len(srv.requests) == 3  # the first request and 2 hops


# --- deadline and byte cap ------------------------------------------------------------------------


def test_a_dripping_server_is_cut_off_at_the_total_deadline():
    stop = threading.Event()

    def drip(path, srv):
        def body():
            while not stop.is_set():  # one byte every 50 ms: each read is quick, the whole never ends
                yield b"\x89"
                time.sleep(0.05)

        return 200, {"Content-Type": "image/png"}, body()

    with serving(drip) as srv:
        policy = MediaPolicy(allowed_url_prefixes=[srv.base + "/"], url_timeout_s=1.0, url_read_timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(SampleError) as info:
            _load(srv.base + "/slow.png", policy)
        elapsed = time.monotonic() - t0
        stop.set()
    assert info.value.code is ErrorCode.IMAGE_NOT_FOUND
    assert "url_timeout_s" in info.value.message
    # A per-read timeout alone would never fire here. Generous bound: 1 s deadline + 0.5 s last read.
    assert elapsed < 20


def test_a_stalled_server_is_cut_off_by_the_read_timeout():
    release = threading.Event()

    def stall(path, srv):
        def body():
            release.wait(30)
            yield b""

        return 200, {"Content-Type": "image/png"}, body()

    with serving(stall) as srv:
        policy = MediaPolicy(allowed_url_prefixes=[srv.base + "/"], url_timeout_s=5.0, url_read_timeout_s=0.3)
        assert _code(lambda: _load(srv.base + "/x.png", policy)) == "image_not_found"
        release.set()


def test_an_endless_body_is_cut_at_the_byte_cap():
    sent = []

    def endless(path, srv):
        def body():
            for _ in range(10_000):  # 640 MB if nobody stops reading
                sent.append(1)
                yield b"\0" * 65536

        return 200, {"Content-Type": "image/png"}, body()  # no Content-Length

    with serving(endless) as srv:
        policy = MediaPolicy(allowed_url_prefixes=[srv.base + "/"])
        limits = Limits(max_image_bytes=1_000_000)
        assert _code(lambda: _load(srv.base + "/big.png", policy, limits)) == "image_too_large"
    # The client stopped reading: far fewer than the 10,000 chunks were written (socket buffers hold a few).
    assert len(sent) < 1000


def test_a_declared_oversized_body_is_refused_from_its_header():
    def declared(path, srv):
        return 200, {"Content-Type": "image/png", "Content-Length": str(10**10)}, []

    with serving(declared) as srv:
        policy = MediaPolicy(allowed_url_prefixes=[srv.base + "/"])
        assert _code(lambda: _load(srv.base + "/x.png", policy)) == "image_too_large"


def test_http_error_status_is_image_not_found():
    with serving(lambda path, srv: (404, {"Content-Length": "0"}, [])) as srv:
        policy = MediaPolicy(allowed_url_prefixes=[srv.base + "/"])
        assert _code(lambda: _load(srv.base + "/x.png", policy)) == "image_not_found"


def test_a_closed_port_is_image_not_found():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    policy = MediaPolicy(allowed_url_prefixes=[f"http://127.0.0.1:{port}/"])
    assert _code(lambda: _load(f"http://127.0.0.1:{port}/x.png", policy)) == "image_not_found"


# --- files ----------------------------------------------------------------------------------------


def test_oversized_file_is_refused_by_its_size_not_read(tmp_path):
    big = tmp_path / "big.png"
    with big.open("wb") as f:
        f.truncate(1_200 * 1024 * 1024)  # sparse: no disk cost
    policy = MediaPolicy(image_roots=[str(tmp_path)])
    with pytest.raises(SampleError) as info:
        _load(str(big), policy)
    assert info.value.code is ErrorCode.IMAGE_TOO_LARGE
    assert "1258291200 bytes" in info.value.message


# --- each hostile reference gets its own code; neighbours unchanged --------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    (root / "ok.png").write_bytes(noise_png(3))
    return root


@pytest.fixture(scope="module")
def bounded_scorer(tiny_model_dir, root):
    cfg = ScorerConfig(
        model=tiny_model_dir,
        dtype="float32",
        device="cpu",
        media={"image_roots": [str(root)]},
        limits={"max_sample_pixels": 3 * 64 * 48, "max_tokens": 400},
    )
    return Scorer.from_config(cfg)


def _img_sample(ref) -> dict:
    return {"prompt": "What is shown?", "response": "x", "images": [ref]}


def _video_sample(fps) -> dict:
    return {
        "messages": [
            {"role": "user", "content": [{"type": "video", "video": [png_bytes()] * 2, "fps": fps}]},
            {"role": "assistant", "content": "x"},
        ]
    }


def _hostile(root) -> dict[str, tuple[dict, str]]:
    good_b64 = base64.b64encode(png_bytes("red", (64, 48))).decode()
    return {
        "lone_surrogate_in_prompt": ({"prompt": "look \ud800 here", "response": "x"}, "invalid_text"),
        "lone_surrogate_in_answer": ({"prompt": "q", "response": "x \udfff"}, "invalid_text"),
        "nul_byte_in_path": (_img_sample(str(root / "ok\x00.png")), "invalid_image_ref"),
        "lone_surrogate_in_path": (_img_sample(str(root / "ok\ud800.png")), "invalid_image_ref"),
        "over_long_file_name": (_img_sample(str(root / ("a" * 300 + ".png"))), "invalid_image_ref"),
        "over_long_path": (_img_sample("/".join(["dir"] * 1500) + ".png"), "invalid_image_ref"),
        "truncated_base64": (_img_sample(good_b64[:-3]), "image_decode_error"),
        "ftp_url": (_img_sample("ftp://127.0.0.1/x.png"), "url_not_allowed"),
        "fps_not_a_number": (_video_sample("abc"), "bad_content"),
        "fps_nan": (_video_sample(float("nan")), "bad_content"),
        "pixels_over_the_sample_budget": (
            {"prompt": "q", "response": "x", "images": [png_bytes("red", (64, 48))] * 4},
            "image_too_large",
        ),
        "text_over_max_text_chars": ({"prompt": "a " * 1_600, "response": "x"}, "too_many_tokens"),
    }


GOOD = [
    {"prompt": "What colour is it?", "response": "Red.", "images": [png_bytes("red")]},
    {"prompt": "2+2?", "response": "4"},
]


def test_each_hostile_reference_gets_its_own_code_and_neighbours_are_unchanged(bounded_scorer, root):
    alone = [bounded_scorer.score([g])[0] for g in GOOD]
    assert all(r.ok for r in alone)
    cases = _hostile(root)
    mixed, expect = [], []
    for i, (name, (sample, code)) in enumerate(cases.items()):
        mixed += [GOOD[i % 2], sample]
        expect += [("good", i % 2), (name, code)]
    results = bounded_scorer.score(mixed)
    assert len(results) == len(mixed)
    for (tag, what), r in zip(expect, results):
        if tag == "good":
            assert r.ok and abs(r.score - alone[what].score) <= 1e-5, tag
        else:
            assert r.score is None and r.error is not None, tag
            assert r.error.code == what, (tag, r.error)
            assert r.error.code != "internal_error"


def test_text_under_max_text_chars_is_scored(bounded_scorer):
    # 400 tokens x 8 = 3,200 characters allowed; the check in characters refuses nothing that fits.
    [r] = bounded_scorer.score([{"prompt": "hello " * 50, "response": "x"}])
    assert r.ok, r.error


# --- visual tokens known from the header, before decoding -------------------------------------------


@pytest.mark.parametrize(
    "size, keys",
    [
        ((64, 48), {}),
        ((1000, 700), {}),
        ((2000, 30), {}),
        ((640, 480), {"min_pixels": 200_000, "max_pixels": 400_000}),
        ((640, 480), {"max_pixels": 50_000}),
        ((640, 480), {"resized_height": 300, "resized_width": 500}),
    ],
)
@pytest.mark.parametrize("max_pixels", [None, 100_000])
def test_image_tokens_from_the_size_equal_what_the_processor_makes(tiny_model_dir, size, keys, max_pixels):
    s = _token_scorer(tiny_model_dir, max_pixels)
    item = {"type": "image", "image": png_bytes("red", size), **keys}
    sample = {"messages": [{"role": "user", "content": [item, "?"]}, {"role": "assistant", "content": "x"}]}
    prepared = s.prepare(sample)
    assert not hasattr(prepared, "error"), prepared
    merge = s.preprocessor.processor.image_processor.merge_size
    made = int(prepared.image_grid_thw.prod(-1).sum()) // merge**2 + 2
    assert s.preprocessor.image_tokens(item, *size) == made


_TOKEN_SCORERS: dict = {}


def _token_scorer(model: str, max_pixels: int | None) -> Scorer:
    if max_pixels not in _TOKEN_SCORERS:
        _TOKEN_SCORERS[max_pixels] = Scorer.from_pretrained(
            model, dtype="float32", device="cpu", max_pixels=max_pixels
        )
    return _TOKEN_SCORERS[max_pixels]


def test_images_over_the_token_limit_are_refused_before_decoding(tiny_model_dir, monkeypatch):
    from PIL import Image

    s = _token_scorer(tiny_model_dir, None)
    # 4 x 2000x2000 at the checkpoint's bounds: ~5,100 visual tokens each, over 16,384 together.
    big = png_bytes("red", (2000, 2000))
    decoded = set()
    real_load = Image.Image.load  # PIL's decoders end in this (ImageFile.load calls it)
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.add(id(self)) or real_load(self))
    [r] = s.score([{"prompt": "q", "response": "x", "images": [big] * 4}])
    assert r.error is not None and r.error.code == "too_many_tokens", r
    assert "before decoding" in r.error.message
    # Every header is read (and charged) before any image is decoded: the fourth's refusal leaves
    # nothing decoded at all.
    assert len(decoded) == 0
