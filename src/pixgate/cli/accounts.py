"""`pixgate users`, `pixgate credit` and `pixgate codes`: accounts and the money that
moves into them (every change is a ledger row, with the CLI as its actor)."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
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

    settings = cli_settings(config, data_dir)
    user = run_with_core(settings, lambda core: core.admin.create_user(name, role, plan, CLI_ACTOR))
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
    from pixgate.money import from_minor

    settings = cli_settings(config, data_dir)
    rows = run_with_core(settings, lambda core: core.admin.list_users())
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
    settings = cli_settings(config, data_dir)
    u = run_with_core(
        settings,
        lambda core: core.admin.update_user(user, plan=plan, role=role, enabled=enabled),
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
    from pixgate.money import from_minor

    settings = cli_settings(config, data_dir)
    minor = _minor(amount)
    balance = run_with_core(
        settings, lambda core: core.admin.credit(user, minor, kind, reason, CLI_ACTOR)
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
    settings = cli_settings(config, data_dir)
    minor = _minor(value)
    batch, minted = run_with_core(
        settings, lambda core: core.admin.mint_codes(count, minor, CLI_ACTOR)
    )
    if as_json:
        typer.echo(json.dumps({"batch": batch, "value": value, "codes": minted}))
    else:
        for code in minted:
            console.print(code)
        err_console.print(f"batch {batch}: {count} codes of {value} {settings.currency}")
