"""Image references → decoded, checked PIL images.

A reference (``REF``) is one of: a PIL image (in-process), raw ``bytes``, a ``data:`` URI, a base64
string, a local path (only under :attr:`MediaPolicy.image_roots`, also as ``file://``), or an
``http(s)`` URL whose prefix is allow-listed. Every failure raises :class:`SampleError` with the code
that names the cause; nothing here touches the model.

Safety: every cost is bounded before it is paid (the limits are :class:`Limits` and
:class:`MediaPolicy` fields; defaults in the README's "Limits" section):

* a local file's size is read with ``stat`` before the file is read, and at most
  ``max_image_bytes + 1`` bytes are ever read from it;
* a URL is fetched with httpx, streamed, cut off past ``max_image_bytes`` and past a **total**
  deadline (``url_timeout_s``: connect, redirects, headers and body together; no single network
  wait is longer than ``url_read_timeout_s``); redirects are followed only up to
  ``max_url_redirects`` hops and each hop is checked against the allow-list *before* it is
  connected to;
* the pixel count is read from the header before the pixels are decoded (``max_image_pixels`` per
  image, ``max_sample_pixels`` over one sample's images and frames), so a decompression bomb costs a
  header read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from rlreward.engine.config import Limits, MediaPolicy
from rlreward.schema import ErrorCode, SampleError

_B64_RE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
#: The base64 alphabet, padding and whitespace anywhere: what a (maybe broken) base64 string is made of.
_B64_LOOSE_RE = re.compile(r"[A-Za-z0-9+/_=\s-]+")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: Linux PATH_MAX / NAME_MAX, in bytes: longer references cannot be files (the OS would refuse them).
_PATH_MAX = 4096
_NAME_MAX = 255
#: Below this length a string that is neither valid base64 nor an existing file is reported as a
#: missing file; above it (no real file name is that long) as broken base64.
_B64_MIN_GUESS = 256
#: How PNG, JPEG, GIF and WebP files begin once base64-encoded: such a string is an image's base64.
_B64_MAGIC = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR")


@dataclass
class PixelBudget:
    """Decoded pixels one sample may still spend, charged from each image header before decoding.

    One budget per sample (``Limits.max_sample_pixels``): the decoded images of a sample are held
    together until the resize, so their sum, not each one, is what a request costs. When
    ``tokens_left`` is set (``Limits.max_tokens``), the visual tokens each image will become (known
    from its size alone) are charged too, so a sample whose images alone exceed the token limit is
    refused before they are decoded and resized, not after the processor's work.
    """

    left: int
    tokens_left: int | None = None

    @classmethod
    def for_sample(
        cls, limits: Limits, *, count_tokens: bool = False, reserved_tokens: int = 0
    ) -> PixelBudget:
        """A sample's budget; ``reserved_tokens`` are tokens the sample will have whatever its images."""
        tokens = limits.max_tokens - reserved_tokens if count_tokens else None
        return cls(left=limits.max_sample_pixels, tokens_left=tokens)

    def charge(self, width: int, height: int, limits: Limits, tokens: int = 0) -> None:
        if self.tokens_left is not None and tokens > self.tokens_left:
            raise SampleError(
                ErrorCode.TOO_MANY_TOKENS,
                f"the sample's images alone come to more than {limits.max_tokens} visual tokens "
                f"(limits.max_tokens; this {width}x{height} image becomes {tokens}, {self.tokens_left} are "
                "left), known from the image headers before decoding; send smaller images or lower max_pixels",
            )
        n = width * height
        if n > self.left:
            raise SampleError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"the sample's images add up to more than {limits.max_sample_pixels} pixels "
                f"(limits.max_sample_pixels; this {width}x{height} image needs {n}, {self.left} are left); "
                "send fewer or smaller images",
            )
        self.left -= n
        if self.tokens_left is not None:
            self.tokens_left -= tokens


