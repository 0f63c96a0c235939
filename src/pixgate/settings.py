"""Server settings: one pydantic-settings class, fed by init values, `PIXGATE_*` env vars
and an optional TOML config file (in that order of precedence)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pixgate.settings_content import ContentSettings
from pixgate.spec.catalog import LoraSpec, ModelSpec, Style
from pixgate.spec.channels import ChannelSpec
from pixgate.spec.storage import StorageSpec


def default_data_dir() -> Path:
    """`PIXGATE_DATA_DIR`; else `./pixgate-data` where the working folder has one (older
    quick starts made it there); else the per-user data dir (`$XDG_DATA_HOME/pixgate`,
    `~/.local/share/pixgate`). A default that followed the working folder alone made the CLI,
    run from elsewhere, silently open an empty database beside the server's."""
    if env := os.environ.get("PIXGATE_DATA_DIR"):
        return Path(env)
    local = Path("pixgate-data")
    if local.is_dir():
        return local.resolve()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "pixgate"


class Plan(BaseModel):
    """Limits for a plan; None means unlimited."""

    model_config = ConfigDict(extra="forbid")

    requests_per_second: int | None = Field(default=None, ge=1)
    requests_per_day: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1, description="In-flight jobs per account.")


def default_plans() -> dict[str, Plan]:
    # seed 003: free users 1 request/s and 10000 requests/day; paying users unlimited.
    return {
        "free": Plan(requests_per_second=1, requests_per_day=10000, concurrency=2),
        "paid": Plan(),
    }


def _no_duplicates(entries: list[Any], what: str, table: str) -> list[Any]:
    """`entries` (of one config table), unless two share a name."""
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {what} names in [[{table}]]: {', '.join(dupes)}")
    return entries


