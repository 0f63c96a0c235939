"""The `pixgate` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pixgate.core.shaping import FieldNames
from pixgate.settings import Settings, load_settings

app = typer.Typer(help="pixgate: self-hosted image-generation API.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
models_app = typer.Typer(help="Inspect the model catalog.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")

_CLI_NAMES = FieldNames(size="--size", n="n", steps="--steps")
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (or PIXGATE_CONFIG).")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (or PIXGATE_DATA_DIR).")
]


def _settings(config: Path | None, data_dir: Path | None, **overrides) -> Settings:
    try:
        return load_settings(config, data_dir=data_dir, **overrides)
    except FileNotFoundError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        err_console.print(f"[red]invalid configuration:[/red]\n{exc}")
        raise typer.Exit(2) from exc


def run_with_core(settings: Settings, fn):
    """Run `await fn(core)` against the configured database (migrated first), turning
    domain errors into a red message and exit code 2."""
    from pixgate.core.service import Pixgate
    from pixgate.errors import PixgateError

    async def go():
        core = Pixgate(settings)
        try:
            await core.db.migrate()
            return await fn(core)
        finally:
            await core.db.dispose()

    try:
        return asyncio.run(go())
    except PixgateError as exc:
        err_console.print(f"[red]error:[/red] {exc.message()}")
        raise typer.Exit(2) from exc
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000].")] = None,
    demo: Annotated[
        bool | None,
        typer.Option(
            "--demo/--no-demo", help="Serve seed model names from builtin tiny builds (noise)."
        ),
    ] = None,
    workers: Annotated[
        bool | None, typer.Option("--workers/--no-workers", help="Run a worker in-process.")
    ] = None,
) -> None:
    """Start the API server (with an in-process worker unless --no-workers)."""
    import uvicorn

    from pixgate.api.app import create_app

    settings = _settings(config, data_dir, host=host, port=port, demo=demo, run_workers=workers)
    err_console.print(
        f"pixgate on http://{settings.host}:{settings.port}  data dir: {settings.data_dir}"
        + ("  [yellow](demo mode: seed model names draw noise)[/yellow]" if settings.demo else "")
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

    settings = _settings(config, data_dir)
    configure_logging(settings.log_level, settings.log_json)

    async def main() -> None:
        core = Pixgate(settings)
        await core.start(with_worker=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await core.stop()

    asyncio.run(main())


@keys_app.command("create")
def keys_create(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    user: Annotated[
        str | None, typer.Option(help="Owner (name or id); default: a new user for this key.")
    ] = None,
    plan: Annotated[str | None, typer.Option(help="Plan of the new user (free, paid).")] = None,
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    images: Annotated[
        int | None, typer.Option(min=0, help="Cap on images this key may generate.")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Key prefix, e.g. yc-pic-.")] = "sk-",
    expires: Annotated[
        datetime | None, typer.Option(help="Expiry, UTC (e.g. 2027-01-31T00:00:00).")
    ] = None,
    models: Annotated[str | None, typer.Option(help="Allowed models, comma-separated.")] = None,
    ips: Annotated[str | None, typer.Option(help="Allowed IPs/CIDRs, comma-separated.")] = None,
    signing: Annotated[
        bool,
        typer.Option(
            "--signing",
            "--secret",
            help="Also make a signing secret, for signed requests (Volcengine HMAC-SHA256 "
            "signing: access_key = the key's id, secret_key = this secret; aichat's sign).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create an API key and print it (it is shown only once)."""
    from pixgate.accounts import keys, users

    settings = _settings(config, data_dir)
    spec = keys.KeySpec(
        name=name,
        image_cap=images,
        prefix=prefix,
        expires_at=expires,
        allowed_models=_csv(models),
        allowed_ips=_csv(ips),
        with_secret=signing,
    )

    async def make(core):
        if user is not None:
            owner = await users.get_user(core.db, user)
        else:
            owner = await core.create_user(name or f"user-{uuid.uuid4().hex[:8]}", plan=plan)
        return await keys.create_key(core.db, owner.id, spec, core.box)

    created = run_with_core(settings, make)
    if as_json:
        out = {
            "key": created.key,
            "id": created.id,
            "display": created.display,
            "name": created.name,
            "image_cap": created.image_cap,
            "user_id": created.user_id,
        }
        if created.secret:
            out["access_key"] = created.id
            out["secret_key"] = created.secret
            out["signing_secret"] = created.secret  # the name before --signing existed
        typer.echo(json.dumps(out, ensure_ascii=False))
    else:
        console.print(f"[bold]{created.key}[/bold]")
        if created.secret:
            console.print(f"access key: [bold]{created.id}[/bold]")
            console.print(f"secret key: [bold]{created.secret}[/bold]")
        err_console.print(f"id {created.id}; store the key now, it is not shown again.")