@dataclass(frozen=True)
class LoadedImage:
    """A decoded RGB image and a content hash (for vision reuse)."""

    image: Image.Image
    digest: str


def _describe(ref: Any) -> str:
    s = ref if isinstance(ref, str) else type(ref).__name__
    return s if len(s) <= 80 else s[:77] + "..."


def _check_path_syntax(ref: str) -> None:
    """A reference that cannot name a file at all (the OS would raise) gets ``invalid_image_ref``."""
    if "\x00" in ref:
        raise SampleError(ErrorCode.INVALID_IMAGE_REF, "image path contains a NUL byte")
    try:
        os.fsencode(ref)
    except UnicodeEncodeError as exc:
        raise SampleError(
            ErrorCode.INVALID_IMAGE_REF,
            f"image path has a character no file name can hold ({ref[exc.start]!r} at {exc.start})",
        ) from None
    raw = ref.encode("utf-8", "surrogatepass")
    if len(raw) > _PATH_MAX:
        raise SampleError(
            ErrorCode.INVALID_IMAGE_REF,
            f"image reference is {len(raw)} bytes: too long for a path (max {_PATH_MAX}) and not valid base64",
        )
    longest = max((len(part.encode("utf-8", "surrogatepass")) for part in ref.split("/")), default=0)
    if longest > _NAME_MAX:
        raise SampleError(
            ErrorCode.INVALID_IMAGE_REF,
            f"image path has a {longest}-byte file name: over the limit of {_NAME_MAX} bytes (and not valid base64)",
        )


def check_path(ref: str, policy: MediaPolicy) -> Path:
    """Resolve a local path reference, allowed only under ``policy.image_roots``.

    Raises :class:`SampleError`: ``invalid_image_ref`` (NUL byte, over-long name), ``path_not_allowed``
    (no roots, or outside them after resolving links), ``image_not_found`` (no such file).
    """
    if ref.startswith("file://"):
        ref = ref[len("file://") :]
    _check_path_syntax(ref)
    if not policy.image_roots:
        raise SampleError(
            ErrorCode.PATH_NOT_ALLOWED,
            f"local path {_describe(ref)!r} refused: no image roots are configured "
            "(pass --image-root DIR, or send the image as base64 / data URI)",
        )
    if not os.path.isabs(ref):
        # A relative path is relative to the image roots (a dataset's own folder, say), never to
        # the server's working directory.
        candidates = [os.path.join(root, ref) for root in policy.image_roots]
        ref = next((c for c in candidates if os.path.isfile(c)), candidates[0])
    path = Path(os.path.realpath(ref))
    for root in policy.image_roots:
        root_real = Path(os.path.realpath(root))
        if path == root_real or root_real in path.parents:
            break
    else:
        raise SampleError(
            ErrorCode.PATH_NOT_ALLOWED,
            f"local path {_describe(ref)!r} is outside the allowed image roots {policy.image_roots}",
        )
    try:
        is_file = path.is_file()
    except (OSError, ValueError):
        is_file = False
    if not is_file:
        raise SampleError(ErrorCode.IMAGE_NOT_FOUND, f"no file at {_describe(ref)!r}")
    return path


def read_file(path: Path, limits: Limits) -> bytes:
    """The bytes of an (already allowed) image file; its size is checked with ``stat`` first.

    Never reads more than ``limits.max_image_bytes + 1`` bytes, even if the file grows meanwhile.
    """
    try:
        size = path.stat().st_size
        if size > limits.max_image_bytes:
            raise SampleError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"image file {path.name!r} is {size} bytes, over the limit of {limits.max_image_bytes} "
                "(limits.max_image_bytes)",
            )
        with path.open("rb") as f:
            data = f.read(limits.max_image_bytes + 1)
    except OSError as exc:
        raise SampleError(ErrorCode.IMAGE_NOT_FOUND, f"cannot read {path.name!r}: {exc.strerror}") from exc
    return data


