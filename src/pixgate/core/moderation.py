"""Moderation as the core runs it: the blocked-term list (reloaded on SIGHUP or by the
admin), the dialect a request came in through (set by each dialect's router), and the log
of refusals the admin reviews. Matching itself is processing/moderation.py; the checks run
in the pre chain (processing/pre.py) and, for output images, in the worker."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime

import structlog

from pixgate.accounts import moderation as log_table
from pixgate.accounts.keys import Caller
from pixgate.accounts.moderation import Refusal, RefusalView
from pixgate.db import Database
from pixgate.errors import PixgateError
from pixgate.processing.moderation import TermList
from pixgate.settings import Settings

log = structlog.get_logger("pixgate.core.moderation")

# The API a request came in through: "openai", "yuecheng", "volcengine", "aichat"; set by
# a dependency of each dialect's router, read when a refusal is logged and kept on the job.
current_dialect: ContextVar[str] = ContextVar("pixgate_dialect", default="api")


class Moderation:
    def __init__(self, settings: Settings, db: Database):
        self._db = db
        self.terms = TermList(settings.blocked_terms, settings.blocked_terms_file)

    def reload(self) -> int:
        """Read `blocked_terms_file` again; the number of terms now in force. On an error
        the previous list stays in force and ValueError names the file."""
        count = self.terms.reload()
        log.info("blocked terms reloaded", terms=count)
        return count

    def reload_quietly(self) -> None:
        """`reload` for a signal handler: an error is logged, the old list stays."""
        try:
            self.reload()
        except ValueError as exc:
            log.error("blocked terms not reloaded; the previous list stays", error=str(exc))

    async def refused(self, caller: Caller | None, err: PixgateError) -> None:
        """Log `err` when it is a content refusal by a blocked term (anything else is not
        moderation's). Never raises: the client gets its refusal either way."""
        if err.code != "content_refused" or "term" not in err.args_:
            return
        refusal = Refusal(
            key_id=caller.key.id if caller else None,
            user_id=caller.user.id if caller else None,
            dialect=current_dialect.get(),
            field=err.param or "prompt",
            term=str(err.args_["term"]),
        )
        try:
            await log_table.record(self._db, refusal)
        except Exception:
            log.exception("could not log a moderation refusal")

    async def recent(
        self,
        limit: int = 100,
        key_id: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
    ) -> list[RefusalView]:
        return await log_table.recent(self._db, limit, key_id, since, before_id)
