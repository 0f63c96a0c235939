"""`pixgate models list|pull`: the catalog the server would serve, and hub downloads into
the models cache."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pixgate.cli.common import (
    ConfigOpt,
    DataDirOpt,
    DemoOpt,
    app,
    cli_settings,
    console,
    err_console,
    needs_engine,
)
from pixgate.settings import Settings

models_app = typer.Typer(help="Inspect the model catalog.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def catalog_title(settings: Settings) -> str:
    """Which catalog a listing shows: `pixgate serve` with other settings serves another
    one (scripts/serve runs in demo mode), so the listing says which it is."""
    if settings.models:
        return "catalog: the [[models]] of the config file"
    if settings.demo:
        return "catalog: demo mode, as `pixgate serve --demo` (and scripts/serve) serve it"
    return "catalog: defaults with hub weights (--demo: what scripts/serve serves)"


@models_app.command("list")
def models_list(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, demo: DemoOpt = None
) -> None:
    """Show the catalog: names clients send, sources, prices and limits."""
    from pixgate.spec.catalog import Catalog

    settings = cli_settings(config, data_dir, demo=demo)
    catalog = Catalog.build(settings.models, settings.demo, settings.default_model)
    table = Table(
        "name",
        "source",
        "price",
        "sizes",
        "max n",
        "max steps",
        "note",
        title=catalog_title(settings),
    )
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
    settings = cli_settings(config, data_dir)
    needs_engine("models pull", modules=("huggingface_hub",))
    err_console.print(
        f"models cache: {settings.models_dir.resolve()}", style="dim", highlight=False
    )
    from pixgate.backends.diffusers.pull import PullError, pull_with_progress

    try:
        snapshot = pull_with_progress(name, settings, err_console, revision, variant, endpoint)
    except PullError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"pulled {name} into {snapshot}")
