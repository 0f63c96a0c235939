"""The web console: server-rendered pages for customers under /console (sign-up, login,
dashboard, keys, codes, ledger, password), in English and Chinese. See docs/console.md."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pixgate.api.console import account, auth, keys
from pixgate.api.console.security import ConsoleHeadersMiddleware


def install(app: FastAPI) -> None:
    app.include_router(auth.router)
    app.include_router(account.router)
    app.include_router(keys.router)
    static = StaticFiles(directory=Path(__file__).parent / "static")
    app.mount("/console/static", static, name="console-static")
    app.add_middleware(ConsoleHeadersMiddleware)