def url_allowed(url: str, prefixes: list[str]) -> bool:
    """Whether ``url`` is under one of the allow-listed ``prefixes``.

    Compared as parsed URLs, not strings: scheme, host and port must be equal and the (normalised)
    path must start with the prefix's path, so ``https://ok.example.evil.net/`` or
    ``https://ok.example@evil.net/`` never pass as ``https://ok.example``. URLs with user info are
    refused.
    """
    import httpx

    try:
        u = httpx.URL(url)
    except Exception:
        return False
    if u.scheme not in ("http", "https") or not u.host or u.userinfo:
        return False
    for prefix in prefixes:
        try:
            p = httpx.URL(prefix)
        except Exception:
            continue
        if (u.scheme, u.host, u.port) != (p.scheme, p.host, p.port):
            continue
        if u.path.startswith(p.path or "/"):
            return True
    return False


def _refuse_url(url: str, why: str) -> SampleError:
    return SampleError(
        ErrorCode.URL_NOT_ALLOWED,
        f"URL {_describe(url)!r} refused: {why}; http(s) images are off unless their prefix is "
        "allow-listed (media.allowed_url_prefixes); send the image as base64 instead",
    )


def _read_url(url: str, policy: MediaPolicy, limits: Limits) -> bytes:
    """Fetch an allow-listed URL within the total deadline and the byte cap (see module docstring)."""
    import httpx

    if not url_allowed(url, policy.allowed_url_prefixes):
        raise _refuse_url(url, "not under an allow-listed prefix")
    deadline = time.monotonic() + policy.url_timeout_s
    wait = min(policy.url_read_timeout_s, policy.url_timeout_s)
    cap = limits.max_image_bytes
    try:
        with httpx.Client(follow_redirects=False, timeout=httpx.Timeout(wait), trust_env=False) as client:
            for _hop in range(policy.max_url_redirects + 1):
                with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as resp:
                    if resp.is_redirect:
                        target = str(resp.url.join(resp.headers.get("location", "")))
                        if not url_allowed(target, policy.allowed_url_prefixes):
                            raise _refuse_url(
                                target, f"redirect from {_describe(url)!r} leaves the allow-list"
                            )
                        url = target
                        continue
                    if resp.status_code != 200:
                        raise SampleError(
                            ErrorCode.IMAGE_NOT_FOUND,
                            f"could not fetch {_describe(url)!r}: HTTP {resp.status_code}",
                        )
                    declared = resp.headers.get("content-length")
                    if declared is not None and declared.isdigit() and int(declared) > cap:
                        raise SampleError(
                            ErrorCode.IMAGE_TOO_LARGE,
                            f"URL {_describe(url)!r} declares {declared} bytes, over the limit of {cap} "
                            "(limits.max_image_bytes)",
                        )
                    buf = bytearray()
                    # Raw bytes as they arrive (identity encoding asked): the cap counts what the
                    # socket delivered, and no Content-Encoding can inflate it behind our back.
                    for chunk in resp.iter_raw():
                        buf += chunk
                        if len(buf) > cap:
                            raise SampleError(
                                ErrorCode.IMAGE_TOO_LARGE,
                                f"URL {_describe(url)!r} sent more than {cap} bytes (limits.max_image_bytes)",
                            )
                        if time.monotonic() > deadline:
                            raise SampleError(
                                ErrorCode.IMAGE_NOT_FOUND,
                                f"fetching {_describe(url)!r} took longer than {policy.url_timeout_s:g} s "
                                "(media.url_timeout_s, the whole fetch); aborted",
                            )
                    return bytes(buf)
                if time.monotonic() > deadline:
                    break
            raise SampleError(
                ErrorCode.IMAGE_NOT_FOUND,
                f"could not fetch {_describe(url)!r}: more than {policy.max_url_redirects} redirects "
                "(media.max_url_redirects) or past the deadline",
            )
    except SampleError:
        raise
    except httpx.HTTPError as exc:  # connect/read timeouts, refused connections, protocol errors
        raise SampleError(
            ErrorCode.IMAGE_NOT_FOUND, f"could not fetch {_describe(url)!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _decode_b64(s: str, limits: Limits) -> bytes:
    if len(s) > limits.max_image_bytes * 4 // 3 + 16:
        raise SampleError(
            ErrorCode.IMAGE_TOO_LARGE, f"encoded image is over the limit of {limits.max_image_bytes} bytes"
        )
    try:
        return base64.b64decode(s, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise SampleError(ErrorCode.IMAGE_DECODE, f"invalid base64 image data: {exc}") from exc


def read_bytes(ref: Any, policy: MediaPolicy, limits: Limits) -> bytes | Image.Image:
    """Resolve ``ref`` to encoded bytes (or pass a PIL image through), applying the source rules."""
    if isinstance(ref, Image.Image):
        return ref
    if isinstance(ref, (bytes, bytearray, memoryview)):
        return bytes(ref)
    if isinstance(ref, dict):
        # {"bytes": ..., "path": ...} as HF datasets store images.
        if ref.get("bytes") is not None:
            return read_bytes(ref["bytes"], policy, limits)
        if ref.get("path"):
            return read_bytes(ref["path"], policy, limits)
        raise SampleError(ErrorCode.BAD_CONTENT, "image dict needs a 'bytes' or 'path' entry")
    if not isinstance(ref, str):
        raise SampleError(
            ErrorCode.BAD_CONTENT,
            f"image reference must be a path, base64 string, data URI, URL or bytes, not {type(ref).__name__}",
        )
    if not ref:
        raise SampleError(ErrorCode.BAD_CONTENT, "empty image reference")
    if ref.startswith("data:"):
        header, sep, payload = ref.partition(",")
        if not sep or ";base64" not in header:
            raise SampleError(ErrorCode.IMAGE_DECODE, "data URI must be 'data:<mime>;base64,<payload>'")
        return _decode_b64(payload, limits)
    if ref.startswith(("http://", "https://")):
        return _read_url(ref, policy, limits)
    scheme = _SCHEME_RE.match(ref)
    if scheme and scheme.group(1).lower() != "file":
        raise _refuse_url(ref, f"the {scheme.group(1)!r} scheme is not supported (only http and https)")
    # base64's alphabet has no '.', and a path almost always has one (an extension); "/9j/..." is a
    # JPEG in base64, so a leading '/' alone proves nothing.
    compact = "".join(ref.split()) if len(ref) > 256 else ref
    is_b64 = "." not in ref and _B64_RE.fullmatch(compact) is not None and len(compact) % 4 == 0
    if ref.startswith(("./", "../", "~", "file://")) or not is_b64:
        if (
            not ref.startswith(("./", "../", "~", "file://"))
            and (len(ref) >= _B64_MIN_GUESS or ref.startswith(_B64_MAGIC))
            and "." not in ref
            and _B64_LOOSE_RE.fullmatch(ref)
        ):
            # Base64's alphabet only, no extension, and long or starting as an image does: broken
            # base64 (bad length, stray padding), not a missing file.
            raise SampleError(
                ErrorCode.IMAGE_DECODE,
                f"invalid base64 image data ({len(compact)} characters, not a multiple of 4 or badly padded)",
            )
        return read_file(check_path(os.path.expanduser(ref), policy), limits)
    return _decode_b64(compact, limits)


def _check_geometry(width: int, height: int, limits: Limits) -> None:
    if width <= 0 or height <= 0:
        raise SampleError(ErrorCode.IMAGE_DECODE, f"image has no pixels ({width}x{height})")
    if width * height > limits.max_image_pixels:
        raise SampleError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{limits.max_image_pixels} (limits.max_image_pixels)",
        )
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise SampleError(
            ErrorCode.ASPECT_RATIO,
            f"image is {width}x{height}: aspect ratio {ratio:.1f} is over {limits.max_aspect_ratio:g}; "
            "crop or pad it",
        )


def open_image(
    ref: Any,
    policy: MediaPolicy,
    limits: Limits,
    budget: PixelBudget | None = None,
    visual_tokens: Callable[[int, int], int] | None = None,
) -> LoadedImage:
    """Resolve and check one image reference from its header; the pixels are **not decoded yet**.

    ``budget`` is the sample's :class:`PixelBudget`; the image's pixels (and, with
    ``visual_tokens(width, height)``, its visual tokens) are charged to it from the header. The digest
    is the encoded bytes' (a PIL image's: its pixels'), so a caller holding the prepared form of that
    content can skip :func:`decode_image`. Raises :class:`SampleError`.
    """
    src = read_bytes(ref, policy, limits)
    if isinstance(src, Image.Image):
        _check_geometry(src.width, src.height, limits)
        if budget is not None:
            budget.charge(
                src.width, src.height, limits, visual_tokens(src.width, src.height) if visual_tokens else 0
            )
        digest_src = src.tobytes() + f"{src.mode}{src.size}".encode()
        return LoadedImage(image=src, digest=hashlib.blake2b(digest_src, digest_size=16).hexdigest())
    if len(src) > limits.max_image_bytes:
        raise SampleError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"encoded image is {len(src)} bytes, over the limit of {limits.max_image_bytes}",
        )
    if not src:
        raise SampleError(ErrorCode.IMAGE_DECODE, "image data is empty")
    with _decode_errors(src):
        img = Image.open(io.BytesIO(src))
        _check_geometry(img.width, img.height, limits)
        if budget is not None:
            tokens = visual_tokens(img.width, img.height) if visual_tokens else 0
            budget.charge(img.width, img.height, limits, tokens)
    return LoadedImage(image=img, digest=hashlib.blake2b(src, digest_size=16).hexdigest())


