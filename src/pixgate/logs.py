"""Structured logs (structlog). Never log API keys, Authorization headers or prompts'
owners' secrets: log key ids and request ids instead."""

from __future__ import annotations

import logging
import sys

import structlog


class _CurrentStderr:
    """Resolve sys.stderr at each write, so redirecting it later (tests, daemons) works even
    after loggers were cached."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=False,  # reconfigurable (tests, reloads)
    )
