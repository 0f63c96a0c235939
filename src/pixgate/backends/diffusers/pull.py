"""`pixgate models pull`: download a hub model into the cache the loader reads.

The loader calls `DiffusionPipeline.from_pretrained(hub_id, cache_dir=<models_dir>/hub)`,
so a pull writes the standard Hugging Face cache layout there (`models--org--name/blobs`,
`snapshots/<commit>/...`, `refs/<revision>`) with `huggingface_hub`, and a worker started
later, even offline, finds the files.

Only what diffusers loads is downloaded, as diffusers itself chooses: `model_index.json`
and the folders of the components it names; in each folder one weight format (safetensors
when there is one, else PyTorch .bin) and one variant (`--variant fp16` picks the fp16
files where a component has them). Duplicate formats, other variants, Flax/TF/ONNX weights
and root-level single-file checkpoints are skipped and listed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Weight files diffusers never loads into a PyTorch pipeline.
OTHER_WEIGHTS = {
    ".msgpack": "Flax weights",
    ".h5": "TensorFlow weights",
    ".onnx": "ONNX weights",
    ".pb": "TensorFlow/ONNX weights",
    ".ckpt": "original-format checkpoint",
    ".pt": "PyTorch pickle not loaded by diffusers",
    ".pth": "PyTorch pickle not loaded by diffusers",
    ".gguf": "GGUF weights",
}
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

    @property
    def total_bytes(self) -> int:
        return sum(size or 0 for size in self.files.values())


def _weight_kind(filename: str) -> tuple[str | None, str | None]:
    """(format, variant) of a weight file or shard index, (None, None) for other files.
    `unet/diffusion_pytorch_model.fp16.safetensors` -> ("safetensors", "fp16");
    `text_encoder/model.safetensors.index.fp16.json` -> ("safetensors", "fp16");
    `vae/diffusion_flax_model.msgpack` -> ("msgpack", None)."""
    parts = filename.rsplit("/", 1)[-1].split(".")
    if len(parts) < 2:
        return None, None
    if parts[-1] == "json":  # shard indexes: NAME.FORMAT.index[.VARIANT].json
        if "index" not in parts[:-1] or parts.index("index") < 2:
            return None, None
        i = parts.index("index")
        fmt = parts[i - 1]
        variant = parts[i + 1] if i + 1 < len(parts) - 1 else None
        return (fmt, variant) if fmt in ("safetensors", "bin") else (None, None)
    ext = parts[-1]
    if ext not in ("safetensors", "bin") and f".{ext}" not in OTHER_WEIGHTS:
        return None, None
    variant = parts[-2] if len(parts) >= 3 else None
    return ext, variant


def select_files(
    files: dict[str, int | None], components: set[str], variant: str | None
) -> tuple[dict[str, int | None], dict[str, str], list[str]]:
    """Split a repo's files into (to download, skipped with reasons, notes)."""
    keep: dict[str, int | None] = {}
    skipped: dict[str, str] = {}
    notes: list[str] = []
    by_folder: dict[str, list[str]] = {}
    for name in sorted(files):
        folder, _, _ = name.partition("/")
        if "/" not in name:
            if name == "model_index.json":
                keep[name] = files[name]
            else:
                kind, _ = _weight_kind(name)
                why = "single-file checkpoint" if kind else "not part of the pipeline"
                skipped[name] = why + " (diffusers loads the component folders)"
        elif folder not in components:
            skipped[name] = f"folder {folder!r} is not a component in model_index.json"
        else:
            by_folder.setdefault(folder, []).append(name)
    for folder, names in sorted(by_folder.items()):
        weights = {n: _weight_kind(n) for n in names if _weight_kind(n)[0] is not None}
        usable = {n: k for n, k in weights.items() if k[0] in ("safetensors", "bin")}
        wanted = None
        if variant is not None:
            if any(v == variant for _, v in usable.values()):
                wanted = variant
            elif usable:
                notes.append(f"{folder}: no {variant} variant; the default weights are used")
        fmts = {fmt for fmt, v in usable.values() if v == wanted}
        fmt = "safetensors" if "safetensors" in fmts else "bin"
        if weights and not usable:
            notes.append(f"{folder}: no PyTorch weights (safetensors or .bin) in the repo")
        for name in names:
            if name not in weights:
                keep[name] = files[name]
                continue
            kind, v = weights[name]
            if kind not in ("safetensors", "bin"):
                skipped[name] = OTHER_WEIGHTS.get(f".{kind}", f"{kind} weights")
            elif v != wanted:
                skipped[name] = (
                    f"{v} variant" if v is not None else f"default weights (--variant {variant})"
                )
            elif kind != fmt:
                skipped[name] = "duplicate of the .safetensors weights"
            else:
                keep[name] = files[name]
    return keep, skipped, notes


