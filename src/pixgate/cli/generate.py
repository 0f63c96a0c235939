"""`pixgate generate`: one image on this machine, without a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pixgate.cli.common import (
    ENGINE_SOURCES,
    ConfigOpt,
    DataDirOpt,
    DemoOpt,
    app,
    cli_settings,
    console,
    err_console,
    needs_engine,
)
from pixgate.core.shaping import FieldNames
from pixgate.settings import Settings
from pixgate.spec.catalog import ModelSpec

_CLI_NAMES = FieldNames(size="--size", n="n", steps="--steps")
_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


def missing_weights(spec: ModelSpec, settings: Settings) -> str | None:
    """Why `spec` cannot load here, decided before torch is imported: a hub model whose
    files are not in the models cache (a generate would otherwise try the hub, show a long
    progress bar and end in a traceback), or a local folder that is not a diffusers model.
    None: nothing known to be missing."""
    if spec.source_kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        cache = settings.models_dir / "hub"
        found = try_to_load_from_cache(spec.source, "model_index.json", cache_dir=cache)
        if isinstance(found, str):  # else None (not cached) or a "known missing" marker
            return None
        return (
            f"model {spec.name} needs weights from the hub ({spec.source}), and they are not "
            f"in {cache}: run `pixgate models pull {spec.name}` first, or use --demo "
            "(seed names on builtin tiny builds) or --model tiny-sd"
        )
    if spec.source_kind == "local":
        folder = Path(spec.source.removeprefix("file:")).expanduser()
        if not (folder / "model_index.json").is_file():
            return f"model {spec.name}: {folder} is not a diffusers model directory"
    return None


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Image file to write.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    model: Annotated[str | None, typer.Option(help="Model name from the catalog.")] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT, one of the model's.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (random if omitted).")] = None,
    demo: DemoOpt = None,
) -> None:
    """Generate one image locally, without a server."""
    from pixgate.core.shaping import shape_request
    from pixgate.errors import PixgateError
    from pixgate.spec.catalog import Catalog

    settings = cli_settings(config, data_dir, demo=demo)
    catalog = Catalog.build(settings.models, settings.demo, settings.default_model)
    spec = catalog.get(model) if model else catalog.default()
    if spec is None:
        err_console.print(
            f"[red]unknown model {model!r}[/red]; known: {', '.join(catalog.names())}"
        )
        raise typer.Exit(2)
    fmt = _FORMATS.get(output.suffix.lower(), "png")
    try:
        req = shape_request(
            spec,
            prompt=prompt,
            size=size,
            steps=steps,
            seed=seed,
            output_format=fmt,
            names=_CLI_NAMES,
        )
    except PixgateError as exc:
        err_console.print(f"[red]error:[/red] {exc.message()}")
        raise typer.Exit(2) from exc
    if spec.source_kind in ENGINE_SOURCES:
        needs_engine("generate")
    problem = missing_weights(spec, settings)
    if problem:
        err_console.print(f"[red]error:[/red] {problem}", highlight=False)
        raise typer.Exit(1)
    _run(req, spec, settings, output, fmt)


def _run(req, spec: ModelSpec, settings: Settings, output: Path, fmt: str) -> None:
    """Load, denoise with a step progress bar, encode and write, through the backend the
    model's source picks (as a worker would); a model that cannot load or a request the
    pipeline refuses is one red line and exit code 1."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pixgate.backends import BackendError, Backends
    from pixgate.processing.encode import encode_image

    backends = Backends(settings)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=err_console,
        ) as progress:
            task = progress.add_task(f"loading {spec.name}", total=req.steps)
            backend = backends.get(spec)
            progress.update(task, description=f"{spec.name} {req.width}x{req.height}")
            [result] = backend.generate_batch(
                [req], spec, lambda step, _t: progress.update(task, completed=step)
            )
    except (BackendError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    finally:
        backends.close()
    image = result.images[0]
    if image is None:
        err_console.print(f"[red]error:[/red] model {spec.name} produced no image")
        raise typer.Exit(1)
    output.write_bytes(encode_image(image, fmt, settings.png_compress_level))
    console.print(f"wrote {output} (seed {req.seed}, {result.inference_seconds:.2f} s)")
    if spec.demo or spec.source_kind == "builtin":
        err_console.print("[yellow]note: builtin random-weight model; the image is noise.[/yellow]")
