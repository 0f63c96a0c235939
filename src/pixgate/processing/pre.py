"""The pre chain: what admission does to a request before anything is reserved, in order,
from the request's flags: `moderate` (blocked terms, always), then `rewrite` (the
prompt-rewriting hook, when the client asked for it).

Each step may refuse the request with a PixgateError (a refusal costs nothing, since
nothing is reserved yet) or return a changed request. A real moderation service or prompt
rewriter is one more entry in `PRE_STEPS` (or a replacement of one), not a change to any
dialect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pixgate.errors import PixgateError
from pixgate.spec.request import GenerationRequest

if TYPE_CHECKING:
    from pixgate.settings import Settings


@dataclass(frozen=True)
class PreStep:
    name: str
    wanted: Callable[[GenerationRequest], bool]
    run: Callable[[GenerationRequest, Settings], Awaitable[GenerationRequest]]


def moderate_text(settings: Settings, param: str, text: str | None) -> None:
    """Refuse `text` (451 naming `param`) when it contains a configured blocked term."""
    lowered = (text or "").casefold()
    if any(term.casefold() in lowered for term in settings.blocked_terms):
        raise PixgateError("content_refused", param=param)


def moderate(settings: Settings, req: GenerationRequest) -> None:
    """Blocked terms in the prompt, the negative prompt, and the visible watermark (text
    we draw on the image is held to the same terms)."""
    moderate_text(settings, "prompt", req.prompt)
    moderate_text(settings, "negative_prompt", req.negative_prompt)
    if req.watermark is not None:
        moderate_text(settings, "watermark", req.watermark.text)


async def _moderate(req: GenerationRequest, settings: Settings) -> GenerationRequest:
    moderate(settings, req)
    return req


async def _rewrite(req: GenerationRequest, settings: Settings) -> GenerationRequest:
    """The hook every dialect's switch reaches (`prompt_enhancement`, Volcengine's
    `use_pre_llm`, aichat's `as_prompt`). No rewriter is configured in this release, so the
    prompt is used as sent; the request keeps the flag, and responses that report the
    rewritten prompt (Volcengine's `rephraser_result`) report this one."""
    return req


PRE_STEPS: tuple[PreStep, ...] = (
    PreStep("moderate", lambda _req: True, _moderate),
    PreStep("rewrite", lambda req: req.prompt_enhancement, _rewrite),
)


def planned(req: GenerationRequest, steps: Sequence[PreStep] = PRE_STEPS) -> list[str]:
    """The names of the pre-steps `req` goes through, in order."""
    return [step.name for step in steps if step.wanted(req)]


async def run_pre(
    req: GenerationRequest, settings: Settings, steps: Sequence[PreStep] = PRE_STEPS
) -> GenerationRequest:
    """The request as admission queues it; PixgateError when a step refuses it."""
    for step in steps:
        if step.wanted(req):
            req = await step.run(req, settings)
    return req
