"""Prompt rewriting (processing/rewrite.py): a configured chat model reached over real HTTP
(a fake OpenAI-compatible server on loopback), its failures falling back to the offline
expander, the offline expander itself, and the `[rewriter]` table's validation."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from pixgate.processing.rewrite import (
    MAX_ANSWER_CHARS,
    clean_answer,
    detect_category,
    detect_language,
    expand_offline,
    offline_phrases,
    rewrite_prompt,
)
from pixgate.processing.rewrite_vocab import CATEGORIES, KEYWORDS, LANGUAGES, PHRASES, QUALITY
from pixgate.spec.content import DEFAULT_SYSTEM_PROMPT, RewriterSpec

KEY = "sk-fake-rewriter-key"
REWRITTEN = "a fluffy ginger cat asleep on a sunlit windowsill, soft morning light"
_CJK = ("\u4e00", "\u9fff")


@dataclass
class FakeChat:
    """An OpenAI-compatible chat endpoint on loopback: `behaviour` is ok | fail | slow |
    empty | answer (returns `answer`) | not_json; `calls` are the JSON bodies and headers."""

    behaviour: str = "ok"
    answer: str = REWRITTEN
    calls: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    url: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            self.calls.append((await request.json(), dict(request.headers)))
            if self.behaviour == "fail":
                return JSONResponse({"error": {"message": "boom"}}, status_code=500)
            if self.behaviour == "not_json":
                return Response("<html>gateway</html>", media_type="text/html")
            if self.behaviour == "slow":
                for _ in range(40):  # 2 s, or until the server stops
                    if self.stopping.is_set():
                        break
                    await asyncio.sleep(0.05)
            content = {"empty": "   ", "answer": self.answer}.get(self.behaviour, REWRITTEN)
            return JSONResponse(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )

        return app


@pytest.fixture(scope="module")
def chat_server() -> Iterator[FakeChat]:
    fake = FakeChat()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        fake.app(),
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "fake chat did not start"
        time.sleep(0.005)
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    fake.stopping.set()
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def chat(chat_server: FakeChat) -> FakeChat:
    chat_server.behaviour = "ok"
    chat_server.answer = REWRITTEN
    chat_server.calls.clear()
    return chat_server


def config_for(chat: FakeChat, **overrides: Any) -> RewriterSpec:
    values: dict[str, Any] = {"base_url": chat.url, "model": "fake-chat", "api_key": KEY}
    return RewriterSpec(**{**values, **overrides})


def rewrite(prompt: str, seed: int | None, config: RewriterSpec, **kw: Any):
    return asyncio.run(rewrite_prompt(prompt, seed, config, **kw))


def has_cjk(text: str) -> bool:
    return any(_CJK[0] <= ch <= _CJK[1] for ch in text)


# --- the chat model -------------------------------------------------------------------------
def test_llm_answer_used_and_request_carries_everything(chat: FakeChat) -> None:
    result = rewrite("a cat", 42, config_for(chat))
    assert (result.prompt, result.source, result.error) == (REWRITTEN, "llm", None)
    body, headers = chat.calls[-1]
    assert body["model"] == "fake-chat"
    assert body["messages"] == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "a cat"},
    ]
    assert body["seed"] == 42 and body["temperature"] == 0.7 and body["max_tokens"] == 300
    assert headers["authorization"] == f"Bearer {KEY}"


def test_no_seed_sends_none_and_own_system_prompt(chat: FakeChat) -> None:
    result = rewrite("a cat", None, config_for(chat, system_prompt="Be brief.", max_tokens=50))
    assert result.source == "llm"
    body, _ = chat.calls[-1]
    assert "seed" not in body and "temperature" not in body and body["max_tokens"] == 50
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_key_from_environment_and_shared_client(chat: FakeChat, monkeypatch) -> None:
    monkeypatch.setenv("PIXGATE_TEST_REWRITER_KEY", "sk-from-env")
    config = config_for(chat, api_key=None, api_key_env="PIXGATE_TEST_REWRITER_KEY")

    async def with_client():
        async with httpx.AsyncClient() as client:
            return await rewrite_prompt("a cat", 7, config, client)

    assert asyncio.run(with_client()).source == "llm"
    assert chat.calls[-1][1]["authorization"] == "Bearer sk-from-env"


def test_unset_key_variable_falls_back(chat: FakeChat, monkeypatch) -> None:
    monkeypatch.delenv("PIXGATE_TEST_REWRITER_KEY", raising=False)
    config = config_for(chat, api_key=None, api_key_env="PIXGATE_TEST_REWRITER_KEY")
    result = rewrite("a cat", 7, config)
    assert result.source == "offline" and result.error == "PIXGATE_TEST_REWRITER_KEY is not set"
    assert not chat.calls


def test_no_key_sends_no_authorization(chat: FakeChat) -> None:
    assert rewrite("a cat", 1, config_for(chat, api_key=None)).source == "llm"
    assert "authorization" not in chat.calls[-1][1]


def test_server_error_falls_back(chat: FakeChat) -> None:
    chat.behaviour = "fail"
    result = rewrite("a cat", 3, config_for(chat))
    assert result.source == "offline" and "500" in (result.error or "")
    assert result.prompt == expand_offline("a cat", 3)
    assert KEY not in result.prompt + (result.error or "")


def test_slow_server_times_out(chat: FakeChat) -> None:
    chat.behaviour = "slow"
    started = time.monotonic()
    result = rewrite("a cat", 3, config_for(chat, timeout_seconds=0.5))
    assert time.monotonic() - started < 1.5
    assert (result.source, result.error) == ("offline", "timeout")
    assert result.prompt.startswith("a cat")


@pytest.mark.parametrize(
    ("behaviour", "answer", "error"),
    [
        ("empty", "", "empty answer"),
        ("not_json", "", "bad json"),
        ("answer", "x" * (MAX_ANSWER_CHARS + 1), "answer too long"),
        ("answer", "<think>hmm</think>  ", "empty answer"),
    ],
)
def test_unusable_answers_fall_back(chat: FakeChat, behaviour: str, answer: str, error: str):
    chat.behaviour, chat.answer = behaviour, answer
    result = rewrite("a cat", 3, config_for(chat))
    assert (result.source, result.error) == ("offline", error)
    assert result.prompt == expand_offline("a cat", 3)


def test_answer_cleaned(chat: FakeChat) -> None:
    chat.behaviour, chat.answer = "answer", '<think>plan</think>\nPrompt: "一只橘猫，晨光"\n'
    assert rewrite("猫", 3, config_for(chat)).prompt == "一只橘猫，晨光"
    assert clean_answer("“a red fox”") == "a red fox"


def test_unreachable_falls_back() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    config = RewriterSpec(base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key=KEY)
    result = rewrite("a cat", 3, config)
    assert result.source == "offline" and result.error == "connect error"
    assert result.prompt == expand_offline("a cat", 3)


def test_not_configured_is_offline_without_error() -> None:
    for config in (RewriterSpec(), RewriterSpec(base_url="https://api.example.com/v1")):
        assert not config.configured
        result = rewrite("a cat", 3, config)
        assert (result.source, result.error) == ("offline", None)


# --- the offline expander -------------------------------------------------------------------
def test_offline_deterministic_per_seed_and_seeds_differ() -> None:
    prompt = "a lighthouse on a cliff"
    assert expand_offline(prompt, 5) == expand_offline(prompt, 5)
    assert expand_offline(prompt, None) == expand_offline(prompt, None) == expand_offline(prompt, 0)
    assert len({expand_offline(prompt, seed) for seed in range(8)}) > 1


@pytest.mark.parametrize("seed", [None, 0, 1, 2, 99, 9_999_999_999])
def test_offline_keeps_prompt_and_language(seed: int | None) -> None:
    zh = expand_offline("一只猫坐在窗台上", seed)
    assert zh.startswith("一只猫坐在窗台上，")
    added = zh.removeprefix("一只猫坐在窗台上，").split("，")
    assert len(added) >= 4 and all(has_cjk(phrase) for phrase in added)
    en = expand_offline("a cat on a windowsill", seed)
    assert en.startswith("a cat on a windowsill, ")
    assert not has_cjk(en)
    assert len(en.removeprefix("a cat on a windowsill, ").split(", ")) >= 4


def phrases_of(language: str, category: str) -> set[str]:
    group = PHRASES[language][category]  # type: ignore[index]
    return {*group.lighting, *group.composition, *group.style}


@pytest.mark.parametrize(
    ("prompt", "language", "category"),
    [
        ("a cat sleeping", "en", "animal"),
        ("一只小猫", "zh", "animal"),
        ("snowy mountains at dawn", "en", "landscape"),
        ("雪山和湖泊", "zh", "landscape"),
        ("portrait of an old woman", "en", "portrait"),
        ("a bowl of ramen", "en", "food"),
        ("a perfume bottle", "en", "product"),
        ("a dragon over a castle", "en", "fantasy"),
        ("赛博朋克城市", "zh", "fantasy"),
        ("a skyscraper downtown", "en", "architecture"),
        ("an abstract shape", "en", "default"),
    ],
)
def test_category_detection_picks_its_phrases(prompt: str, language: str, category: str):
    assert detect_language(prompt) == language
    assert detect_category(prompt) == category
    for seed in range(5):
        added = set(offline_phrases(prompt, seed))
        specific = added - set(QUALITY[language])  # type: ignore[index]
        assert specific and specific <= phrases_of(language, category)


def test_offline_skips_phrases_already_present() -> None:
    quality = QUALITY["en"]
    prompt = "a cat, " + ", ".join(quality[:-1])  # every quality phrase but the last
    for seed in range(5):
        added = offline_phrases(prompt, seed)
        assert quality[-1] in added and not set(added) & set(quality[:-1])
        assert len(added) == len(set(added))


def test_offline_punctuation_and_empty() -> None:
    assert expand_offline("一只猫。", 1).startswith("一只猫。") and "。，" not in expand_offline(
        "一只猫。", 1
    )
    assert expand_offline("A cat.  ", 1).startswith("A cat. ")
    assert expand_offline("", 1) and not expand_offline("", 1).startswith(", ")


def test_vocabularies_are_complete() -> None:
    for language in LANGUAGES:
        assert len(QUALITY[language]) >= 8
        for category in CATEGORIES:
            group = PHRASES[language][category]
            for phrases in (group.lighting, group.composition, group.style):
                assert len(phrases) >= 8 and len(set(phrases)) == len(phrases)
                assert all("," not in p and "，" not in p for p in phrases)
                assert all(has_cjk(p) == (language == "zh") for p in phrases)
            assert category == "default" or KEYWORDS[language][category]


# --- the [rewriter] table -------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {"base_url": "ftp://example.com/v1"},
        {"base_url": "example.com/v1"},
        {"base_url": "http://"},
        {"timeout_seconds": 0.1},
        {"timeout_seconds": 121},
        {"api_key": "a", "api_key_env": "B"},
        {"api_key_env": "NOT A NAME"},
        {"unknown": 1},
    ],
)
def test_config_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RewriterSpec(**fields)


def test_config_defaults_and_key_hidden() -> None:
    config = RewriterSpec(base_url="https://api.deepseek.com/v1/", model="deepseek-chat")
    assert config.configured and config.chat_url == "https://api.deepseek.com/v1/chat/completions"
    assert (config.timeout_seconds, config.max_tokens) == (10, 300)
    keyed = RewriterSpec(api_key=KEY)
    assert KEY not in repr(keyed) and KEY not in str(keyed.model_dump())
    assert keyed.resolved_api_key() == KEY
