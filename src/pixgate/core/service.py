"""The core every dialect talks to: authenticate, resolve a model, submit a request and
wait for its job. Dialects never touch the database, the engine or billing directly."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from pixgate.accounts import keys, users
from pixgate.accounts.keys import Caller
from pixgate.accounts.limits import RateLimiter
from pixgate.accounts.replay import ReplayGuard
from pixgate.accounts.secrets import SecretBox
from pixgate.accounts.usage import remaining_images
from pixgate.core import policy
from pixgate.db import Database, Job, User
from pixgate.errors import PixgateError, invalid
from pixgate.metrics import Metrics
from pixgate.queue.jobs import Admission, JobQueue
from pixgate.queue.tasks import TaskOptions
from pixgate.queue.webhooks import WebhookDeliverer, account_secret
from pixgate.settings import Plan, Settings
from pixgate.spec.catalog import Catalog, ModelSpec, Style
from pixgate.spec.request import GenerationRequest, LoraRef, Watermark
from pixgate.storage.local import LocalStorage, load_or_create_secret

log = structlog.get_logger("pixgate.core.service")


@dataclass(frozen=True)
class GeneratedImage:
    path: str
    expires: int
    seed: int
    format: str


@dataclass(frozen=True)
class SignedCaller:
    caller: Caller
    secret: str | None  # None: the key has no signing secret


@dataclass(frozen=True)
class GenerationResult:
    job_id: str
    seed: int
    inference_seconds: float
    images: list[GeneratedImage]
    prompt: str = ""  # the prompt generated from (after rewriting, when asked for)


class Pixgate:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.catalog = Catalog.build(settings.models, settings.demo, settings.default_model)
        self.db = Database(settings.db_url)
        self.metrics = Metrics()
        secret = (
            settings.signing_secret.encode()
            if settings.signing_secret
            else load_or_create_secret(settings.data_dir)
        )
        self.storage = LocalStorage(settings.files_dir, secret, settings.url_ttl_seconds)
        self.queue = JobQueue(
            self.db, settings.max_queue, settings.billing_enabled, settings.currency
        )
        self.box = SecretBox.for_data_dir(settings.data_dir, settings.master_key)
        self.limiter = RateLimiter(
            settings.redis_url,
            settings.global_requests_per_second,
            settings.unauthenticated_per_ip_per_minute,
        )
        self.replays = ReplayGuard(settings.redis_url)
        self.worker = None
        # The task object webhooks POST; set by the API app, so API nodes deliver webhooks
        # and standalone workers do not.
        self.task_renderer: Callable[[Job], dict[str, Any]] | None = None
        self.webhooks: WebhookDeliverer | None = None
        self._background: list[asyncio.Task] = []
        self.accepting = False

    async def start(self, with_worker: bool | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await self.db.migrate()
        if with_worker if with_worker is not None else self.settings.run_workers:
            from pixgate.queue.worker import Worker

            self.worker = Worker(
                self.settings, self.catalog, self.queue, self.storage, self.metrics
            )
            self.worker.start()
        self._background.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        if self.task_renderer is not None:
            self.webhooks = WebhookDeliverer(self.db, self.box, self.settings, self.task_renderer)
            self.queue.finish_listeners.append(self.webhooks.job_finished)
            self._background.append(asyncio.create_task(self.webhooks.run(), name="webhooks"))
        self.accepting = True

    async def stop(self) -> None:
        self.accepting = False
        if self.worker is not None:
            await self.worker.stop(self.settings.shutdown_grace_seconds)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.replays.close()
        await self.db.dispose()

    async def _housekeeping(self) -> None:
        """Sweep expired files and rescue jobs whose worker vanished."""
        while True:
            try:
                removed = await asyncio.to_thread(self.storage.sweep)
                requeued, failed = await self.queue.reap_lapsed(self.settings.max_attempts)
                if removed or requeued or failed:
                    log.info(
                        "housekeeping",
                        files_removed=removed,
                        jobs_requeued=requeued,
                        jobs_failed=failed,
                    )
            except Exception:
                log.exception("housekeeping failed")
            await asyncio.sleep(self.settings.sweep_interval_seconds)

    # --- what dialects call ------------------------------------------------------------
    async def authenticate(self, raw_key: str | None, ip: str | None = None) -> Caller:
        """The caller's key and account. An IP that keeps failing gets 429 before its keys
        are even looked at."""
        return await self._counting_failures(ip, lambda: keys.authenticate(self.db, raw_key, ip))

    async def _counting_failures(
        self, ip: str | None, lookup: Callable[[], Awaitable[Caller]]
    ) -> Caller:
        """Run a key lookup behind the per-IP failed-authentication limit, counting a 401."""
        await self.limiter.check_ip(ip)
        try:
            return await lookup()
        except PixgateError as exc:
            if exc.status == 401:
                await self.limiter.failed_auth(ip)
            raise

    def plan(self, user: User) -> tuple[str, Plan]:
        """The user's plan, or the default plan if theirs is no longer configured."""
        name = user.plan if user.plan in self.settings.plans else self.settings.default_plan
        return name, self.settings.plans[name]

    def new_user_grant(self) -> int:
        """Minor units a new user starts with: free_grant_images at the default price."""
        return self.settings.free_grant_images * self.default_model().price_minor

    async def create_user(
        self, name: str, role: str = "user", plan: str | None = None, actor: str | None = None
    ) -> User:
        plan = plan or self.settings.default_plan
        if plan not in self.settings.plans:
            raise ValueError(f"plan must be one of {', '.join(self.settings.plans)}")
        return await users.create_user(
            self.db, users.NewUser(name, role, plan, self.new_user_grant()), actor
        )

    async def api_usage(self, key_id: str, spec: ModelSpec) -> dict[str, int | None]:
        """seed 000's api_usage for a key: images used, and how many its cap and the
        account's balance still allow at this model's price (None: unlimited)."""
        caller = await keys.authenticate_by_id(self.db, key_id)
        price = spec.price_minor if self.settings.billing_enabled else 0
        return {
            "used_images": caller.key.images_used,
            "remaining_images": remaining_images(caller.key, caller.user, price),
        }

    def model(self, name: str) -> ModelSpec:
        spec = self.catalog.get(name)
        if spec is None:
            raise PixgateError(
                "model_not_found",
                param="model",
                args_={"model": name, "available": ", ".join(self.catalog.names())},
            )
        return spec

    def style(self, style_id: str) -> Style:
        for style in self.settings.styles:
            if style.id == style_id:
                return style
        known = ", ".join(s.id for s in self.settings.styles) or "none configured"
        raise invalid(
            "style",
            f"unknown style {style_id!r}; known: {known}",
            f"未知风格 {style_id!r};可选:{known}",
        )

    def default_model(self) -> ModelSpec:
        return self.catalog.default()

    async def submit(
        self,
        caller: Caller,
        req: GenerationRequest,
        request_id: str | None = None,
        task: TaskOptions | None = None,
    ) -> str:
        """Admit (rate limit, model allow-list, in-flight limit, cap and credit) and queue;
        return the job id at once. Raise PixgateError when refused (nothing is charged).
        `task`: an asynchronous client's options (result format, webhook), kept on the job."""
        if not self.accepting:
            raise PixgateError("shutting_down", headers={"Retry-After": "5"})
        self.moderate(req)
        spec = self.model(req.model)
        policy.check_loras(self.settings, req, spec)
        if req.prompt_enhancement:
            req = await self.enhance_prompt(req)
        allowed = caller.key.allowed_models
        if allowed and spec.name not in allowed:
            raise PixgateError(
                "model_not_allowed",
                param="model",
                args_={"model": spec.name, "allowed": ", ".join(allowed)},
            )
        plan_name, plan = self.plan(caller.user)
        await self.limiter.check_request(caller.key.id, plan_name, plan)
        who = Admission(caller.key, plan_name, plan.concurrency)
        columns = task.columns(self.box, self.webhook_secret(caller)) if task else None
        return await self.queue.enqueue(req, spec, who, request_id, columns)

    def webhook_secret(self, caller: Caller) -> str:
        """The account's webhook signing secret (used when a task names none)."""
        return account_secret(self.storage.secret, caller.user.id)

    def lora_refs(self, value: str | list[LoraRef] | None) -> list[LoraRef]:
        return policy.lora_refs(self.settings, value)

    async def enhance_prompt(self, req: GenerationRequest) -> GenerationRequest:
        """The prompt-rewriting hook every dialect's switch reaches (`prompt_enhancement`,
        Volcengine's `use_pre_llm`, aichat's `as_prompt`). No rewriter is configured in this
        release, so the prompt is used as sent; the request keeps the flag, and responses
        that report the rewritten prompt (Volcengine's `rephraser_result`) report this one."""
        return req

    def moderate(self, req: GenerationRequest) -> None:
        policy.moderate(self.settings, req)

    def moderate_text(self, param: str, text: str | None) -> None:
        policy.moderate_text(self.settings, param, text)

    async def wait_result(self, job_id: str, request_id: str | None = None) -> GenerationResult:
        """Wait for a submitted job (failing it after the generation timeout) and return
        its images, or raise the PixgateError its failure maps to."""
        timeout = self.settings.generation_timeout_seconds
        # With a worker in this process, results arrive by hand-over; polling is only for
        # workers elsewhere, so it can start slow.
        job = await self.queue.wait(
            job_id,
            timeout,
            max_poll=self.settings.worker_poll_seconds * 2,
            first_poll=0.5 if self.worker is not None else 0.05,
        )
        if job is not None and not job.finished:
            await self.queue.fail(
                job_id,
                "generation_timeout",
                f"exceeded {timeout:g} s",
                statuses=("queued", "running"),
            )
            job = await self.queue.get(job_id)
        assert job is not None
        self.metrics.jobs_finished.labels(model=job.model, status=job.status).inc()
        if job.status != "succeeded":
            raise self.job_error(job, request_id)
        return job_result(job)

    async def generate(
        self, caller: Caller, req: GenerationRequest, request_id: str | None = None
    ) -> GenerationResult:
        """Submit and wait: the synchronous path of every dialect."""
        job_id = await self.submit(caller, req, request_id)
        return await self.wait_result(job_id, request_id)

    async def task(self, caller: Caller, job_id: str) -> Job:
        """A job of the caller's account (asynchronous task APIs); 404 for anyone else's,
        so task ids cannot be probed."""
        job = await self.queue.get(job_id)
        if job is None or job.user_id != caller.user.id:
            raise PixgateError("job_not_found", args_={"job": job_id})
        return job

    async def cancel_task(self, caller: Caller, job_id: str) -> Job:
        """Cancel a queued or running job of the caller's account and refund it."""
        await self.task(caller, job_id)
        if not (await self.queue.cancel(job_id, caller.user.id)).settled:
            job = await self.queue.get(job_id)
            raise PixgateError("job_finished", args_={"job": job_id, "status": job.task_status})
        return await self.queue.get(job_id)

    async def authenticate_signed(self, access_key: str, ip: str | None = None) -> SignedCaller:
        """The caller and signing secret for a request signed with a key's id (the access
        key of Volcengine V4 signing, aichat's md5 sign). The caller must still verify the
        signature with the secret, and refuse a key without one (secret None)."""
        caller = await self._counting_failures(
            ip, lambda: keys.authenticate_id(self.db, access_key, ip)
        )
        return SignedCaller(caller, self.signing_secret(caller))

    def signing_secret(self, caller: Caller) -> str | None:
        """The key's signing secret in clear, or None when the key has none."""
        return self.box.decrypt(caller.key.secret_enc) if caller.key.secret_enc else None

    async def signature_failed(self, ip: str | None) -> None:
        """Count a bad signature like a bad key (per-IP failed-auth limit)."""
        await self.limiter.failed_auth(ip)

    async def first_use_of_signature(self, signature: str, ttl_seconds: float) -> bool:
        """Remember a signed request's signature for `ttl_seconds` (until its timestamp
        would be refused anyway); False if it was already seen: the request is a replay.
        Shared by all API nodes through Redis when `redis_url` is set."""
        return await self.replays.first_use(signature, ttl_seconds)

    async def marked_copy(self, result: GenerationResult, mark: Watermark) -> GenerationResult:
        """A finished job's images with a visible mark drawn on copies, for APIs that
        choose the mark when fetching a result (Volcengine's CVSync2AsyncGetResult). The
        originals stay as they are; copies keep their expiry. Nothing is charged."""
        self.moderate_text("watermark", mark.text)
        images = await asyncio.to_thread(self._draw_marks, result.images, mark)
        return dataclasses.replace(result, images=images)

    def _draw_marks(self, images: list[GeneratedImage], mark: Watermark) -> list[GeneratedImage]:
        import hashlib
        import io
        from pathlib import PurePosixPath

        from PIL import Image

        from pixgate.processing import postprocess
        from pixgate.processing.encode import encode_image

        tag = hashlib.sha256(mark.model_dump_json().encode()).hexdigest()[:12]
        copies = []
        for image in images:
            with Image.open(io.BytesIO(self.storage.read(image.path))) as opened:
                marked = postprocess.draw_watermark(opened, mark)
            data = encode_image(marked, image.format, self.settings.png_compress_level)
            name = PurePosixPath(image.path)
            stored = self.storage.save(f"{name.stem}-mark-{tag}{name.suffix}", data)
            copies.append(GeneratedImage(stored.path, image.expires, image.seed, image.format))
        return copies

    def job_error(self, job: Job, request_id: str | None = None) -> PixgateError:
        """The PixgateError a failed, cancelled or timed-out job is reported as."""
        code = job.error_code or "generation_failed"
        if code == "generation_timeout":
            timeout = f"{self.settings.generation_timeout_seconds:g}"
            return PixgateError(code, args_={"timeout": timeout})
        if code in ("invalid_sampler", "invalid_lora"):  # found once the model is loaded
            detail = job.error_message or ""
            return PixgateError(
                "invalid_value",
                param=code.removeprefix("invalid_"),
                args_={"detail": detail, "detail_zh": detail},
            )
        if code in ("model_unavailable", "model_not_found"):
            return PixgateError(
                "model_unavailable",
                param="model",
                args_={
                    "model": job.model,
                    "detail": job.error_message or "",
                    "detail_zh": job.error_message or "",
                },
                headers={"Retry-After": "30"},
            )
        if code == "cancelled":
            return PixgateError("job_finished", args_={"job": job.id, "status": "cancelled"})
        return PixgateError("generation_failed", args_={"request_id": request_id or job.id})


def job_result(job: Job) -> GenerationResult:
    """A succeeded job's images."""
    images = [
        GeneratedImage(path=i["path"], expires=i["expires"], seed=i["seed"], format=i["format"])
        for i in job.images or []
    ]
    return GenerationResult(
        job.id,
        job.seed,
        job.inference_seconds or 0.0,
        images,
        (job.request or {}).get("prompt", ""),
    )
