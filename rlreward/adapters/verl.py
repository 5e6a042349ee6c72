"""verl 0.9.x adapter: the served reward model inside verl's reward loop, images included.

verl 0.9 computes rewards in its async reward loop: each finished rollout goes, one sample at a
time, to a ``RewardLoopWorker`` actor whose reward manager awaits ``run_single(data)``. verl's own
model-reward path sends text only (keep ``reward.reward_model.enable=False``); two entry points:

1. :func:`compute_score`: a custom reward *function* for verl's ``naive`` manager
   (``reward.custom_reward_function.path=pkg://rlreward.adapters.verl``, ``name=compute_score``).
   verl passes it the response only, so the prompt, images and videos come from the row's
   ``extra_info`` (``prompt`` or ``question``, ``images``, ``videos``; ``<image>``/``<video>``
   placeholders take them in order).
2. ``RLRewardManager``: a reward *manager* reading the prompt and the images from the row's
   ``raw_prompt``; it may add verl's own rule score for the row's ``data_source`` (``rule_weight``).
   A rule that cannot run fails at startup (or on its first row): a rule term is never silently 0.

Options: :class:`VerlRewardOptions`, from ``reward_kwargs``. Contract: neither raises into verl for
a sample; a rejected sample or a failed call gets ``fallback_score`` and ``rm_error=1.0``; every
sample returns the same ``reward_extra_info`` keys (``score, rm_score, rm_error, error`` + the
weighted terms), ``error`` being ``""`` or ``"<code>: <message>"``. No phase hints are sent from
here (one sample at a time, no step boundary). Importing this module imports neither verl, torch nor
ray; ``RLRewardManager`` imports verl when first accessed. The manual: docs/trainers.md.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import Field, ValidationError

from rlreward.adapters._common import (
    ClientHolder,
    ClientSpec,
    score_async,
    shared_holder,
    wire_image,
)
from rlreward.rewards import RewardComposition, RewardParts
from rlreward.schema import ErrorCode, ScoreResult, as_list, failed_all

__all__ = [  # noqa: F822
    "RLRewardManager",
    "RuleUnavailableError",
    "VerlRewardOptions",
    "check_rules",
    "compute_score",
    "sample_from_extra_info",
]

log = logging.getLogger("rlreward.adapters.verl")

#: kwargs verl itself adds to a reward function call; not options of ours.
_VERL_KWARGS = {"reward_router_address", "reward_model_tokenizer"}
_MEDIA_TAG = re.compile(r"(<image>|<video>)")


class VerlRewardOptions(ClientSpec):
    """What ``reward_kwargs`` may set: :class:`ClientSpec`'s connection fields (``url`` /
    ``app_name``, ``api_key``, ``timeout_s``, ``client_options``) and the fields below. Unknown keys
    are an error (a typo must not train silently)."""

    fallback_score: float = Field(
        default=0.0, description="Stands in for the model score of a sample that could not be scored."
    )
    model_weight: float = Field(default=1.0, description="Weight of the reward model's raw score.")
    accuracy_weight: float = Field(default=0.0, description="Weight of rlreward's answer-accuracy reward.")
    format_weight: float = Field(default=0.0, description="Weight of rlreward's <think> format reward.")
    rule_weight: float = Field(
        default=0.0, description="Manager only: weight of verl's own compute_score for the row's data_source."
    )
    rule_data_sources: list[str] = Field(
        default_factory=list,
        description="Manager only: data sources whose verl rule is checked at startup (beside those read "
        "from data.train_files / data.val_files), so a missing rule package fails before training.",
    )
    prompt_key: str = Field(default="prompt", description="extra_info key of the prompt (compute_score).")
    image_key: str = Field(default="images", description="extra_info key of the images (compute_score).")
    video_key: str = Field(default="videos", description="extra_info key of the videos (compute_score).")

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> VerlRewardOptions:
        return cls.model_validate({k: _plain(v) for k, v in dict(kwargs).items() if k not in _VERL_KWARGS})

    def composition(self) -> RewardComposition:
        return RewardComposition(
            model=self.model_weight, accuracy=self.accuracy_weight, format=self.format_weight
        )


def _plain(value: Any) -> Any:
    """Hydra's DictConfig/ListConfig → dict/list (reward_kwargs may nest)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


# One holder per distinct client recipe per process: clients are reused across samples and calls.
_LOGGED: set[str] = set()


def _holder(spec: ClientSpec) -> ClientHolder:
    return shared_holder(spec)


