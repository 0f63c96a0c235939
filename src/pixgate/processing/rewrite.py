"""Prompt rewriting: what every dialect's switch for it reaches (`prompt_enhancement`,
Volcengine's `use_pre_llm`, aichat's `as_prompt`), seeded by `llm_seed`.

With `[rewriter]` configured (`base_url` and `model` of an OpenAI-compatible chat endpoint),
the prompt is sent to that model with the system prompt, and its answer replaces the prompt.
Whenever that is not possible (not configured, unreachable, too slow, an error status, an
answer that is no prompt) the built-in offline expander appends subject-appropriate quality,
lighting, composition and style phrases (processing/rewrite_vocab.py) instead, and the
result says why. Upstream problems never raise; the API key never reaches a log or an error.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import structlog

from pixgate.processing.rewrite_vocab import (
    CATEGORIES,
    KEYWORDS,
    PHRASES,
    QUALITY,
    Category,
    Language,
)
from pixgate.spec.content import RewriterSpec

log = structlog.get_logger("pixgate.processing.rewrite")

DEFAULT_SEED = 0  # the offline expander's seed when none is given: still deterministic
MAX_ANSWER_CHARS = 2000  # a longer "prompt" from the chat model is refused
MAX_BODY_BYTES = 1 << 20  # the most of a chat answer read
SEEDED_TEMPERATURE = 0.7  # sent with a seed, so one seed gives one (provider-stable) answer
_SEED_RANGE = 1 << 31  # seeds above int32 are folded into it (providers differ in range)

Source = Literal["llm", "offline"]


@dataclass(frozen=True)
class RewriteResult:
    """The prompt to generate from, what made it, and why the chat model was not used
    (None when it was, or when none is configured)."""

    prompt: str
    source: Source
    error: str | None = None


class _Unusable(Exception):
    """The chat model's answer cannot be used; the message is the result's `error`."""


async def rewrite_prompt(
    prompt: str,
    seed: int | None,
    config: RewriterSpec,
    client: httpx.AsyncClient | None = None,
) -> RewriteResult:
    """`prompt` rewritten by the configured chat model, else by `expand_offline`. `client`
    is reused when given (the server's), else one is made for this call. Never raises for
    the upstream's failures: they fall back to the offline expander with `error` set."""
    if not config.configured:
        return RewriteResult(expand_offline(prompt, seed), "offline", None)
    if not prompt.strip():
        return _offline(prompt, seed, "empty prompt", config)
    key = config.resolved_api_key()
    if config.api_key_env is not None and key is None:
        return _offline(prompt, seed, f"{config.api_key_env} is not set", config)
    try:
        async with asyncio.timeout(config.timeout_seconds):
            if client is not None:
                answer = await _ask(client, prompt, seed, config, key)
            else:
                async with httpx.AsyncClient() as own:
                    answer = await _ask(own, prompt, seed, config, key)
    except (TimeoutError, httpx.TimeoutException):
        return _offline(prompt, seed, "timeout", config)
    except _Unusable as exc:
        return _offline(prompt, seed, str(exc), config)
    except httpx.ConnectError:
        return _offline(prompt, seed, "connect error", config)
    except httpx.HTTPError as exc:  # the class name only: messages may carry the URL
        return _offline(prompt, seed, f"http error: {type(exc).__name__}", config)
    return RewriteResult(answer, "llm", None)


def _offline(prompt: str, seed: int | None, error: str, config: RewriterSpec) -> RewriteResult:
    log.warning("prompt_rewriter_unavailable", error=error, model=config.model)
    return RewriteResult(expand_offline(prompt, seed), "offline", error)


def chat_request(prompt: str, seed: int | None, config: RewriterSpec) -> dict[str, Any]:
    """The chat completion body sent for `prompt`."""
    body: dict[str, Any] = {
        "model": config.model,
        "messages": [
            {"role": "system", "content": config.system_prompt},
            {"role": "user", "content": prompt},
        ],
        "max_tokens": config.max_tokens,
        "stream": False,
    }
    if seed is not None:
        body["seed"] = seed % _SEED_RANGE
        body["temperature"] = SEEDED_TEMPERATURE
    return body


async def _ask(
    client: httpx.AsyncClient,
    prompt: str,
    seed: int | None,
    config: RewriterSpec,
    key: str | None,
) -> str:
    headers = {"Accept": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with client.stream(
        "POST",
        config.chat_url,
        json=chat_request(prompt, seed, config),
        headers=headers,
        timeout=config.timeout_seconds,
    ) as response:
        if not 200 <= response.status_code < 300:
            raise _Unusable(f"http {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise _Unusable("answer too large")
    return parse_answer(bytes(body))


def parse_answer(body: bytes) -> str:
    """The rewritten prompt in a chat completion's body; `_Unusable` when there is none."""
    try:
        data = json.loads(body)
    except ValueError:
        raise _Unusable("bad json") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _Unusable("no message in the answer") from None
    if not isinstance(content, str):
        raise _Unusable("no message in the answer")
    text = clean_answer(content)
    if not text:
        raise _Unusable("empty answer")
    if len(text) > MAX_ANSWER_CHARS:
        raise _Unusable("answer too long")
    return text


_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_LABEL = re.compile(r"^(?:rewritten prompt|prompt|提示词|改写后的提示词)\s*[:：]\s*", re.IGNORECASE)
_QUOTES = (('"', '"'), ("'", "'"), ("“", "”"), ("「", "」"), ("`", "`"))


def clean_answer(content: str) -> str:
    """The prompt in a chat model's answer: reasoning blocks, a leading label such as
    "Prompt:", surrounding quotes and whitespace removed."""
    text = _THINKING.sub("", content).strip()
    text = _LABEL.sub("", text).strip()
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            text = text[len(left) : -len(right)].strip()
    return text


# --- the offline expander -------------------------------------------------------------------
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SEPARATOR: dict[Language, str] = {"zh": "，", "en": ", "}
_WIDE_PUNCTUATION = "，。、；：！？"
_ASCII_PUNCTUATION = ",.;:!?"


def _english_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![a-z])(?:{alternatives})(?:e?s)?(?![a-z])", re.IGNORECASE)


_ENGLISH_KEYWORDS: dict[Category, re.Pattern[str] | None] = {
    category: _english_pattern(words) for category, words in KEYWORDS["en"].items()
}


def detect_language(prompt: str) -> Language:
    """ "zh" when the prompt has any CJK ideograph, else "en"."""
    return "zh" if _CJK.search(prompt) else "en"


def detect_category(prompt: str) -> Category:
    """The subject category whose keywords (both languages') the prompt has the most of;
    ties go to the earlier one in CATEGORIES; "default" when none matches."""
    best: Category = "default"
    best_score = 0
    for category in CATEGORIES:
        score = sum(1 for word in KEYWORDS["zh"][category] if word in prompt)
        pattern = _ENGLISH_KEYWORDS[category]
        if pattern is not None:
            score += len({match.lower() for match in pattern.findall(prompt)})
        if score > best_score:
            best, best_score = category, score
    return best


def offline_phrases(prompt: str, seed: int | None) -> list[str]:
    """The phrases `expand_offline` appends: one or two each of quality, lighting,
    composition and style for the prompt's language and category, none already in it."""
    language = detect_language(prompt)
    phrases = PHRASES[language][detect_category(prompt)]
    rng = random.Random(DEFAULT_SEED if seed is None else seed)
    present = prompt.lower()
    chosen: list[str] = []
    for group in (QUALITY[language], phrases.lighting, phrases.composition, phrases.style):
        fresh = [p for p in group if p.lower() not in present and p not in chosen]
        chosen.extend(rng.sample(fresh, min(len(fresh), rng.randint(1, 2))))
    return chosen


def expand_offline(prompt: str, seed: int | None) -> str:
    """`prompt` (trailing whitespace dropped, otherwise unchanged, at the start) followed by
    `offline_phrases`, joined with the language's separator. Deterministic: the same prompt
    and seed give the same text; seed None behaves as DEFAULT_SEED."""
    base = prompt.rstrip()
    chosen = offline_phrases(base, seed)
    if not chosen:
        return base
    separator = _SEPARATOR[detect_language(base)]
    if not base or base[-1] in _WIDE_PUNCTUATION:
        glue = ""
    elif base[-1] in _ASCII_PUNCTUATION:
        glue = " "
    else:
        glue = separator
    return base + glue + separator.join(chosen)