def decode_image(image: Image.Image) -> Image.Image:
    """Decode an image :func:`open_image` opened, as RGB (the reference recipe's conversion).
    Raises :class:`SampleError` (``image_decode_error``, ``image_too_large`` for a bomb)."""
    fp = getattr(image, "fp", None)
    with _decode_errors(fp.getvalue() if isinstance(fp, io.BytesIO) else None):
        image.load()
    return image if image.mode == "RGB" else _to_rgb(image)


def load_image(
    ref: Any, policy: MediaPolicy, limits: Limits, budget: PixelBudget | None = None
) -> LoadedImage:
    """Resolve, check and decode one image reference to an RGB PIL image (:func:`open_image`, the
    pixels charged to ``budget``, then :func:`decode_image`). Raises :class:`SampleError`."""
    opened = open_image(ref, policy, limits, budget)
    return LoadedImage(image=decode_image(opened.image), digest=opened.digest)


@contextlib.contextmanager
def _decode_errors(src: bytes | None) -> Iterator[None]:
    """PIL's many failure types → :class:`SampleError` describing ``src`` (the encoded image, when
    known); decompression-bomb warnings are errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except SampleError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SampleError(ErrorCode.IMAGE_TOO_LARGE, f"image refused as a decompression bomb: {exc}") from exc
    except Exception as exc:  # PIL raises many types for bad data
        raise SampleError(ErrorCode.IMAGE_DECODE, f"cannot decode image: {_decode_reason(exc, src)}") from exc


def first_resize(item: dict, width: int | None, height: int | None, patch: int = 14) -> tuple[int, int, str]:
    """(height, width) qwen-vl-utils' ``fetch_image`` resizes an image item to (its own
    ``smart_resize``, with the item's ``resized_height``/``resized_width`` or ``min_pixels``/
    ``max_pixels``, else its defaults), and how that was decided; ``patch`` is qwen-vl-utils'
    ``image_patch_size``. Raises ``ValueError`` when the item's ``min_pixels`` is above its ``max_pixels``."""
    from qwen_vl_utils import vision_process as vp

    factor = patch * vp.SPATIAL_MERGE_SIZE
    if "resized_height" in item and "resized_width" in item:
        h, w = vp.smart_resize(item["resized_height"], item["resized_width"], factor=factor)
        return h, w, f"resized_height x resized_width {item['resized_height']}x{item['resized_width']}"
    lo = item.get("min_pixels", vp.IMAGE_MIN_TOKEN_NUM * factor**2)
    hi = item.get("max_pixels", vp.IMAGE_MAX_TOKEN_NUM * factor**2)
    if lo > hi:
        raise ValueError(f"min_pixels {lo} is above max_pixels {hi} (qwen-vl-utils' default)")
    h, w = vp.smart_resize(height, width, factor=factor, min_pixels=lo, max_pixels=hi)
    return h, w, f"a {width}x{height} image resized with min_pixels {lo} / max_pixels {hi}"


