"""TRL 1.16 adapter: a ``reward_funcs`` entry for ``GRPOTrainer`` and ``RLOOTrainer`` scored remotely.

TRL calls every reward function once per generation step with the step's whole local batch::

    f(prompts=..., completions=..., completion_ids=..., trainer_state=..., log_extra=..., log_metric=...,
      **dataset_columns) -> list[float | None]

The adapter turns the batch into rlreward samples (images from the prompt's ``{"type": "image"}``
blocks, else the ``image`` / ``images`` column; each distinct image PNG-encoded once), scores it in
one call and returns one reward per completion:

* ``None`` for a sample the server rejected (TRL turns it into NaN and leaves it out);
* a server unreachable after the client's retries raises (``on_unavailable="none"``: all ``None``);
* ``__name__`` (default ``"skywork_vl_reward"``) is the metric key ``rewards/<name>/mean``;
* with ``phase_hints=True`` (default) it sends ``expect(len(batch))`` before scoring and
  ``step_done()`` after (best effort; ignored by a deployment without the hint policy).

Two forms: :class:`RewardModelReward` (sync ``__call__``) and :class:`AsyncRewardModelReward`
(``async def __call__``, run by TRL on its event loop). Both pickle without their live client.
The manual: docs/trainers.md.

>>> reward = AsyncRewardModelReward("http://rm:8000")                             # doctest: +SKIP
>>> trainer = GRPOTrainer(model=policy, reward_funcs=[reward], args=GRPOConfig(...),
...                       train_dataset=ds)                                       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from rlreward.adapters._common import (
    ClientFactory,
    ClientHolder,
    ClientSpec,
    score_async,
    score_sync,
    send_hint_async,
    send_hint_sync,
    wire_image,
)
from rlreward.rewards import RewardComposition, accuracy_reward
from rlreward.schema import ScoreResult, as_list, failed_all

__all__ = [
    "AsyncRewardModelReward",
    "RewardModelReward",
    "answer_accuracy_reward",
    "think_format_reward",
    "build_samples",
]


def _completion_text(completion: Any) -> str:
    """A completion as text: a string, or the assistant message(s) of a conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    parts: list[str] = []
    for msg in completion or []:
        content = msg.get("content", "") if isinstance(msg, dict) else msg
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(it.get("text", "") for it in content or [] if isinstance(it, dict))
    return "".join(parts)


def _row_images(kwargs: dict[str, list[Any]], i: int) -> list[Any]:
    if "images" in kwargs and kwargs["images"] is not None:
        return as_list(kwargs["images"][i])
    if "image" in kwargs and kwargs["image"] is not None:
        return as_list(kwargs["image"][i])
    return []


