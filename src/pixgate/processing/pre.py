"""The pre chain: what admission does to a request before anything is reserved, in order:
`moderate` (blocked terms in the prompt, negative prompt and visible mark, always), then,
when the client asked for it, `rewrite` (processing/rewrite.py: the configured chat model,
else the offline expander) and `moderate_rewritten` (the prompt actually generated from is
held to the same terms). Both the prompt the client sent and the rewritten one are checked.

Each step may refuse the request with a PixgateError (a refusal costs nothing, since
nothing is reserved yet) or return a changed request. A refusal by a blocked term is
`content_refused` with `param` the field and `args_["term"]` the configured term that
matched (for the moderation log, never shown to the client).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pixgate.errors import PixgateError
from pixgate.processing.moderation import TermList
from pixgate.processing.rewrite import rewrite_prompt
from pixgate.spec.request import GenerationRequest

if TYPE_CHECKING:
    import httpx

    from pixgate.settings import Settings


@dataclass
class PreContext:
    """What the pre steps need beyond the request, built once per server: the settings,
    the blocked-term matcher (reloaded on SIGHUP) and the HTTP client for the rewriter."""

    settings: Settings
    terms: TermList
    http: httpx.AsyncClient | None = None


@dataclass(frozen=True)
class PreStep:
    name: str
    wanted: Callable[[GenerationRequest], bool]
    run: Callable[[GenerationRequest, PreContext], Awaitable[GenerationRequest]]


def moderate_text(terms: TermList, param: str, text: str | None) -> None:
    """Refuse `text` (451 naming `param`) when it contains a blocked term, after
    normalisation (processing/moderation.py)."""
    term = terms.find(text) if text else None
    if term is not None:
        raise PixgateError("content_refused", param=param, args_={"term": term})


def moderate(terms: TermList, req: GenerationRequest) -> None:
    """Blocked terms in the prompt, the negative prompt, and the visible watermark (text
    we draw on the image is held to the same terms)."""
    moderate_text(terms, "prompt", req.prompt)
    moderate_text(terms, "negative_prompt", req.negative_prompt)
    if req.watermark is not None:
        moderate_text(terms, "watermark", req.watermark.text)


async def _moderate(req: GenerationRequest, ctx: PreContext) -> GenerationRequest:
    moderate(ctx.terms, req)
    return req


async def _rewrite(req: GenerationRequest, ctx: PreContext) -> GenerationRequest:
    """The prompt rewritten (every dialect's switch reaches this: `prompt_enhancement`,
    Volcengine's `use_pre_llm`, aichat's `as_prompt`), with `llm_seed`. The request keeps
    the client's prompt as `original_prompt` and says which rewriter ran."""
    seed = req.seed if req.llm_seed is None else req.llm_seed  # unset: follows the image's
    result = await rewrite_prompt(req.prompt, seed, ctx.settings.rewriter, ctx.http)
    return req.model_copy(
        update={
            "prompt": result.prompt,
            "original_prompt": req.prompt,
            "rewriter": result.source,
        }
    )


async def _moderate_rewritten(req: GenerationRequest, ctx: PreContext) -> GenerationRequest:
    if req.original_prompt is not None and req.prompt != req.original_prompt:
        moderate_text(ctx.terms, "prompt", req.prompt)
    return req


PRE_STEPS: tuple[PreStep, ...] = (
    PreStep("moderate", lambda _req: True, _moderate),
    PreStep("rewrite", lambda req: req.prompt_enhancement, _rewrite),
    PreStep("moderate_rewritten", lambda req: req.prompt_enhancement, _moderate_rewritten),
)


def planned(req: GenerationRequest, steps: Sequence[PreStep] = PRE_STEPS) -> list[str]:
    """The names of the pre-steps `req` goes through, in order."""
    return [step.name for step in steps if step.wanted(req)]


async def run_pre(
    req: GenerationRequest, ctx: PreContext, steps: Sequence[PreStep] = PRE_STEPS
) -> GenerationRequest:
    """The request as admission queues it; PixgateError when a step refuses it."""
    for step in steps:
        if step.wanted(req):
            req = await step.run(req, ctx)
    return req