def _log_once(msg: str) -> None:
    if msg not in _LOGGED:
        _LOGGED.add(msg)
        log.error("rlreward verl adapter: %s", msg)


def wire_video(video: Any, memo: dict[int, Any]) -> dict:
    """A verl video entry (path, list of frames, or ``{"video": ..., **keys}``) → a video item."""
    if isinstance(video, dict):
        ref = video.get("video")
        if ref is None:
            raise ValueError(f"a video dict needs a 'video' entry (got keys {sorted(video)})")
        return {**video, "type": "video", "video": wire_video(ref, memo)["video"]}
    if isinstance(video, (list, tuple)):
        return {"type": "video", "video": [wire_image(f, memo) for f in video]}
    if isinstance(video, str) or hasattr(video, "__fspath__"):
        return {"type": "video", "video": str(video)}
    raise ValueError(f"a video must be a path, a list of frames or a dict, not {type(video).__name__}")


def _content_with_media(
    text: str, images: list[Any], videos: list[Any], memo: dict[int, Any]
) -> list[dict] | str:
    """``<image>`` / ``<video>`` placeholders → image / video items in order; images and videos
    without a placeholder go first. More placeholders than media is a ``ValueError``."""
    pieces = [p for p in _MEDIA_TAG.split(text) if p]
    items: list[dict] = []
    queues = {}
    for tag, media, make in (
        ("<image>", images, lambda im: {"type": "image", "image": wire_image(im, memo)}),
        ("<video>", videos, lambda v: wire_video(v, memo)),
    ):
        n_tags = sum(p == tag for p in pieces)
        if n_tags > len(media):
            kind = tag.strip("<>")
            raise ValueError(
                f"the prompt has {n_tags} {tag} placeholders but extra_info carries {len(media)} {kind}s"
            )
        items += [make(m) for m in media[: len(media) - n_tags]]
        queues[tag] = (iter(media[len(media) - n_tags :]), make)
    for p in pieces:
        if p in queues:
            queue, make = queues[p]
            items.append(make(next(queue)))
        else:
            items.append({"type": "text", "text": p})
    return items if images or videos else text


def sample_from_extra_info(solution_str: str, extra_info: dict | None, options: VerlRewardOptions) -> dict:
    """The rlreward sample for :func:`compute_score`; raises ``ValueError`` saying what is missing."""
    info = dict(extra_info or {})
    prompt = info.get(options.prompt_key)
    if prompt is None and options.prompt_key == "prompt":
        prompt = info.get("question")
    if prompt is None:
        raise ValueError(
            f"extra_info has no {options.prompt_key!r} (nor 'question'): verl passes compute_score the response "
            "only, so write the prompt (and the images) into extra_info at preprocessing, or use RLRewardManager"
        )
    images = as_list(info.get(options.image_key))
    videos = as_list(info.get(options.video_key))
    memo: dict[int, Any] = {}
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": _content_with_media(prompt, images, videos, memo)}]
    else:
        messages = _messages_for_wire(as_list(prompt), memo)
        if videos:
            raise ValueError(
                f"extra_info[{options.video_key!r}] beside a messages prompt: put the videos in the messages "
                "as {'type': 'video', 'video': ...} items, or give the prompt as a string with <video> placeholders"
            )
        if images:
            return {
                "prompt": messages,
                "response": solution_str,
                "images": [wire_image(i, memo) for i in images],
            }
    return {"messages": [*messages, {"role": "assistant", "content": solution_str}]}


def _messages_for_wire(messages: list[Any], memo: dict[int, Any]) -> list[dict]:
    """Chat messages (verl's ``raw_prompt`` or a dataset's) with their images made JSON-safe."""
    out = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, str) or content is None:
            out.append({"role": msg.get("role"), "content": content})
            continue
        items = []
        for item in as_list(content):
            if isinstance(item, dict) and item.get("type") == "image":
                # verl's items carry {"image": PIL, "bytes", "path"}: prefer what wire_image prefers.
                ref = next((item[k] for k in ("bytes", "image", "path") if item.get(k) is not None), None)
                items.append({"type": "image", "image": wire_image(ref, memo)})
            elif isinstance(item, dict) and item.get("type") == "text":
                items.append({"type": "text", "text": item.get("text", "")})
            elif isinstance(item, dict) and item.get("type") == "video":
                # verl's items: {"type": "video", "video": path | frames, fps...}; frames made JSON-safe.
                items.append({**item, "video": wire_video(item.get("video"), memo)["video"]})
            else:
                items.append(item)
        out.append({"role": msg.get("role"), "content": items})
    return out