def check_item_resize(
    item: dict, width: int | None, height: int | None, limits: Any, patch: int = 14
) -> None:
    """Refuse per-item resize keys that would make qwen-vl-utils allocate a huge image.

    The first resize honours the item's ``min_pixels``/``resized_height``/``resized_width``, and
    they can *enlarge* an image: ``min_pixels: 1e15`` would be a memory bomb. The area it would
    produce (qwen-vl-utils' own ``smart_resize``, for an image of known size; the keys alone for a
    video) must be at most ``limits.max_image_pixels``, like any decoded image.
    Raises :class:`SampleError`: ``image_too_large``, or ``bad_content`` for keys qwen-vl-utils refuses.
    """
    cap = limits.max_image_pixels
    if ("resized_height" in item and "resized_width" in item) or (width is not None and height is not None):
        try:
            h, w, why = first_resize(item, width, height, patch)
        except ValueError as exc:
            raise SampleError(ErrorCode.BAD_CONTENT, str(exc)) from exc
        area = h * w
    else:
        area, why = item.get("min_pixels", 0), f"min_pixels {item.get('min_pixels')}"
    if area > cap:
        raise SampleError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{why} would be resized to {area} pixels, over the limit of {cap} (limits.max_image_pixels)",
        )


def _decode_reason(exc: Exception, src: bytes | None) -> str:
    """What was wrong with ``src``, in words (PIL's messages name the in-memory file object instead)."""
    if src is None:
        return re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the image", str(exc))
    if isinstance(exc, Image.UnidentifiedImageError):
        return f"not an image format PIL reads ({len(src)} bytes starting {src[:8]!r}); send PNG, JPEG, WebP or GIF"
    return re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", f"the {len(src)}-byte image", str(exc))


