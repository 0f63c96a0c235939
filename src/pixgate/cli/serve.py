"""`pixgate serve` (the API server, optionally with its worker) and `pixgate worker` (a
standalone worker for the scaled deployment)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from pixgate.cli.common import (
    ENGINE_SOURCES,
    ConfigOpt,
    DataDirOpt,
    DemoOpt,
    app,
    cli_settings,
    engine_missing,
    err_console,
    needs_engine,
    where,
)


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000].")] = None,
    demo: DemoOpt = None,
    workers: Annotated[
        bool | None,
        typer.Option(
            "--workers/--no-workers",
            help="Run a worker in-process; --no-workers is an API-only node (no torch).",
        ),
    ] = None,
) -> None:
    """Start the API server (with an in-process worker unless --no-workers)."""
    import uvicorn

    from pixgate.api.app import create_app

    settings = cli_settings(config, data_dir, host=host, port=port, demo=demo, run_workers=workers)
    if settings.run_workers:
        needs_engine("serve", settings)
    err_console.print(
        f"pixgate on http://{settings.host}:{settings.port}  {where(settings)}"
        + ("  [yellow](demo mode: seed model names draw noise)[/yellow]" if settings.demo else "")
        + ("" if settings.run_workers else "  (API only: no worker)"),
        highlight=False,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
    )


@app.command()
def worker(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Run a standalone worker against the configured database (scaled deployment)."""
    import signal

    from pixgate.core.service import Pixgate
    from pixgate.logs import configure_logging
    from pixgate.spec.catalog import Catalog

    settings = cli_settings(config, data_dir)
    models = None
    catalog = Catalog.build(settings.models, settings.demo)
    others = [m.name for m in catalog if m.source_kind not in ENGINE_SOURCES]
    if others and engine_missing():  # a relay (or fake) worker on a machine without torch
        models = others
        left = [m.name for m in catalog if m.source_kind in ENGINE_SOURCES]
        if left:
            err_console.print(
                f"torch is not installed: serving {', '.join(others)}; "
                f"{', '.join(left)} are left to workers that have pixgate[engine]",
                highlight=False,
                markup=False,
            )
    else:
        needs_engine("worker", settings)
    configure_logging(settings.log_level, settings.log_json)
    err_console.print(f"pixgate worker  {where(settings)}", highlight=False)

    async def main() -> None:
        core = Pixgate(settings)
        await core.start(with_worker=True, worker_models=models)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await core.stop()

    asyncio.run(main())