class Settings(BaseSettings, ContentSettings):
    """Everything an operator can set. Env vars use the `PIXGATE_` prefix
    (`PIXGATE_DATABASE_URL`, `PIXGATE_URL_TTL_SECONDS`, ...)."""

    model_config = SettingsConfigDict(
        env_prefix="PIXGATE_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default is SQLite in the data dir. "
        "Use postgresql+asyncpg://... for the scaled deployment.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = Field(
        default=None, description="Base URL used in image links; default: the request's own."
    )

    demo: bool = Field(
        default=False,
        description="Serve the seed model names from builtin tiny builds of their family "
        "(random weights: noise).",
    )
    models: list[ModelSpec] = Field(default_factory=list)
    channels: list[ChannelSpec] = Field(
        default_factory=list,
        description="[[channels]]: upstream image APIs that models are relayed to.",
    )
    relay_max_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Upstream calls one relayed request may make in all (each channel at "
        "most once) before it fails.",
    )
    relay_concurrency: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Relayed jobs one worker runs at once (they wait on the network, not on "
        "a GPU; per-channel max_concurrency bounds each upstream).",
    )
    loras: list[LoraSpec] = Field(
        default_factory=list, description="[[loras]]: LoRA files requests may apply."
    )
    styles: list[Style] = Field(
        default_factory=list, description="[[styles]]: named prompt templates."
    )
    default_model: str | None = Field(
        default=None, description="Model used when a request names none."
    )
    signing_secret: str | None = Field(
        default=None,
        description="HMAC secret for image URLs; default: one generated in the data dir. "
        "Every API node of a scaled deployment must share it.",
    )

    fetch_image_urls: bool = Field(
        default=True,
        description="Let clients pass input images as http(s) URLs the server downloads. "
        "Loopback, private, link-local and other non-public addresses are refused unless "
        "fetch_image_allow lets them.",
    )
    fetch_image_allow: list[str] = Field(
        default_factory=list,
        description='Networks (CIDRs, e.g. ["10.0.0.0/8"]) image URLs may reach although '
        "they are not public.",
    )
    fetch_image_timeout_seconds: float = Field(
        default=15.0, gt=0, le=300, description="Total time one image URL download may take."
    )
    url_ttl_seconds: int = Field(default=3600, ge=1, description="Signed image URL lifetime.")
    storage: StorageSpec = Field(
        default_factory=StorageSpec,
        description="[storage]: where images live: the data dir's files folder (local) or an "
        "S3-compatible bucket (s3).",
    )
    sweep_interval_seconds: float = Field(default=60.0, gt=0)
    png_compress_level: int = Field(default=1, ge=0, le=9)

    max_queue: int = Field(default=64, ge=1, description="Queued jobs beyond which we answer 503.")
    generation_timeout_seconds: float = Field(default=300.0, gt=0)
    run_workers: bool = Field(default=True, description="Run a worker inside `pixgate serve`.")
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0)  # live: seen in the last 3
    worker_prefetch: bool = Field(
        default=True,
        description="Claim the next job while one generates (no gap between jobs). Turn off "
        "when several workers share a queue and latency matters more than throughput.",
    )
    batch_wait_seconds: float = Field(
        default=0.02,
        ge=0,
        le=5,
        description="For models with max_batch > 1: how long a worker waits for compatible "
        "requests to join a batch before it starts.",
    )
    lease_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=2, ge=1)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    models_path: Path | None = Field(
        default=None,
        description="Where builtin builds and hub downloads are cached; default <data_dir>/models.",
    )
    preload: bool = Field(default=True, description="Load builtin models when a worker starts.")
    max_loaded_pipelines: int = Field(default=2, ge=1)
    ram_budget_gb: float | None = Field(
        default=None,
        gt=0,
        description="Memory that loaded CPU pipelines may use together; least recently used "
        "ones are unloaded beyond it. None: only max_loaded_pipelines counts.",
    )
    vram_budget_gb: float | None = Field(
        default=None, gt=0, description="The same, per GPU, for pipelines on cuda/mps."
    )
    torch_threads: int | None = Field(default=None, ge=1)

    currency: str = Field(default="CNY", min_length=3, max_length=8)
    billing_enabled: bool = Field(
        default=True, description="Charge credit and enforce caps (off only for benchmarks)."
    )
    free_grant: Decimal | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        decimal_places=4,
        description="A new user's grant, in currency; when set, free_grant_images is unused.",
    )
    free_grant_images: int = Field(
        default=30,
        ge=0,
        description="Without free_grant, new users get this many images at the default "
        "model's price, or at the cheapest priced model's when the default is free (demo).",
    )
    default_plan: str = "free"
    paid_plan: str = Field(
        default="paid",
        description="Where a top-up or redemption moves a user on default_plan (seed 003: "
        "paying users are not held to it); unset and not in plans: nobody moves.",
    )
    plans: dict[str, Plan] = Field(default_factory=default_plans)
    redis_url: str | None = Field(
        default=None, description="redis://... for rate limits shared by all API nodes."
    )
    global_requests_per_second: int | None = Field(default=None, ge=1)
    unauthenticated_per_ip_per_minute: int | None = Field(
        default=30, ge=1, description="Failed-auth requests an IP may make per minute."
    )
    console_signup: bool = Field(
        default=True, description="Let anyone create an account in the web console."
    )
    console_session_hours: float = Field(
        default=24 * 7, gt=0, description="A console login lasts this long after its last use."
    )
    console_session_max_days: float = Field(
        default=30, gt=0, description="A console login ends this long after it began, used or not."
    )
    console_login_per_ip_per_minute: int = Field(default=10, ge=1)
    console_login_per_account_per_minute: int = Field(default=5, ge=1)
    master_key: str | None = Field(
        default=None,
        description="Fernet key that encrypts key signing secrets; default: generated in the "
        "data dir. Every node must share it.",
    )

    webhook_max_attempts: int = Field(
        default=6, ge=1, le=20, description="Deliveries tried per task webhook before giving up."
    )
    webhook_backoff_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Wait before the 2nd webhook attempt; it doubles after each failure "
        "(6 attempts span about 10 minutes).",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Time a webhook receiver has to answer one attempt."
    )
    webhook_allow: list[str] = Field(
        default_factory=list,
        description='Networks (CIDRs, e.g. ["10.0.0.0/8"]) webhook URLs may reach although '
        "they are not public.",
    )
    webhook_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often API nodes look for due webhook deliveries (jobs finished by "
        "workers in other processes; in-process finishes are delivered at once).",
    )

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        return _no_duplicates(models, "model", "models")

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: list[ChannelSpec]) -> list[ChannelSpec]:
        return _no_duplicates(channels, "channel", "channels")

    @model_validator(mode="after")
    def _relayed_models(self) -> Settings:
        """Every channel a model names exists; the model learns its channels' types."""
        by_name = {c.name: c for c in self.channels}
        known = ", ".join(by_name) or "none configured"
        linked = []
        for i, model in enumerate(self.models):
            for name in model.channels:
                if name not in by_name:
                    raise ValueError(
                        f"[[models]] #{i + 1} ({model.name}): channels: unknown channel "
                        f"{name!r}; [[channels]] names: {known}"
                    )
            types = [by_name[name].type for name in model.channels]
            linked.append(model.model_copy(update={"channel_types": types}) if types else model)
        self.models = linked
        return self

    def channel(self, name: str) -> ChannelSpec | None:
        for channel in self.channels:
            if channel.name == name:
                return channel
        return None

    @field_validator("fetch_image_allow", "webhook_allow")
    @classmethod
    def _networks(cls, cidrs: list[str]) -> list[str]:
        """Each entry a network ("10.0.0.0/8") or one address, written back normalised."""
        try:
            return [str(ipaddress.ip_network(c.strip(), strict=False)) for c in cidrs]
        except ValueError as exc:
            raise ValueError(f"not a network (CIDR) or address: {exc}") from exc

    @field_validator("loras")
    @classmethod
    def _unique_loras(cls, loras: list[LoraSpec]) -> list[LoraSpec]:
        return _no_duplicates(loras, "LoRA", "loras")

    @model_validator(mode="after")
    def _known_plan(self) -> Settings:
        named = [("default_plan", self.default_plan)]
        if "paid_plan" in self.model_fields_set:  # else plans without "paid" keep working
            named.append(("paid_plan", self.paid_plan))
        for field, plan in named:
            if plan not in self.plans:
                raise ValueError(f"{field} {plan!r} is not one of plans: {', '.join(self.plans)}")
        return self

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'pixgate.db').resolve()}"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def models_dir(self) -> Path:
        return self.models_path or self.data_dir / "models"


