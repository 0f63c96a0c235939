"""`pixgate models pull`: download a hub model into the cache the loader reads.

The loader calls `DiffusionPipeline.from_pretrained(hub_id, cache_dir=<models_dir>/hub)`,
so a pull writes the standard Hugging Face cache layout there (`models--org--name/blobs`,
`snapshots/<commit>/...`, `refs/<revision>`) and a worker started later, even offline,
finds the files.

What to download is diffusers' own choice, not a copy of it: the allow and ignore patterns
are computed by the helpers `DiffusionPipeline.download` uses (component folders named in
`model_index.json`; safetensors when every component has them, else .bin; the variant's
files where a component has them; no Flax, ONNX or root-level single-file checkpoints),
and `huggingface_hub.snapshot_download` fetches exactly what they select, with a byte
progress bar. Files left out are listed with the pattern that left them out.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ENDPOINT = "https://huggingface.co"


class PullError(Exception):
    """A pull that cannot go on, with a message for the user (no traceback)."""


@dataclass
class PullPlan:
    repo_id: str
    revision: str
    commit: str
    files: dict[str, int | None]  # to download: path in the repo -> size in bytes
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why
    notes: list[str] = field(default_factory=list)
    allow_patterns: list[str] = field(default_factory=list)
    ignore_patterns: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(size or 0 for size in self.files.values())


def pipeline_patterns(
    repo_id: str, model_index: dict[str, Any], filenames: set[str], variant: str | None
) -> tuple[list[str], list[str]]:
    """(allow_patterns, ignore_patterns) for a standard diffusers pipeline repo, computed
    the way `DiffusionPipeline.download` computes them (safetensors preferred, no custom
    pipeline code: pixgate does not run code from model repos)."""
    from diffusers.pipelines import pipeline_loading_utils as loading
    from diffusers.pipelines import pipeline_utils

    if isinstance(model_index.get("_class_name"), list) or "pipeline.py" in filenames:
        raise PullError(
            f"{repo_id} uses custom pipeline code, which pixgate does not run; "
            "use a repo in the standard diffusers format"
        )
    filenames = filenames - set(model_index.get("_ignore_files", []))
    try:
        custom, folder_names = loading._get_custom_components_and_folders(
            repo_id, model_index, sorted(filenames), None, variant
        )
        pipeline_class = loading._get_pipeline_class(pipeline_utils.DiffusionPipeline, model_index)
        model_folders = {
            os.path.split(f)[0]
            for f in loading.filter_model_files(filenames)
            if os.path.split(f)[0] in folder_names
        }
        ignore = loading._get_ignore_patterns(
            [], model_folders, filenames, True, True, None, pipeline_class._is_onnx, False, variant
        )
        model_files, _ = loading.variant_compatible_siblings(
            filenames, variant=variant, ignore_patterns=ignore
        )
    except (ValueError, OSError, AttributeError) as exc:
        raise PullError(f"{repo_id}: diffusers cannot load this repo ({exc})") from exc
    if custom:
        raise PullError(f"{repo_id}: components {sorted(custom)} need custom code from the repo")
    # Exactly diffusers' list, even where it looks wider than needed (its weight files are
    # repo-wide): from_pretrained offline checks the cached snapshot against these same
    # patterns, and refuses a snapshot that lacks any file they select.
    allow = sorted(model_files)
    allow += [f"{folder}/*" for folder in folder_names if folder not in model_folders]
    allow += [f"{folder}/config.json" for folder in sorted(model_folders)]
    allow += ["scheduler_config.json", "config.json", "model_index.json"]
    # flat, transformers-style repos keep a component's files at the root (newer diffusers)
    allow += list(getattr(pipeline_utils, "TRANSFORMERS_COMPONENT_AUX_FILES", []))
    ignore = ignore + [f"{pattern}.index.*json" for pattern in ignore]
    return allow, ignore


def select(
    files: dict[str, int | None], allow: list[str], ignore: list[str]
) -> tuple[dict[str, int | None], dict[str, str]]:
    """Split a repo's files into (to download, skipped with why), as `snapshot_download`
    filters them."""
    from huggingface_hub.utils import filter_repo_objects

    keep = set(filter_repo_objects(files, allow_patterns=allow, ignore_patterns=ignore))
    skipped = {}
    for name in sorted(set(files) - keep):
        pattern = next((p for p in ignore if fnmatch.fnmatch(name, p)), None)
        skipped[name] = f"diffusers ignores {pattern}" if pattern else "not a file diffusers loads"
    return {name: files[name] for name in sorted(keep)}, skipped


def hub_cache_dir(models_dir: Path) -> Path:
    """Where the loader's `from_pretrained(cache_dir=...)` looks."""
    return models_dir / "hub"


