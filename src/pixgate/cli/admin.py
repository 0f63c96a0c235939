"""CLI commands for accounts and money: users, credit, redemption codes, ledger, jobs,
audit. Registered on the main `pixgate` app."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer
from rich.table import Table

from pixgate.cli import ConfigOpt, DataDirOpt, _settings, app, console, err_console, run_with_core

users_app = typer.Typer(help="Manage users (accounts).", no_args_is_help=True)
credit_app = typer.Typer(
    help="Move credit, with a reason (recorded in the ledger).", no_args_is_help=True
)
codes_app = typer.Typer(help="Redemption codes.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(credit_app, name="credit")
app.add_typer(codes_app, name="codes")

CLI_ACTOR = "cli"


def _minor(amount: str) -> int:
    from pixgate.money import to_minor

    try:
        return to_minor(Decimal(amount))
    except (InvalidOperation, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {amount!r} is not an amount with up to 4 decimals")
        raise typer.Exit(2) from exc


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="Unique user name.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    role: Annotated[str, typer.Option(help="user or admin.")] = "user",
    plan: Annotated[str | None, typer.Option(help="Plan (free, paid, ...).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a user; new users get the free grant."""
    from pixgate.money import from_minor

    settings = _settings(config, data_dir)
    user = run_with_core(settings, lambda core: core.create_user(name, role, plan, CLI_ACTOR))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "id": user.id,
                    "name": user.name,
                    "role": user.role,
                    "plan": user.plan,
                    "balance": str(from_minor(user.balance_minor)),
                }
            )
        )
    else:
        console.print(
            f"created {user.name} ({user.id}), role {user.role}, plan {user.plan}, "
            f"balance {from_minor(user.balance_minor)} {settings.currency}"
        )


@users_app.command("list")
def users_list(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """List users with their balances."""
    from pixgate.accounts import users
    from pixgate.money import from_minor

    settings = _settings(config, data_dir)
    rows = run_with_core(settings, lambda core: users.list_users(core.db))
    table = Table("id", "name", "role", "plan", "balance", "enabled")
    for u in rows:
        table.add_row(
            u.id,
            u.name,
            u.role,
            u.plan,
            str(from_minor(u.balance_minor)),
            "yes" if u.enabled else "no",
        )
    console.print(table)


@users_app.command("set")
def users_set(
    user: Annotated[str, typer.Argument(help="Name or id.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    plan: Annotated[str | None, typer.Option()] = None,
    role: Annotated[str | None, typer.Option()] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
) -> None:
    """Change a user's plan, role or enabled flag."""
    from pixgate.accounts import users

    settings = _settings(config, data_dir)
    if plan is not None and plan not in settings.plans:
        err_console.print(f"[red]error:[/red] plan must be one of {', '.join(settings.plans)}")
        raise typer.Exit(2)
    u = run_with_core(
        settings,
        lambda core: users.update_user(core.db, user, plan=plan, role=role, enabled=enabled),
    )
    console.print(f"{u.name}: role {u.role}, plan {u.plan}, enabled {u.enabled}")


@credit_app.command("grant")
def credit_grant(
    user: Annotated[str, typer.Argument(help="Name or id.")],
    amount: Annotated[str, typer.Argument(help="Currency amount; negative with --kind adjust.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    kind: Annotated[str, typer.Option(help="grant, topup or adjust.")] = "grant",
) -> None:
    """Add (or, with --kind adjust, remove) credit. Put `--` before a negative amount:
    `pixgate credit grant --kind adjust --reason "refund" -- alice -2.5`."""
    from pixgate.accounts import users
    from pixgate.money import from_minor

    settings = _settings(config, data_dir)
    minor = _minor(amount)
    balance = run_with_core(
        settings, lambda core: users.credit(core.db, user, minor, kind, reason, CLI_ACTOR)
    )
    console.print(f"{user}: balance {from_minor(balance)} {settings.currency}")


@codes_app.command("mint")
def codes_mint(
    count: Annotated[int, typer.Option(min=1, help="How many codes.")],
    value: Annotated[str, typer.Option(help="Credit per code, in currency.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Mint single-use codes; they are printed once."""
    from pixgate.accounts import codes

    settings = _settings(config, data_dir)
    minor = _minor(value)
    batch, minted = run_with_core(
        settings, lambda core: codes.mint(core.db, count, minor, CLI_ACTOR)
    )
    if as_json:
        typer.echo(json.dumps({"batch": batch, "value": value, "codes": minted}))
    else:
        for code in minted:
            console.print(code)
        err_console.print(f"batch {batch}: {count} codes of {value} {settings.currency}")


@app.command()
def ledger(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    user: Annotated[str | None, typer.Option(help="Only this user (name or id).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
) -> None:
    """Show ledger entries, newest first."""
    from pixgate.accounts import users
    from pixgate.money import from_minor

    settings = _settings(config, data_dir)

    async def rows(core):
        user_id = await users.user_filter(core.db, user)
        return await users.ledger(core.db, user_id, limit)

    table = Table("id", "user", "kind", "amount", "job", "reason", "when")
    for e in run_with_core(settings, rows):
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
    from pixgate.accounts.audit import audit as run_audit

    settings = _settings(config, data_dir)
    problems = run_with_core(settings, lambda core: run_audit(core.db))
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
    from pixgate.accounts import users
    from pixgate.money import from_minor

    settings = _settings(config, data_dir)

    async def rows(core):
        user_id = await users.user_filter(core.db, user)
        return await core.queue.recent(user_id, status, limit)

    table = Table("id", "user", "model", "status", "images", "cost", "error", "created")
    for j in run_with_core(settings, rows):
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
