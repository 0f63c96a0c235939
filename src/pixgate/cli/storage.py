"""`pixgate storage setup|migrate`: prepare the `[storage]` bucket (create it, write the
lifecycle rule that expires old images), and copy a local deployment's files into it."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pixgate.cli.common import ConfigOpt, DataDirOpt, app, cli_settings, console, err_console
from pixgate.settings import Settings
from pixgate.storage.base import media_type

if TYPE_CHECKING:
    from pixgate.storage.s3 import S3Storage

storage_app = typer.Typer(
    help="Image storage: S3 bucket setup and migration.", no_args_is_help=True
)
app.add_typer(storage_app, name="storage")

LIFECYCLE_RULE_ID = "pixgate-expire"


class Target(StrEnum):
    s3 = "s3"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _s3(settings: Settings) -> S3Storage:
    """The `[storage]` bucket's S3Storage; a red message and exit code 2 when the config
    does not name one, boto3 is missing or the keys' env vars are unset."""
    if settings.storage.backend != "s3":
        raise _fail(
            '[storage] backend is not "s3": set backend = "s3", bucket and (for a non-AWS '
            "server) endpoint_url in the config first (a running server keeps its settings "
            "until it restarts)"
        )
    from pixgate.storage.s3 import S3Storage

    try:
        return S3Storage(settings.storage, b"", settings.url_ttl_seconds)
    except ValueError as exc:
        raise _fail(str(exc)) from exc


def _error_text(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    code, message = error.get("Code"), error.get("Message")
    return f"{code}: {message}" if code else str(exc)


def lifecycle_days(ttl_seconds: int) -> int:
    """Days after which the bucket expires objects: past the URL lifetime, with a day's
    margin (S3 counts whole days and runs the rule about once a day)."""
    return math.ceil(ttl_seconds / 86400) + 1


@storage_app.command("setup")
def setup(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Create the bucket if it is missing, and write a lifecycle rule expiring objects
    under the prefix after ceil(url_ttl_seconds / 86400) + 1 days (pixgate's own sweep
    deletes them on time too; the rule catches what it misses)."""
    settings = cli_settings(config, data_dir)
    s3 = _s3(settings)  # first: it says so when boto3 is missing
    from botocore.exceptions import BotoCoreError, ClientError

    from pixgate.storage.s3 import is_missing

    client, bucket = s3.client, s3.bucket
    try:
        try:
            client.head_bucket(Bucket=bucket)
            console.print(f"bucket {bucket} exists")
        except ClientError as exc:
            if not is_missing(exc):
                raise
            region = settings.storage.region
            extra = {}
            if region and region != "us-east-1" and settings.storage.endpoint_url is None:
                extra = {"CreateBucketConfiguration": {"LocationConstraint": region}}
            client.create_bucket(Bucket=bucket, **extra)
            console.print(f"created bucket {bucket}")
    except (BotoCoreError, ClientError) as exc:
        raise _fail(f"bucket {bucket}: {_error_text(exc)}") from exc

    days = lifecycle_days(settings.url_ttl_seconds)
    prefix = f"{s3.prefix}/" if s3.prefix else ""
    rule = {
        "ID": LIFECYCLE_RULE_ID if not s3.prefix else f"{LIFECYCLE_RULE_ID}-{s3.prefix}",
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }
    try:
        try:
            rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        except ClientError as exc:
            if _error_text(exc).split(":")[0] != "NoSuchLifecycleConfiguration":
                raise
            rules = []
        kept = [r for r in rules if r.get("ID") != rule["ID"]]
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [*kept, rule]}
        )
    except (BotoCoreError, ClientError) as exc:
        raise _fail(
            f"could not write the lifecycle rule on bucket {bucket} ({_error_text(exc)}); "
            "the server may not support lifecycle rules: pixgate's sweep still deletes "
            f"expired images every sweep_interval_seconds, but only while it runs",
            code=1,
        ) from exc
    where = f"under {prefix}" if prefix else "in the whole bucket"
    console.print(
        f"lifecycle rule {rule['ID']}: objects {where} expire after {days} day(s) "
        f"(url_ttl_seconds = {settings.url_ttl_seconds})"
    )


def _local_files(root: Path) -> list[tuple[str, Path]]:
    """(relative path with forward slashes, file) of every finished file under `root`."""
    if not root.is_dir():
        return []
    found = (p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".part"))
    return sorted(((p.relative_to(root).as_posix(), p) for p in found), key=lambda f: f[0])


@storage_app.command("migrate")
def migrate(
    to: Annotated[Target, typer.Option("--to", help="Where to copy the files to.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Copy every file of the local files dir (<data_dir>/files) to the storage bucket
    under the same relative paths, skipping objects already there with the same size.
    Local files are kept; restart pixgate with the new config afterwards."""
    settings = cli_settings(config, data_dir)
    s3 = _s3(settings)
    from botocore.exceptions import BotoCoreError, ClientError

    root = settings.files_dir
    files = _local_files(root)
    console.print(f"copying {len(files)} file(s) from {root.resolve()} to s3://{s3.bucket}")
    try:
        present = _sizes(s3)
    except (BotoCoreError, ClientError) as exc:
        raise _fail(f"listing bucket {s3.bucket}: {_error_text(exc)}") from exc
    copied = skipped = 0
    failed: list[str] = []
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("migrating", total=len(files))
        for rel, path in files:
            try:
                key = s3.key(rel)
            except ValueError:
                failed.append(f"{rel}: not a storage path")
                progress.advance(task)
                continue
            size = path.stat().st_size
            if present.get(key) == size:
                skipped += 1
            else:
                try:
                    with path.open("rb") as body:
                        s3.client.put_object(
                            Bucket=s3.bucket, Key=key, Body=body, ContentType=media_type(rel)
                        )
                    copied += 1
                except (OSError, BotoCoreError, ClientError) as exc:
                    failed.append(f"{rel}: {_error_text(exc)}")
            progress.advance(task)
    for line in failed:
        err_console.print(f"[red]failed:[/red] {escape(line)}")
    console.print(f"copied {copied}, skipped {skipped} (already there), failed {len(failed)}")
    if failed:
        raise typer.Exit(1)


def _sizes(s3: S3Storage) -> dict[str, int]:
    """Key -> size of every object under the storage's prefix."""
    prefix = f"{s3.prefix}/" if s3.prefix else ""
    pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])}
