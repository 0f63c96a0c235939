"""`pixgate serve` (the API server, optionally with its worker), `pixgate worker` (a
standalone worker for the scaled deployment) and `pixgate workers` (the workers that
heartbeat into the database, and what they serve)."""

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
    console,
    csv,
    engine_missing,
    err_console,
    needs_engine,
    run_with_core,
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
def worker(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    models_opt: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Only claim jobs of these catalog models (comma-separated) [default: every "
            "model whose backend this machine has].",
        ),
    ] = None,
) -> None:
    """Run a standalone worker against the configured database (scaled deployment)."""
    import signal

    from pixgate.core.service import Pixgate
    from pixgate.logs import configure_logging
    from pixgate.spec.catalog import Catalog

    settings = cli_settings(config, data_dir)
    models = None
    catalog = Catalog.build(settings.models, settings.demo)
    others = [m.name for m in catalog if m.source_kind not in ENGINE_SOURCES]
    wanted = csv(models_opt)
    if wanted:
        models = _chosen_models(catalog, wanted)
    elif others and engine_missing():  # a relay (or fake) worker on a machine without torch
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


def _chosen_models(catalog, wanted: list[str]) -> list[str]:
    """`--models`: names of the catalog (exit 2 naming the unknown ones and the catalog's
    names); the engine is needed only if one of them runs on it."""
    unknown = [name for name in wanted if catalog.get(name) is None]
    if unknown:
        err_console.print(
            f"error: --models: unknown model(s) {', '.join(unknown)}; "
            f"the catalog has: {', '.join(catalog.names())}",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(2)
    specs = [catalog.get(name) for name in dict.fromkeys(wanted)]
    if any(spec.source_kind in ENGINE_SOURCES for spec in specs):
        needs_engine("worker")
    return [spec.name for spec in specs]


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


@app.command("workers")
def list_workers(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """The workers heartbeating into the database: host, pid, device, the models each
    serves, its current job, when last seen; those dead within the hour flagged."""
    from rich.table import Table

    from pixgate.db import utcnow

    settings = cli_settings(config, data_dir)
    workers = run_with_core(settings, lambda core: core.fleet.workers(with_dead=True))
    if not workers:
        console.print("no live workers")
        return
    now = utcnow()
    table = Table("id", "host", "pid", "device", "models", "current job", "last seen", "state")
    for w in sorted(workers, key=lambda w: not w.live):
        table.add_row(
            w.id,
            w.host,
            str(w.pid),
            w.device,
            ", ".join(w.models) or "-",
            (w.current_job_id or "-") + (f" (+{w.running - 1})" if w.running > 1 else ""),
            _ago((now - w.last_seen).total_seconds()),
            "live" if w.live else "[red]dead[/red]",
        )
    console.print(table)
    served = sorted({m for w in workers if w.live for m in w.models})
    console.print(f"served: {', '.join(served) or 'nothing'}", highlight=False, markup=False)