def endpoint_of(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def plan_pull(
    repo_id: str,
    models_dir: Path,
    revision: str = "main",
    variant: str | None = None,
    endpoint: str | None = None,
) -> PullPlan:
    """Ask the hub what the repo holds (downloading only model_index.json) and decide
    what to download. Raises PullError with a readable message."""
    from huggingface_hub import HfApi, hf_hub_download

    endpoint = endpoint_of(endpoint)
    api = HfApi(endpoint=endpoint)
    with _hub_errors(repo_id, revision, endpoint):
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
        files = {s.rfilename: s.size for s in info.siblings or []}
        commit = info.sha or revision
        if "model_index.json" not in files:
            raise PullError(
                f"{repo_id} is not a diffusers pipeline (it has no model_index.json); "
                "pixgate loads models in the diffusers format"
            )
        index_path = hf_hub_download(
            repo_id,
            "model_index.json",
            revision=commit,
            cache_dir=hub_cache_dir(models_dir),
            endpoint=endpoint,
        )
    model_index = json.loads(Path(index_path).read_text(encoding="utf-8"))
    allow, ignore = pipeline_patterns(repo_id, model_index, set(files), variant)
    keep, skipped = select(files, allow, ignore)
    notes = []
    if variant is not None:
        notes.append(
            f'set variant = "{variant}" on the model in [[models]]: diffusers looks for '
            f"the {variant} files only when asked for that variant"
        )
    return PullPlan(repo_id, revision, commit, keep, skipped, notes, allow, ignore)


ProgressFn = Callable[[int], None]
"""Called with the bytes just written; may be negative when a retry rewinds."""


def download(
    plan: PullPlan,
    models_dir: Path,
    endpoint: str | None = None,
    on_bytes: ProgressFn | None = None,
) -> Path:
    """Download the plan's files with `snapshot_download` (pinned to its commit; files
    already in the cache are not fetched again), record `refs/<revision>` and return the
    snapshot folder."""
    from huggingface_hub import snapshot_download

    endpoint = endpoint_of(endpoint)
    cache = hub_cache_dir(models_dir)
    with _hub_errors(plan.repo_id, plan.revision, endpoint):
        snapshot = snapshot_download(
            plan.repo_id,
            revision=plan.commit,
            cache_dir=cache,
            endpoint=endpoint,
            allow_patterns=plan.allow_patterns,
            ignore_patterns=plan.ignore_patterns,
            tqdm_class=_progress_tqdm(on_bytes) if on_bytes else None,
        )
    if plan.revision != plan.commit:  # so from_pretrained(revision="main") finds it offline
        refs = _repo_folder(cache, plan.repo_id) / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        (refs / plan.revision).write_text(plan.commit)
    return Path(snapshot)


def _repo_folder(cache: Path, repo_id: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache / repo_folder_name(repo_id=repo_id, repo_type="model")


def _progress_tqdm(on_bytes: ProgressFn) -> type:
    """A tqdm class that draws nothing and passes on the bytes written to disk.
    `snapshot_download` drives all its bars through the class it is given: the files
    counter, the network-bytes bar and the bytes-written bar; only the last one counts
    what the user waits for (its description starts with "Reconstruct")."""
    from tqdm.std import tqdm

    class Reporter(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            self._reports = kwargs.get("unit") == "B" and str(kwargs.get("desc", "")).startswith(
                "Reconstruct"
            )
            super().__init__(*args, **{**kwargs, "disable": True})

        def update(self, n: float | None = 1) -> bool | None:
            if n and self._reports:
                on_bytes(int(n))
            return None

    return Reporter


class _hub_errors:
    """Turn huggingface_hub/httpx exceptions into PullError messages."""

    def __init__(self, repo_id: str, revision: str, endpoint: str):
        self.repo_id, self.revision, self.endpoint = repo_id, revision, endpoint

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, PullError):
            return False
        message = hub_error_message(exc, self.repo_id, self.revision, self.endpoint)
        if message is None:
            return False
        raise PullError(message) from exc


def hub_error_message(exc: BaseException, repo_id: str, revision: str, endpoint: str) -> str | None:
    from huggingface_hub import errors

    if isinstance(exc, errors.OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set: unset it to download models"
    if isinstance(exc, errors.GatedRepoError):
        return (
            f"{repo_id} is gated: accept its license on the hub, then set HF_TOKEN to a token "
            "of that account"
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        status = f" (HTTP {_status(exc)})" if _status(exc) else ""
        return (
            f"repository {repo_id!r} not found on {endpoint}{status}; a private or gated "
            "repository needs HF_TOKEN"
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"revision {revision!r} not found in {repo_id}"
    if isinstance(exc, errors.EntryNotFoundError):
        return f"{repo_id}: a listed file is missing on the hub ({exc})".splitlines()[0]
    if isinstance(exc, errors.HFValidationError):
        return f"{repo_id!r} is not a valid hub repository id"
    if _is_connection_error(exc):
        return f"cannot reach the hub at {endpoint} (offline? set --endpoint or HF_ENDPOINT)"
    if isinstance(exc, errors.HfHubHTTPError):
        status = _status(exc)
        return f"the hub at {endpoint} answered HTTP {status}: {exc}".splitlines()[0][:300]
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return None


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _is_connection_error(exc: BaseException) -> bool:
    """httpx/httpx2 transport errors (connection refused, DNS, timeouts) anywhere in the
    chain of causes; huggingface_hub wraps them differently across versions."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names = {cls.__name__ for cls in type(current).__mro__}
        if names & {"TransportError", "ConnectError", "TimeoutException", "NetworkError"}:
            return True
        if isinstance(current, ConnectionError):
            return True
        current = current.__cause__ or current.__context__
    return False


def pull_source(name: str, settings: Any) -> str:
    """The hub repo id to pull for `name`: a catalog model's hub source (the real sources of
    the seed names, whatever demo mode says), else `name` itself when it is a repo id."""
    from huggingface_hub.utils import validate_repo_id

    from pixgate.spec.catalog import REAL_SEED_MODELS, Catalog

    catalog = Catalog.build(settings.models, demo=False)
    spec = catalog.get(name) or next((m for m in REAL_SEED_MODELS if m.name == name), None)
    if spec is not None:
        if spec.source_kind == "builtin":
            raise PullError(
                f"{name} is served by {spec.source}, which pixgate builds itself on first "
                "use: there is nothing to download"
            )
        if spec.source_kind == "local":
            raise PullError(f"{name} is served from the local directory {spec.source}")
        if spec.source_kind in ("fake", "channel"):
            raise PullError(f"{name} is served by {spec.source}, which has no weights")
        return spec.source
    if "/" in name:
        try:
            validate_repo_id(name)
        except ValueError as exc:
            raise PullError(f"{name!r} is not a valid hub repository id ({exc})") from exc
        return name
    raise PullError(
        f"unknown model {name!r}: not in the catalog ({', '.join(catalog.names())}) and not "
        "a hub repository id (org/name)"
    )


def pull_with_progress(
    name: str,
    settings: Any,
    console: Any,
    revision: str = "main",
    variant: str | None = None,
    endpoint: str | None = None,
) -> Path:
    """The whole `models pull`: resolve, plan, report what is skipped, download with a
    rich byte progress bar. Raises PullError."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    repo_id = pull_source(name, settings)
    models_dir = settings.models_dir
    console.print(f"pulling [bold]{repo_id}[/bold] ({revision}) from {endpoint_of(endpoint)}")
    plan = plan_pull(repo_id, models_dir, revision, variant, endpoint)
    for path, why in plan.skipped.items():
        console.print(f"  [dim]skip {path}: {why}[/dim]")
    for note in plan.notes:
        console.print(f"  [yellow]note:[/yellow] {note}")
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"{len(plan.files)} files", total=plan.total_bytes or None)
        snapshot = download(plan, models_dir, endpoint, lambda n: progress.advance(task, n))
        # files already in the cache report no bytes: the bar still ends full
        progress.update(task, completed=plan.total_bytes)
    return snapshot
