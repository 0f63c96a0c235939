"""What every `pixgate` command shares: the typer app, the consoles, the `--config` and
`--data-dir` options, settings loading and `run_with_core`. Command modules import this one
and never each other, so the package has no import cycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from pixgate.settings import Settings, load_settings

if TYPE_CHECKING:
    from pixgate.core.service import Pixgate

T = TypeVar("T")

app = typer.Typer(help="pixgate: self-hosted image-generation API.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one line per message, greppable

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (or PIXGATE_CONFIG).")
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data directory (or PIXGATE_DATA_DIR; default ./pixgate-data where it exists, "
        "else ~/.local/share/pixgate).",
    ),
]
DemoOpt = Annotated[
    bool | None,
    typer.Option(
        "--demo/--no-demo",
        help="The demo catalog `scripts/serve` serves: seed model names on builtin tiny "
        "builds (noise).",
    ),
]


def cli_settings(config: Path | None, data_dir: Path | None, **overrides: Any) -> Settings:
    """Settings as the server would load them, with the command's options on top; a missing
    or invalid config file is a red message and exit code 2, not a traceback."""
    try:
        return load_settings(config, data_dir=data_dir, **overrides)
    except FileNotFoundError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        err_console.print(f"[red]invalid configuration:[/red]\n{escape(str(exc))}")
        raise typer.Exit(2) from exc


def where(settings: Settings) -> str:
    """Which data the command works on: the data dir, and the database when it lives
    elsewhere (its URL without a password)."""
    text = f"data dir: {settings.data_dir.resolve()}"
    if settings.database_url:
        from sqlalchemy.engine import make_url

        text += f"  database: {make_url(settings.database_url).render_as_string()}"
    return text


def run_with_core(settings: Settings, fn: Callable[[Pixgate], Awaitable[T]]) -> T:
    """Run `await fn(core)` against the configured database (migrated first), turning
    domain errors into a red message and exit code 2. Says on stderr which data dir it
    opened, so a command run from another folder cannot silently use an empty one."""
    from pixgate.core.service import Pixgate
    from pixgate.errors import PixgateError

    err_console.print(where(settings), style="dim", highlight=False)

    async def go() -> T:
        core = Pixgate(settings)
        try:
            await core.db.migrate()
            return await fn(core)
        finally:
            await core.db.dispose()

    try:
        return asyncio.run(go())
    except PixgateError as exc:
        err_console.print(f"[red]error:[/red] {escape(exc.message())}")
        raise typer.Exit(2) from exc
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc


def csv(value: str | None) -> list[str] | None:
    """`a, b,c` -> ['a', 'b', 'c']; empty or None -> None."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


ENGINE_SOURCES = ("builtin", "local", "hub")  # source kinds the diffusers backend runs


ENGINE_MODULES = ("torch", "diffusers")


def engine_missing(modules: tuple[str, ...] = ENGINE_MODULES) -> list[str]:
    """The engine's packages this machine lacks."""
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def needs_engine(
    command: str, settings: Settings | None = None, modules: tuple[str, ...] = ENGINE_MODULES
) -> None:
    """Exit with one line when the engine extra (torch, diffusers) is not installed but the
    command would run models with it (with `settings`: only if its catalog has such a model,
    so a worker for other backends needs no torch)."""
    if settings is not None:
        from pixgate.spec.catalog import Catalog

        models = Catalog.build(settings.models, settings.demo)
        if not any(m.source_kind in ENGINE_SOURCES for m in models):
            return
    missing = engine_missing(modules)
    if missing:
        hint = " (or serve --no-workers for an API-only node)" if command == "serve" else ""
        err_console.print(
            f"[red]error:[/red] `pixgate {command}` runs models itself and needs the engine "
            f"({', '.join(missing)} not installed): pip install 'pixgate\\[engine]'{hint}"
        )
        raise typer.Exit(1)