def _extra_info(
    result: ScoreResult,
    parts: RewardParts,
    total: float,
    options: VerlRewardOptions,
    rule: float | None = None,
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "score": float(total),
        "rm_score": float(result.score if result.ok else options.fallback_score),
        "rm_error": 0.0 if result.ok else 1.0,
        "error": "" if result.ok else f"{result.error.code}: {result.error.message}",
    }
    info.update({k: float(v) for k, v in parts.terms().items()})
    if rule is not None:
        info["rule"] = float(rule)
    return info


def _finish(
    result: ScoreResult,
    response: str,
    ground_truth: Any,
    options: VerlRewardOptions,
    rule: float | None = None,
) -> dict[str, Any]:
    comp = options.composition()
    parts = comp.combine(result.score, response, ground_truth, fallback=options.fallback_score)
    total = parts.total if parts.total is not None else options.fallback_score
    if rule is not None:
        total += options.rule_weight * rule
    return _extra_info(result, parts, total, options, rule)


def _failure(
    code: ErrorCode,
    message: str,
    options: VerlRewardOptions | None,
    response: str = "",
    ground_truth: Any = None,
) -> dict[str, Any]:
    options = options or VerlRewardOptions()
    return _finish(ScoreResult.failed(code, message), response, ground_truth, options)


async def compute_score(
    data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict | None = None, **kwargs: Any
) -> dict[str, Any]:
    """verl reward function: the served model's score of (``extra_info`` prompt + images, response).

    Args:
        data_source: The row's ``data_source`` (unused; logged by verl).
        solution_str: The decoded response.
        ground_truth: ``reward_model.ground_truth``, for the accuracy term.
        extra_info: The row's ``extra_info``: ``prompt`` (or ``question``) and ``images``.
        **kwargs: ``reward_kwargs`` (:class:`VerlRewardOptions`), plus what verl adds.

    Returns:
        ``{"score": float, "rm_score", "rm_error", "error", ...}``, same keys for every sample.
    """
    try:
        options = VerlRewardOptions.from_kwargs(kwargs)
    except ValidationError as exc:
        msg = f"invalid reward_kwargs: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}"
        _log_once(msg)
        return _failure(ErrorCode.INVALID_SAMPLE, msg, None, solution_str, ground_truth)
    try:
        sample = sample_from_extra_info(str(solution_str), extra_info, options)
    except ValueError as exc:
        _log_once(str(exc))
        return _failure(ErrorCode.INVALID_SAMPLE, str(exc), options, str(solution_str), ground_truth)
    try:
        (result,) = await score_async(_holder(options.client_spec()), [sample])
    except Exception as exc:  # server down, retries spent, misconfiguration: never into verl
        _log_once(f"scoring failed: {type(exc).__name__}: {exc}")
        (result,) = failed_all(1, exc)
    return _finish(result, str(solution_str), ground_truth, options)


class RuleUnavailableError(RuntimeError):
    """verl's rule for a data source cannot run here (a package is missing, or verl has none)."""


def _rule_unavailable(data_source: Any, exc: BaseException) -> RuleUnavailableError:
    if isinstance(exc, ImportError):
        missing = getattr(exc, "name", None) or str(exc)
        return RuleUnavailableError(
            f"verl's rule reward for data_source {data_source!r} needs the package {missing!r}, which is not "
            f"installed ({exc}): pip install 'rlreward[verl]' (it brings mathruler, geo3k's grader), or set "
            "rule_weight=0"
        )
    return RuleUnavailableError(
        f"verl has no rule reward for data_source {data_source!r} ({exc}); set rule_weight=0"
    )


def _data_sources(config: Any) -> set[str]:
    """The ``data_source`` values of the run's parquet files (``data.train_files`` / ``val_files``);
    empty when they cannot be read here (then the first row checks its rule)."""
    data = config.get("data", None) if hasattr(config, "get") else None
    files: list[str] = []
    for key in ("train_files", "val_files"):
        value = data.get(key, None) if data is not None else None
        files += [str(f) for f in as_list(_plain(value))] if value else []
    found: set[str] = set()
    for f in files:
        try:
            import pyarrow.parquet as pq

            column = pq.read_table(f, columns=["data_source"]).column("data_source")
            found.update(str(v) for v in column.unique().to_pylist())
        except Exception as exc:  # not parquet, not local, no such column: checked on the first row
            log.warning("rlreward verl adapter: cannot read data_source from %s (%s)", f, exc)
    return found


