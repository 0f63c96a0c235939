"""Asynchronous tasks: what a client asks for when it does not wait for its images.

A task is a job (the job table is the queue and the record); these options ride on the
job's row, written in the same insert that admits it, so an accepted task never loses its
webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pixgate.accounts.secrets import SecretBox


@dataclass(frozen=True)
class TaskOptions:
    """How the client wants to see the result: rendered as `response_format` with links
    under `base_url`, and POSTed to `webhook_url` (signed with `webhook_secret`, else the
    account's webhook secret) when the task finishes."""

    response_format: str = "url"
    base_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None

    def columns(self, box: SecretBox, account_secret: str) -> dict[str, Any]:
        """The job columns that record these options (the secret encrypted)."""
        values: dict[str, Any] = {
            "task_options": {"response_format": self.response_format, "base_url": self.base_url}
        }
        if self.webhook_url is not None:
            values.update(
                webhook_url=self.webhook_url,
                webhook_secret_enc=box.encrypt(self.webhook_secret or account_secret),
                webhook_status="pending",
                webhook_attempts=0,
            )
        return values