def _to_rgb(img: Image.Image) -> Image.Image:
    # Exactly the reference recipe's conversion (qwen-vl-utils' fetch_image): RGBA is composited on
    # white, every other mode goes through PIL's convert("RGB").
    from qwen_vl_utils.vision_process import to_rgb

    return to_rgb(img)


#: The qwen-vl-utils video reader rlreward pins (``FORCE_QWENVL_VIDEO_READER`` in the environment
#: overrides it): decord decodes only the sampled frames, and is what qwen-vl-utils picks by itself
#: when torchcodec is absent. torchvision 0.29 has no ``io.read_video``; qwen-vl-utils' silent
#: fallback to it is refused by the preprocessor.
VIDEO_READER = "decord"


def ensure_video_reader() -> str:
    """Make qwen-vl-utils read video files with :data:`VIDEO_READER` (or the environment's
    ``FORCE_QWENVL_VIDEO_READER``) and return that reader's name.

    Raises :class:`SampleError` (``video_error``) when the reader is not installed.
    """
    import importlib.util

    from qwen_vl_utils import vision_process as vp

    want = os.environ.get("FORCE_QWENVL_VIDEO_READER") or VIDEO_READER
    if want not in vp.VIDEO_READER_BACKENDS:
        raise SampleError(ErrorCode.VIDEO_ERROR, f"unknown video reader {want!r} (FORCE_QWENVL_VIDEO_READER)")
    if want != "torchvision" and importlib.util.find_spec(want) is None:
        raise SampleError(
            ErrorCode.VIDEO_ERROR,
            f"video files need the {want} reader: pip install {want} (or send the video as a list of frames)",
        )
    if vp.FORCE_QWENVL_VIDEO_READER != want:
        vp.FORCE_QWENVL_VIDEO_READER = want
        vp.get_video_reader_backend.cache_clear()
    return vp.get_video_reader_backend()