def pipeline_components(model_index: dict[str, Any]) -> set[str]:
    """The component folders a model_index.json names (`"unet": ["diffusers", "..."]`)."""
    return {
        key
        for key, value in model_index.items()
        if not key.startswith("_")
        and isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, str) for v in value)
    }


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
    keep, skipped, notes = select_files(files, pipeline_components(model_index), variant)
    if variant is not None:
        notes.append(
            f'set variant = "{variant}" on the model in [[models]]: diffusers looks for '
            f"the {variant} files only when asked for that variant"
        )
    return PullPlan(repo_id, revision, commit, keep, skipped, notes)


ProgressFn = Callable[[str, int], None]
"""Called with (file, bytes just received); bytes may be negative when a retry rewinds."""


def download(
    plan: PullPlan,
    models_dir: Path,
    endpoint: str | None = None,
    on_bytes: ProgressFn | None = None,
    on_file_done: Callable[[str], None] | None = None,
) -> Path:
    """Download the plan's files (pinned to its commit; files already in the cache are not
    fetched again), record `refs/<revision>` and return the snapshot folder."""
    from huggingface_hub import hf_hub_download

    endpoint = endpoint_of(endpoint)
    cache = hub_cache_dir(models_dir)
    snapshot = None
    with _hub_errors(plan.repo_id, plan.revision, endpoint):
        for name in plan.files:
            tqdm_class = _progress_tqdm(name, on_bytes) if on_bytes else None
            path = hf_hub_download(
                plan.repo_id,
                name,
                revision=plan.commit,
                cache_dir=cache,
                endpoint=endpoint,
                tqdm_class=tqdm_class,
            )
            snapshot = Path(path).parents[len(Path(name).parts) - 1]
            if on_file_done:
                on_file_done(name)
    if plan.revision != plan.commit:  # so from_pretrained(revision="main") finds it offline
        refs = _repo_folder(cache, plan.repo_id) / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        (refs / plan.revision).write_text(plan.commit)
    assert snapshot is not None  # model_index.json is always in the plan
    return snapshot


def _repo_folder(cache: Path, repo_id: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache / repo_folder_name(repo_id=repo_id, repo_type="model")


def _progress_tqdm(name: str, on_bytes: ProgressFn) -> type:
    """A tqdm class that draws nothing and reports byte counts (huggingface_hub drives its
    download progress through a tqdm class)."""
    from tqdm.std import tqdm

    class Reporter(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            super().__init__(*args, **{**kwargs, "disable": True})

        def update(self, n: float | None = 1) -> bool | None:
            if n:
                on_bytes(name, int(n))
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
        done = {"bytes": 0}

        def on_bytes(_file: str, n: int) -> None:
            progress.advance(task, n)

        def on_file_done(file: str) -> None:  # files already cached report no bytes
            done["bytes"] += plan.files[file] or 0
            progress.update(task, completed=done["bytes"], description=file)

        snapshot = download(plan, models_dir, endpoint, on_bytes, on_file_done)
        progress.update(task, description=f"{len(plan.files)} files")
    return snapshot
