"""`pixgate channels list|test|enable|disable`: the upstream channels of the config, with
their state and last-hour figures, and one real call to a channel."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pixgate.cli.common import (
    ConfigOpt,
    DataDirOpt,
    app,
    cli_settings,
    console,
    err_console,
    run_with_core,
)

channels_app = typer.Typer(help="Upstream relay channels.", no_args_is_help=True)
app.add_typer(channels_app, name="channels")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


@channels_app.command("list")
def list_channels(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Each channel: type, priority and weight, models, state, and the last hour's calls,
    success rate, p50/p99 latency and margin (never its credentials)."""
    from pixgate.money import from_minor

    settings = cli_settings(config, data_dir)
    views = run_with_core(settings, lambda core: core.channels.list())
    if not views:
        console.print("no [[channels]] configured")
        return
    table = Table(
        "name", "type", "priority", "weight", "models", "state", "calls 1h", "ok 1h",
        "p50 ms", "p99 ms", "margin 1h",
    )  # fmt: skip
    for v in views:
        hour = v.stats["hour"]
        state = v.state + (f" ({v.reason})" if v.disabled and v.reason else "")
        table.add_row(
            v.spec.name,
            v.spec.type,
            str(v.spec.priority),
            f"{v.spec.weight:g}",
            ", ".join(v.models),
            state,
            str(hour.calls),
            _rate(hour.success_rate),
            str(hour.latency_ms["p50"] or "-"),
            str(hour.latency_ms["p99"] or "-"),
            str(from_minor(hour.margin_minor)),
        )
    console.print(table)


@channels_app.command("test")
def test_channel(
    name: Annotated[str, typer.Argument(help="The channel's name.")],
    model: Annotated[
        str | None, typer.Option(help="Model to ask for (default: the first relayed to it).")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Make one real call to the channel (one image, nothing stored or charged) and show
    its latency, or the error; exit 1 when it fails."""
    settings = cli_settings(config, data_dir)
    result = run_with_core(settings, lambda core: core.channels.test(name, model))
    if not result.ok:
        err_console.print(
            f"[red]FAILED[/red] {result.channel} ({result.model}) after {result.latency_ms} ms: "
            f"{escape(result.error or '')}"
        )
        raise typer.Exit(1)
    console.print(
        f"ok: {result.channel} ({result.model}) made {result.images} image(s) in "
        f"{result.latency_ms} ms"
    )


def _set_enabled(name: str, enabled: bool, config, data_dir) -> None:
    settings = cli_settings(config, data_dir)
    view = run_with_core(settings, lambda core: core.channels.set_enabled(name, enabled, "cli"))
    console.print(f"{view.spec.name}: {'disabled' if view.disabled else 'enabled'}")


@channels_app.command("enable")
def enable(name: str, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Put a channel back into routing (also after an upstream refused its credentials);
    workers apply it within a few seconds."""
    _set_enabled(name, True, config, data_dir)


@channels_app.command("disable")
def disable(name: str, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Take a channel out of routing."""
    _set_enabled(name, False, config, data_dir)