@keys_app.command("list")
def keys_list(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """List keys (display form only; raw keys are never stored)."""
    from pixgate.accounts import keys

    settings = _settings(config, data_dir)
    rows = run_with_core(settings, lambda core: keys.list_keys(core.db))
    table = Table("id", "key", "name", "images used", "cap", "enabled", "created")
    for r in rows:
        table.add_row(
            r.id,
            r.display,
            r.name or "",
            str(r.images_used),
            "-" if r.image_cap is None else str(r.image_cap),
            "yes" if r.enabled else "revoked",
            r.created_at.isoformat(" ", "seconds"),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_or_id: Annotated[str, typer.Argument(help="The raw key, its id or its display form.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Disable a key; requests with it get 403 from now on."""
    from pixgate.accounts import keys

    settings = _settings(config, data_dir)
    row = run_with_core(settings, lambda core: keys.revoke_key(core.db, key_or_id))
    if row is None:
        err_console.print(f"[red]no key matches {key_or_id!r}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {row.id} ({row.display})")


@models_app.command("list")
def models_list(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    demo: Annotated[bool | None, typer.Option("--demo/--no-demo")] = None,
) -> None:
    """Show the catalog: names clients send, sources, prices and limits."""
    from pixgate.spec.catalog import Catalog

    settings = _settings(config, data_dir, demo=demo)
    catalog = Catalog.build(settings.models, settings.demo, settings.default_model)
    table = Table("name", "source", "price", "sizes", "max n", "max steps", "note")
    for m in catalog:
        table.add_row(
            m.name,
            m.source,
            str(m.price),
            " ".join(m.sizes),
            str(m.max_images),
            str(m.max_steps),
            "demo (noise)" if m.demo else m.description,
        )
    console.print(table)


@models_app.command("pull")
def models_pull(
    name: Annotated[str, typer.Argument(help="A catalog model name or a hub repo id (org/name).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    revision: Annotated[str, typer.Option(help="Branch, tag or commit.")] = "main",
    variant: Annotated[
        str | None, typer.Option(help="Weights variant, e.g. fp16 (only those where present).")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Hub URL (default: HF_ENDPOINT, else huggingface.co).")
    ] = None,
) -> None:
    """Download a hub model into the models cache (only the files diffusers loads).
    A token for private or gated repositories is read from HF_TOKEN."""
    from pixgate.backends.diffusers.pull import PullError, pull_with_progress

    settings = _settings(config, data_dir)
    try:
        snapshot = pull_with_progress(name, settings, err_console, revision, variant, endpoint)
    except PullError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"pulled {name} into {snapshot}")


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Image file to write.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    model: Annotated[str | None, typer.Option(help="Model name from the catalog.")] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT, one of the model's.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (random if omitted).")] = None,
    demo: Annotated[bool | None, typer.Option("--demo/--no-demo")] = None,
) -> None:
    """Generate one image locally, without a server."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pixgate.core.shaping import shape_request
    from pixgate.errors import PixgateError
    from pixgate.processing.encode import encode_image
    from pixgate.queue.worker import make_engine
    from pixgate.spec.catalog import Catalog

    settings = _settings(config, data_dir, demo=demo)
    catalog = Catalog.build(settings.models, settings.demo, settings.default_model)
    spec = catalog.get(model) if model else catalog.default()
    if spec is None:
        err_console.print(
            f"[red]unknown model {model!r}[/red]; known: {', '.join(catalog.names())}"
        )
        raise typer.Exit(2)
    fmt = {".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(output.suffix.lower(), "png")
    try:
        req = shape_request(
            spec,
            prompt=prompt,
            size=size,
            steps=steps,
            seed=seed,
            output_format=fmt,
            names=_CLI_NAMES,
        )
    except PixgateError as exc:
        err_console.print(f"[red]error:[/red] {exc.message()}")
        raise typer.Exit(2) from exc
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task(f"loading {spec.name}", total=req.steps)
        engine = make_engine(settings)
        progress.update(task, description=f"{spec.name} {req.width}x{req.height}")
        result = engine.generate(req, spec, lambda step, _t: progress.update(task, completed=step))
    output.write_bytes(encode_image(result.images[0], fmt, settings.png_compress_level))
    console.print(f"wrote {output} (seed {req.seed}, {result.inference_seconds:.2f} s)")
    if spec.demo or spec.source_kind == "builtin":
        err_console.print("[yellow]note: builtin random-weight model; the image is noise.[/yellow]")


def main() -> None:
    app()


# The account and money commands live in their own module; importing it registers them.
from pixgate.cli import admin  # noqa: E402, F401
