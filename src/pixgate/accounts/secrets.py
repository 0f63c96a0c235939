"""Encryption at rest for secrets pixgate must read back (key signing secrets), with a
server master key (Fernet: AES-128-CBC + HMAC-SHA256)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, master_key: bytes):
        self._fernet = Fernet(master_key)

    @classmethod
    def for_data_dir(cls, data_dir: Path, configured: str | None = None) -> SecretBox:
        """The configured master key, else `<data_dir>/master.key`, created on first use."""
        if configured:
            return cls(configured.encode())
        path = data_dir / "master.key"
        if not path.is_file():
            data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted: wrong master key?") from exc
