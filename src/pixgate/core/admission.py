"""Admission: what a request may ask for (models, styles, LoRAs), the checks it passes
before it costs anything (moderation, the prompt hook, the model allow-list, rate and
in-flight limits, cap and credit), its input images, and queueing it as a job."""

from __future__ import annotations

from PIL import Image

from pixgate.accounts.keys import Caller
from pixgate.accounts.limits import RateLimiter
from pixgate.accounts.secrets import SecretBox
from pixgate.core import policy
from pixgate.core.identity import Identity
from pixgate.core.moderation import Moderation, current_dialect
from pixgate.errors import PixgateError, invalid
from pixgate.processing import inputs, pre
from pixgate.queue.jobs import Admission as Admitted
from pixgate.queue.jobs import JobQueue
from pixgate.queue.tasks import TaskOptions
from pixgate.settings import LoraSpec, Settings
from pixgate.spec.catalog import Catalog, ModelSpec, Style
from pixgate.spec.request import GenerationRequest, LoraRef
from pixgate.storage import Storage


class AdmissionDesk:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        queue: JobQueue,
        storage: Storage,
        box: SecretBox,
        limiter: RateLimiter,
        identity: Identity,
        moderation: Moderation,
    ):
        self._settings = settings
        self._catalog = catalog
        self._queue = queue
        self._storage = storage
        self._box = box
        self._limiter = limiter
        self._identity = identity
        self._moderation = moderation
        self._pre = pre.PreContext(settings, moderation.terms)
        self._open = False

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        """Refuse new requests (503 with Retry-After) while the server drains."""
        self._open = False

    @property
    def accepting(self) -> bool:
        return self._open

    # --- what may be asked for -----------------------------------------------------------
    def model(self, name: str) -> ModelSpec:
        """A catalog model by its public name, or 404 listing the available ones."""
        spec = self._catalog.get(name)
        if spec is None:
            raise PixgateError(
                "model_not_found",
                param="model",
                args_={"model": name, "available": ", ".join(self._catalog.names())},
            )
        return spec

    def find_model(self, name: str) -> ModelSpec | None:
        """A catalog model by its public name, or None (for dialects with their own error)."""
        return self._catalog.get(name)

    def default_model(self) -> ModelSpec:
        return self._catalog.default()

    def models(self) -> list[ModelSpec]:
        """The catalog, in its order."""
        return list(self._catalog)

    def model_names(self) -> list[str]:
        return list(self._catalog.names())

    def styles(self) -> list[Style]:
        return list(self._settings.styles)

    def style(self, style_id: str) -> Style:
        for style in self._settings.styles:
            if style.id == style_id:
                return style
        known = ", ".join(s.id for s in self._settings.styles) or "none configured"
        raise invalid(
            "style",
            f"unknown style {style_id!r}; known: {known}",
            f"未知风格 {style_id!r};可选:{known}",
        )

    def loras(self) -> list[LoraSpec]:
        return list(self._settings.loras)

    def lora_refs(self, value: str | list[LoraRef] | None) -> list[LoraRef]:
        return policy.lora_refs(self._settings, value)

    def webhook_allow(self) -> list[str]:
        """Networks webhook URLs may point into besides public addresses (operator's list)."""
        return list(self._settings.webhook_allow)

    # --- checks before anything is charged -----------------------------------------------
    async def moderate(self, caller: Caller | None, req: GenerationRequest) -> None:
        """Blocked terms in the prompt, negative prompt and watermark (the pre chain's
        `moderate` step, for dialects that check before storing an upload); a refusal is
        logged."""
        try:
            pre.moderate(self._moderation.terms, req)
        except PixgateError as err:
            await self._moderation.refused(caller, err)
            raise

    async def moderate_text(self, caller: Caller | None, param: str, text: str | None) -> None:
        """Blocked terms in one text (a mark chosen when fetching a result); logged."""
        try:
            pre.moderate_text(self._moderation.terms, param, text)
        except PixgateError as err:
            await self._moderation.refused(caller, err)
            raise

    # --- input images --------------------------------------------------------------------
    async def input_image(self, value: str, field: str) -> Image.Image:
        """An input image sent as a data URI, base64 or (when allowed) an http(s) URL."""
        return await inputs.image_from_field(value, field, self._settings)

    async def save_input(self, image: Image.Image, role: str, mode: str | None = None) -> str:
        """Keep a checked input image in storage for the worker (converted to `mode`, in a
        worker thread); returns its path."""
        return await inputs.save_input_async(self._storage, image, role, mode)

    # --- admitting -----------------------------------------------------------------------
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
        if not self._open:
            raise PixgateError("shutting_down", headers={"Retry-After": "5"})
        try:  # moderation, the prompt rewriter, moderation of the rewritten prompt
            req = await pre.run_pre(req, self._pre)
        except PixgateError as err:
            await self._moderation.refused(caller, err)
            raise
        req = req.model_copy(
            update={
                "dialect": current_dialect.get(),
                "watermark": policy.visible_mark(self._settings, caller.key, req),
            }
        )
        spec = self.model(req.model)
        policy.check_loras(self._settings, req, spec)
        allowed = caller.key.allowed_models
        if allowed and spec.name not in allowed:
            raise PixgateError(
                "model_not_allowed",
                param="model",
                args_={"model": spec.name, "allowed": ", ".join(allowed)},
            )
        plan_name, plan = self._identity.plan(caller.user)
        await self._limiter.check_request(caller.key.id, plan_name, plan)
        who = Admitted(caller.key, plan_name, plan.concurrency)
        secret = self._identity.webhook_secret(caller)
        columns = task.columns(self._box, secret) if task else None
        return await self._queue.enqueue(req, spec, who, request_id, columns)