class ConfigError(ValueError):
    """An invalid configuration; the message names each bad entry and field, without the
    values given."""


def describe_errors(exc: ValidationError, raw: dict[str, Any] | None = None) -> str:
    """A config's validation errors, one per line, naming the table entry and field
    ("[[channels]] #2 (sf): type: Input should be ...") and never echoing the values given,
    which may be credentials."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        where = ".".join(loc) or "config"
        if (
            len(loc) >= 2
            and loc[0] in ("models", "channels", "loras", "styles")
            and loc[1].isdigit()
        ):
            index = int(loc[1])
            entries = (raw or {}).get(loc[0])
            name = ""
            if (
                isinstance(entries, list)
                and index < len(entries)
                and isinstance(entries[index], dict)
            ):
                name = f" ({entries[index].get('name') or entries[index].get('id') or '?'})"
            where = f"[[{loc[0]}]] #{index + 1}{name}" + (
                f": {'.'.join(loc[2:])}" if loc[2:] else ""
            )
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "\n".join(lines)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from `overrides` > env > TOML file > defaults.

    The config file may also come from `PIXGATE_CONFIG`. Unset overrides (None) are ignored
    so CLI options only win when given.
    """
    path = config_file or os.environ.get("PIXGATE_CONFIG")
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    values = {k: v for k, v in overrides.items() if v is not None}

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
            return tuple(sources)

    try:
        return _FileSettings(**values)
    except ValidationError as exc:
        raw: dict[str, Any] = {}
        if path is not None:
            import tomllib

            with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
                raw = tomllib.loads(Path(path).read_text())
        raise ConfigError(describe_errors(exc, {**raw, **values})) from None
