"""Console passwords: argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile).

API keys are random and hashed with SHA-256 (`accounts.keys`); passwords are chosen by
people, so they are stretched. Only the encoded hash (algorithm, parameters, salt, digest)
is stored, in `users.password_hash`.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 256  # argon2 takes any length; a bound keeps one login from costing much

_hasher = PasswordHasher()
# Verified against when the account does not exist, so that a login for an unknown name
# takes as long as one with a wrong password (no timing oracle for account existence).
_DUMMY = _hasher.hash("pixgate-no-such-account")


def check_strength(password: str) -> str | None:
    """Why `password` is not acceptable (a message key of pixgate.messages_console), or None."""
    if len(password) < MIN_LENGTH:
        return "password_too_short"
    if len(password) > MAX_LENGTH:
        return "password_too_long"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches the stored hash; False (after the same work) when the
    account has no password."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether the hash was made with weaker parameters than today's (rehash at login)."""
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True