def build_samples(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[dict]:
    """TRL's reward-function arguments → rlreward samples, ``samples[i]`` for completion ``i``.

    Image blocks of conversational prompts keep their place; a ``{"type": "image"}`` block without
    an image takes the row's ``image``/``images`` column in order; with no image block at all, the
    row's images go before the text of the last user turn. Images are encoded for the wire once per
    distinct object.
    """
    memo: dict[int, Any] = {}
    samples: list[dict] = []
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        response = _completion_text(completion)
        column = _row_images(kwargs, i)
        if isinstance(prompt, str):
            samples.append(
                {"prompt": prompt, "response": response, "images": [wire_image(im, memo) for im in column]}
            )
            continue
        pending = iter(column)
        seen_image_block = False
        messages: list[dict] = []
        for msg in prompt:
            content = msg.get("content")
            if isinstance(content, list):
                items = []
                for item in content:
                    if isinstance(item, dict) and item.get("type") == "image":
                        seen_image_block = True
                        ref = item.get("image")
                        if ref is None:
                            ref = next(pending, None)
                        items.append({"type": "image", "image": wire_image(ref, memo)})
                    else:
                        items.append(item)
                content = items
            messages.append({"role": msg.get("role"), "content": content})
        if column and not seen_image_block:
            samples.append(
                {"prompt": messages, "response": response, "images": [wire_image(im, memo) for im in column]}
            )
        else:
            samples.append({"messages": [*messages, {"role": "assistant", "content": response}]})
    return samples


class _Base:
    """Shared by the sync and async forms: configuration, sample building, reward mapping."""

    def __init__(
        self,
        url: str | None = None,
        *,
        app_name: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        client_options: dict[str, Any] | None = None,
        client_factory: ClientFactory | None = None,
        name: str = "skywork_vl_reward",
        composition: RewardComposition | None = None,
        solution_key: str = "solution",
        on_unavailable: Literal["raise", "none"] = "raise",
        phase_hints: bool = True,
        hint_within_s: float | None = None,
    ) -> None:
        """
        Args:
            url: HTTP base URL of the rlreward app (or set ``$RLREWARD_URL``).
            app_name: Ray Serve app name instead of ``url``, when the trainer runs in the serving cluster.
            api_key: Bearer token (default ``$RLREWARD_API_KEY``).
            timeout_s: Client timeout per request.
            client_options: Further :class:`rlreward.client.RewardClient` arguments.
            client_factory: A picklable zero-argument callable returning a client, instead of the above.
            name: Metric key (``rewards/<name>/mean``) and ``__name__``.
            composition: Mix rule rewards into this reward (R1V2); default: the raw model score.
            solution_key: Dataset column holding the ground truth for ``composition.accuracy``.
            on_unavailable: ``"raise"`` (default) or ``"none"`` when the server is unreachable.
            phase_hints: Send ``expect``/``step_done`` around each call (see the module docstring).
            hint_within_s: ``within_s`` of the ``expect`` hint; None = the deployment's default.
        """
        if on_unavailable not in ("raise", "none"):
            raise ValueError(f"on_unavailable must be 'raise' or 'none', not {on_unavailable!r}")
        spec = (
            None
            if client_factory is not None
            else ClientSpec(
                url=url,
                app_name=app_name,
                api_key=api_key,
                timeout_s=timeout_s,
                client_options=client_options or {},
            )
        )
        self._clients = ClientHolder(spec, client_factory)
        self.__name__ = name
        self.composition = composition
        self.solution_key = solution_key
        self.on_unavailable = on_unavailable
        self.phase_hints = phase_hints
        self.hint_within_s = hint_within_s

    def __repr__(self) -> str:
        where = self._clients.spec.url or self._clients.spec.app_name if self._clients.spec else "factory"
        return f"{type(self).__name__}(name={self.__name__!r}, server={where!r})"

    def _rewards(
        self, results: list[ScoreResult], completions: list[Any], kwargs: dict[str, Any]
    ) -> list[float | None]:
        truths = kwargs.get(self.solution_key) or [None] * len(results)
        rewards: list[float | None] = []
        for res, completion, truth in zip(results, completions, truths, strict=True):
            if self.composition is None:
                rewards.append(res.score)
            else:
                rewards.append(self.composition.combine(res.score, _completion_text(completion), truth).total)
        log_metric: Callable[[str, float], None] | None = kwargs.get("log_metric")
        if log_metric is not None and results:
            log_metric(f"{self.__name__}/rejected_frac", sum(not r.ok for r in results) / len(results))
        return rewards

    def _unavailable(self, n: int, exc: BaseException) -> list[ScoreResult]:
        if self.on_unavailable == "raise":
            raise exc
        return failed_all(n, exc)


class RewardModelReward(_Base):
    """Sync TRL reward function backed by an rlreward server (see the module docstring).

    >>> reward = RewardModelReward("http://rm:8000", name="skywork_vl_reward")
    >>> reward.__name__
    'skywork_vl_reward'
    """

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        samples = build_samples(prompts, completions, **kwargs)
        if self.phase_hints and samples:
            send_hint_sync(self._clients, "expect", n_samples=len(samples), within_s=self.hint_within_s)
        try:
            results = score_sync(self._clients, samples)
        except Exception as exc:
            results = self._unavailable(len(samples), exc)
        finally:
            if self.phase_hints and samples:
                send_hint_sync(self._clients, "step_done")
        return self._rewards(results, completions, kwargs)


class AsyncRewardModelReward(_Base):
    """``async`` TRL reward function backed by an rlreward server (see the module docstring).

    >>> import inspect
    >>> inspect.iscoroutinefunction(AsyncRewardModelReward("http://rm:8000").__call__)
    True
    """

    async def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        samples = build_samples(prompts, completions, **kwargs)
        if self.phase_hints and samples:
            await send_hint_async(
                self._clients, "expect", n_samples=len(samples), within_s=self.hint_within_s
            )
        try:
            results = await score_async(self._clients, samples)
        except Exception as exc:
            results = self._unavailable(len(samples), exc)
        finally:
            if self.phase_hints and samples:
                await send_hint_async(self._clients, "step_done")
        return self._rewards(results, completions, kwargs)


def answer_accuracy_reward(
    completions: list[Any], solution: list[Any] | None = None, **kwargs: Any
) -> list[float | None]:
    r"""TRL reward: 1.0 when the completion's final answer (``<answer>`` or ``\boxed{}``) matches
    the ``solution`` column, 0.0 otherwise, ``None`` for a row without a solution.

    >>> answer_accuracy_reward(["\\boxed{4}", "\\boxed{5}"], solution=["4", "4"])
    [1.0, 0.0]
    """
    truths = solution or [None] * len(completions)
    return [accuracy_reward(_completion_text(c), t) for c, t in zip(completions, truths, strict=True)]


def think_format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """TRL reward: 1.0 when the completion is a ``<think>…</think>`` block followed by an answer.

    TRL's own :func:`trl.rewards.think_format_reward`, also for plain-text completions (TRL's
    expects conversational ones).

    >>> think_format_reward([[{"role": "assistant", "content": "<think>hm</think> B"}], "B"])
    [1.0, 0.0]
    """
    from trl.rewards import think_format_reward as trl_think_format_reward

    return trl_think_format_reward([[{"content": _completion_text(c)}] for c in completions])
