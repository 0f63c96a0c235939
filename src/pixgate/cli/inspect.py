"""`pixgate inspect FILE...`: each file's TC260 label (GB 45438's implicit label) and
whether it verifies against this deployment's signing secret; exit 0 only when every file
is valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pixgate.cli.common import ConfigOpt, DataDirOpt, app, cli_settings, console, err_console


@app.command()
def inspect(
    files: Annotated[list[Path], typer.Argument(help="Image files to check.", exists=True)],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
) -> None:
    """Print each file's label and say valid, invalid or absent (valid: made by this
    deployment for exactly these pixels)."""
    from pixgate.accounts.secrets import server_secret
    from pixgate.processing.label import inspect_file, label_key

    settings = cli_settings(config, data_dir)
    secret_file = settings.data_dir / "signing.key"
    if not settings.signing_secret and not secret_file.is_file():
        err_console.print(
            f"[red]error:[/red] no signing secret: set signing_secret or point --data-dir at "
            f"the server's data dir ({escape(str(settings.data_dir))} has no signing.key)"
        )
        raise typer.Exit(2)
    key = label_key(server_secret(settings.data_dir, settings.signing_secret))
    all_valid = True
    for path in files:
        seen = inspect_file(path.read_bytes(), key)
        all_valid &= seen.verdict == "valid"
        if as_json:
            report = {"file": str(path), "verdict": seen.verdict, "reason": seen.reason}
            print(json.dumps({**report, "label": seen.label}, ensure_ascii=False))
            continue
        label = seen.label or {}
        details = ", ".join(
            f"{k}={label[k]}" for k in ("ContentProducer", "ProduceID") if label.get(k)
        )
        colour = {"valid": "green", "invalid": "red", "absent": "yellow"}[seen.verdict]
        console.print(
            f"[{colour}]{seen.verdict}[/{colour}]  {escape(str(path))}"
            + (f"  {escape(details)}" if details else "")
            + f"  ({escape(seen.reason)})"
        )
    if not all_valid:
        raise typer.Exit(1)