def check_rules(compute_score: Any, data_sources: set[str]) -> None:
    """Run verl's rule once per data source on an empty answer: raise :class:`RuleUnavailableError`
    when it cannot run at all (missing package, no rule). A rule that merely dislikes the empty
    answer passes: only the environment is checked here."""
    if inspect.iscoroutinefunction(compute_score):
        return
    for source in sorted(data_sources):
        try:
            compute_score(data_source=source, solution_str="", ground_truth="", extra_info={})
        except (ImportError, NotImplementedError) as exc:
            raise _rule_unavailable(source, exc) from exc
        except Exception:
            pass


@lru_cache(maxsize=1)
def _manager_class() -> type:
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

    class RLRewardManager(RewardManagerBase):
        """verl reward manager scoring (``raw_prompt`` with its images + response) on an rlreward server.

        Configured by ``reward.reward_kwargs`` (:class:`VerlRewardOptions`). verl's ``compute_score``
        (the custom function, or the default one for the row's ``data_source``) is called only when
        ``rule_weight`` is non-zero, and its score is added with that weight.
        """

        def __init__(
            self,
            config: Any,
            tokenizer: Any,
            compute_score: Any = None,
            reward_router_address: str | None = None,
            reward_model_tokenizer: Any = None,
        ) -> None:
            super().__init__(config, tokenizer, compute_score)
            raw = config.reward.get("reward_kwargs", None) or {}
            self.options = VerlRewardOptions.from_kwargs(raw)  # a config error fails at startup, loudly
            if self.options.rule_weight and compute_score is None:
                from verl.utils.reward_score import default_compute_score

                self.compute_score = default_compute_score
            self.is_async_rule = inspect.iscoroutinefunction(self.compute_score)
            if self.options.rule_weight:
                # Fail now, not as a silent 0 in every row: a rule whose package is missing.
                check_rules(self.compute_score, set(self.options.rule_data_sources) | _data_sources(config))
            self.holder = _holder(self.options.client_spec())

        async def run_single(self, data: Any) -> dict:
            item = data[-1:][0]  # for multi-output trajectories verl scores the last one
            response_ids = item.batch["responses"]
            valid = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
            # The running loop, not self.loop: that one is whichever loop existed at construction.
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(
                None, lambda: self.tokenizer.decode(response_ids[:valid], skip_special_tokens=True)
            )
            nt = item.non_tensor_batch
            ground_truth = (nt.get("reward_model") or {}).get("ground_truth")
            rule = await self._rule(nt, response, ground_truth) if self.options.rule_weight else None
            try:
                messages = _messages_for_wire(as_list(nt["raw_prompt"]), {})
                sample = {"messages": [*messages, {"role": "assistant", "content": response}]}
                (result,) = await score_async(self.holder, [sample])
            except Exception as exc:  # never into verl
                _log_once(f"scoring failed: {type(exc).__name__}: {exc}")
                (result,) = failed_all(1, exc)
            info = _finish(result, response, ground_truth, self.options, rule)
            return {"reward_score": info["score"], "reward_extra_info": info}

        async def _rule(self, nt: Any, response: str, ground_truth: Any) -> float:
            kwargs = dict(
                data_source=nt.get("data_source"),
                solution_str=response,
                ground_truth=ground_truth,
                extra_info=dict(nt.get("extra_info") or {}),
            )
            try:
                if self.is_async_rule:
                    out = await self.compute_score(**kwargs)
                else:
                    out = await asyncio.get_running_loop().run_in_executor(
                        None, lambda: self.compute_score(**kwargs)
                    )
                return float(out["score"] if isinstance(out, dict) else out)
            except (ImportError, NotImplementedError) as exc:
                raise _rule_unavailable(kwargs["data_source"], exc) from exc
            except Exception as exc:
                _log_once(f"verl compute_score failed (rule term set to 0): {type(exc).__name__}: {exc}")
                return 0.0

    RLRewardManager.__module__ = __name__
    RLRewardManager.__qualname__ = "RLRewardManager"
    return RLRewardManager


def __getattr__(name: str) -> Any:
    # The manager subclasses verl's RewardManagerBase: build it (importing verl) on first access,
    # so `import rlreward.adapters.verl` stays light for compute_score users.
    if name == "RLRewardManager":
        return _manager_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
