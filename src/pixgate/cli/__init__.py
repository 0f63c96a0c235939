"""The `pixgate` command line (typer + rich).

`common` holds the app, the shared options, settings loading and `run_with_core`; each
other module is one command group and registers its commands on the app when imported:

- `serve`: `serve`, `worker`
- `keys`: `keys create|list|revoke`
- `models`: `models list|pull`
- `generate`: `generate`
- `accounts`: `users`, `credit`, `codes`
- `records`: `ledger`, `jobs`, `audit`
- `channels`: `channels list|test|enable|disable`
- `inspect`: `inspect FILE...` (TC260 labels)
- `storage`: `storage setup|migrate` (the S3 bucket)
"""

from __future__ import annotations

from pixgate.cli.common import app

# Imported in the order `pixgate --help` lists the groups.
# isort: off
from pixgate.cli import serve, keys, models, generate, accounts, records, channels, inspect
from pixgate.cli import storage
# isort: on

__all__ = [
    "accounts",
    "app",
    "channels",
    "generate",
    "inspect",
    "keys",
    "main",
    "models",
    "records",
    "serve",
    "storage",
]


def main() -> None:
    """The console-script entry point (`pixgate`)."""
    app()
