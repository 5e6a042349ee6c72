"""Image references → decoded, checked PIL images.

A reference (``REF``) is one of: a PIL image (in-process), raw ``bytes``, a ``data:`` URI, a base64
string, a local path (only under :attr:`MediaPolicy.image_roots`, also as ``file://``), or an
``http(s)`` URL whose prefix is allow-listed. Every failure raises :class:`SampleError` with the code
that names the cause; nothing here touches the model.

Safety: sizes are checked before work is done (encoded bytes before decoding, the pixel count from
the header before the pixels are decoded), so a decompression bomb costs a header read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from rlreward.engine.config import Limits, MediaPolicy
from rlreward.schema import ErrorCode, SampleError

_B64_RE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


@dataclass(frozen=True)
class LoadedImage:
    """A decoded RGB image and a content hash (for vision reuse)."""

    image: Image.Image
    digest: str


def _describe(ref: Any) -> str:
    s = ref if isinstance(ref, str) else type(ref).__name__
    return s if len(s) <= 80 else s[:77] + "..."


def check_path(ref: str, policy: MediaPolicy) -> Path:
    if ref.startswith("file://"):
        ref = ref[len("file://") :]
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
    if not path.is_file():
        raise SampleError(ErrorCode.IMAGE_NOT_FOUND, f"no file at {_describe(ref)!r}")
    return path


def _read_url(url: str, policy: MediaPolicy, limits: Limits) -> bytes:
    if not any(url.startswith(p) for p in policy.allowed_url_prefixes):
        raise SampleError(
            ErrorCode.URL_NOT_ALLOWED,
            f"URL {_describe(url)!r} refused: http(s) images are off unless their prefix is allow-listed "
            "(media.allowed_url_prefixes); send the image as base64 instead",
        )
    try:
        with urllib.request.urlopen(url, timeout=policy.url_timeout_s) as resp:  # noqa: S310 (allow-listed)
            data = resp.read(limits.max_image_bytes + 1)
    except Exception as exc:  # network errors of every kind
        raise SampleError(ErrorCode.IMAGE_NOT_FOUND, f"could not fetch {_describe(url)!r}: {exc}") from exc
    return data


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
    # base64's alphabet has no '.', and a path almost always has one (an extension); "/9j/..." is a
    # JPEG in base64, so a leading '/' alone proves nothing.
    compact = "".join(ref.split()) if len(ref) > 256 else ref
    is_b64 = "." not in ref and _B64_RE.fullmatch(compact) is not None and len(compact) % 4 == 0
    if ref.startswith(("./", "../", "~", "file://")) or not is_b64:
        return check_path(os.path.expanduser(ref), policy).read_bytes()
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


def load_image(ref: Any, policy: MediaPolicy, limits: Limits) -> LoadedImage:
    """Resolve, check and decode one image reference to an RGB PIL image."""
    src = read_bytes(ref, policy, limits)
    if isinstance(src, Image.Image):
        _check_geometry(src.width, src.height, limits)
        img = src
        digest_src = img.tobytes() + f"{img.mode}{img.size}".encode()
    else:
        if len(src) > limits.max_image_bytes:
            raise SampleError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"encoded image is {len(src)} bytes, over the limit of {limits.max_image_bytes}",
            )
        if not src:
            raise SampleError(ErrorCode.IMAGE_DECODE, "image data is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(src))
                _check_geometry(img.width, img.height, limits)
                img.load()
        except SampleError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise SampleError(
                ErrorCode.IMAGE_TOO_LARGE, f"image refused as a decompression bomb: {exc}"
            ) from exc
        except Exception as exc:  # PIL raises many types for bad data
            raise SampleError(ErrorCode.IMAGE_DECODE, f"cannot decode image: {exc}") from exc
        digest_src = src
    if img.mode != "RGB":
        img = _to_rgb(img)
    return LoadedImage(image=img, digest=hashlib.blake2b(digest_src, digest_size=16).hexdigest())


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
        raise SampleError(ErrorCode.VIDEO_ERROR, f"video {path.name} has {info.frames} frame(s); at least 2 are needed")
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
