"""`pixgate keys create|list|revoke`: API keys (raw keys are printed once, never stored)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from pixgate.cli.common import (
    ConfigOpt,
    DataDirOpt,
    app,
    cli_settings,
    console,
    csv,
    err_console,
    run_with_core,
)

keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


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
    explicit_label: Annotated[
        bool | None,
        typer.Option(
            "--explicit-label/--no-explicit-label",
            help="Override the deployment's visible AI-generated label for this key "
            "(default: follow the explicit_label setting).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create an API key and print it (it is shown only once)."""
    from pixgate.accounts import keys

    settings = cli_settings(config, data_dir)
    spec = keys.KeySpec(
        name=name,
        image_cap=images,
        prefix=prefix,
        expires_at=expires,
        allowed_models=csv(models),
        allowed_ips=csv(ips),
        with_secret=signing,
        explicit_label=explicit_label,
    )

    async def make(core):
        owner = user
        if owner is None:
            new = await core.admin.create_user(name or f"user-{uuid.uuid4().hex[:8]}", plan=plan)
            owner = new.id
        return (await core.admin.create_key(owner, spec))[1]

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
def keys_list(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List keys (display form only; raw keys are never stored)."""
    settings = cli_settings(config, data_dir)
    rows = run_with_core(settings, lambda core: core.admin.list_keys(None))
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "display": r.display,
                        "name": r.name,
                        "images_used": r.images_used,
                        "image_cap": r.image_cap,
                        "enabled": r.enabled,
                        "created_at": r.created_at.isoformat(),
                    }
                    for r in rows
                ],
                ensure_ascii=False,
            )
        )
        return
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

    settings = cli_settings(config, data_dir)
    row = run_with_core(settings, lambda core: keys.revoke_key(core.db, key_or_id))
    if row is None:
        err_console.print(f"[red]no key matches {key_or_id!r}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {row.id} ({row.display})")
