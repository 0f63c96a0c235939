"""`pixgate ledger`, `pixgate jobs` and `pixgate audit`: read-only views of the records,
and the check that balances equal their ledgers."""

from __future__ import annotations

from typing import Annotated

import typer
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


@app.command()
def ledger(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    user: Annotated[str | None, typer.Option(help="Only this user (name or id).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
) -> None:
    """Show ledger entries, newest first."""
    from pixgate.money import from_minor

    settings = cli_settings(config, data_dir)
    table = Table("id", "user", "kind", "amount", "job", "reason", "when")
    for e in run_with_core(settings, lambda core: core.admin.ledger(user, limit)):
        table.add_row(
            str(e.id),
            e.user_id,
            e.kind,
            str(from_minor(e.amount_minor)),
            e.job_id or "",
            e.reason or "",
            e.created_at.isoformat(" ", "seconds"),
        )
    console.print(table)


@app.command()
def audit(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Check every balance against its ledger and every finished job against its charges;
    exit 1 on any mismatch."""
    settings = cli_settings(config, data_dir)
    problems = run_with_core(settings, lambda core: core.admin.audit())
    if problems:
        for p in problems:
            err_console.print(f"[red]MISMATCH[/red] {p}")
        raise typer.Exit(1)
    console.print("audit clean: balances equal their ledgers, jobs equal their charges")


@app.command()
def jobs(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user (name or id).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
) -> None:
    """Show jobs, newest first."""
    from pixgate.money import from_minor

    settings = cli_settings(config, data_dir)
    table = Table("id", "user", "model", "status", "images", "cost", "error", "created")
    for j in run_with_core(settings, lambda core: core.admin.jobs(user, status, limit)):
        table.add_row(
            j.id,
            j.user_id or "",
            j.model,
            j.status,
            f"{j.n_succeeded}/{j.n}",
            str(from_minor(j.cost_minor)),
            j.error_code or "",
            j.created_at.isoformat(" ", "seconds"),
        )
    console.print(table)
