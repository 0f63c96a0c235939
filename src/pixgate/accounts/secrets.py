"""The server's own secrets: the master key that encrypts secrets pixgate must read back
(key signing secrets; Fernet: AES-128-CBC + HMAC-SHA256), and the signing secret of image
URLs and webhook secrets. Each is configured, or created once in the data dir."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


def server_secret(data_dir: Path, configured: str | None = None) -> bytes:
    """The HMAC secret of image URLs and account webhook secrets: the configured one
    (scaled deployments share it via PIXGATE_SIGNING_SECRET), else `<data_dir>/signing.key`,
    created once and kept across restarts so old URLs stay valid."""
    if configured:
        return configured.encode()
    return _read_or_create(data_dir / "signing.key", lambda: secrets.token_hex(32).encode())


def _read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The secret in `path`, written there first (mode 0600) if there is none yet; when two
    processes race, both read the one that was written first."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(make())
    return path.read_bytes().strip()


class SecretBox:
    def __init__(self, master_key: bytes):
        self._fernet = Fernet(master_key)

    @classmethod
    def for_data_dir(cls, data_dir: Path, configured: str | None = None) -> SecretBox:
        """The configured master key, else `<data_dir>/master.key`, created on first use."""
        if configured:
            return cls(configured.encode())
        return cls(_read_or_create(data_dir / "master.key", Fernet.generate_key))

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted: wrong master key?") from exc