@dataclass(frozen=True)
class VideoInfo:
    """A video file's metadata, read without decoding frames."""

    frames: int
    fps: float
    width: int
    height: int

    @property
    def seconds(self) -> float:
        return self.frames / self.fps if self.fps > 0 else float("inf")


def probe_video(path: Path) -> VideoInfo:
    """Frame count, average rate and frame size from the container/index (no frame decoded).

    Raises :class:`SampleError` (``video_error``) when the file cannot be opened as a video.
    """
    try:
        import decord
    except ImportError as exc:
        raise SampleError(ErrorCode.VIDEO_ERROR, "video files need decord: pip install decord") from exc
    try:
        import av

        # Frame size from the stream header (no decoding), before decord allocates anything.
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        # Count and rate as qwen-vl-utils' decord reader sees them (it samples from these).
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        info = VideoInfo(frames=len(vr), fps=float(vr.get_avg_fps()), width=width, height=height)
        del vr
    except SampleError:
        raise
    except Exception as exc:
        raise SampleError(ErrorCode.VIDEO_ERROR, f"cannot read video {path.name}: {exc}") from exc
    return info


def check_video_file(path: Path, item: dict, limits: Limits) -> VideoInfo:
    """Check a video file against ``limits`` from its metadata alone, before any frame is decoded.

    ``item`` holds the video item's qwen-vl-utils keys (``fps``/``nframes``/``min_frames``/
    ``max_frames``/``video_start``/``video_end``): the number of frames qwen-vl-utils will sample is
    computed with its own ``smart_nframes`` and must be at most ``limits.max_video_frames``.
    Raises :class:`SampleError`: ``image_too_large``/``aspect_ratio`` for the frame size,
    ``video_error`` for an unreadable file, a duration over ``limits.max_video_seconds`` or keys
    qwen-vl-utils refuses, ``too_many_images`` for too many sampled frames.
    """
    from qwen_vl_utils.vision_process import calculate_video_frame_range, smart_nframes

    info = probe_video(path)
    if info.frames < 2:
        raise SampleError(
            ErrorCode.VIDEO_ERROR, f"video {path.name} has {info.frames} frame(s); at least 2 are needed"
        )
    _check_geometry(info.width, info.height, limits)
    if info.seconds > limits.max_video_seconds:
        raise SampleError(
            ErrorCode.VIDEO_ERROR,
            f"video {path.name} is {info.seconds:.0f} s long, over {limits.max_video_seconds:g} s "
            "(limits.max_video_seconds)",
        )
    try:
        _, _, total = calculate_video_frame_range(item, info.frames, info.fps)
        n = smart_nframes(item, total_frames=total, video_fps=info.fps)
    except (ValueError, AssertionError) as exc:
        raise SampleError(ErrorCode.VIDEO_ERROR, f"video {path.name}: {exc}") from exc
    if n > limits.max_video_frames:
        raise SampleError(
            ErrorCode.TOO_MANY_IMAGES,
            f"video {path.name} would be sampled to {n} frames, over {limits.max_video_frames} "
            "(limits.max_video_frames); lower its fps/nframes or max_frames",
        )
    return info
