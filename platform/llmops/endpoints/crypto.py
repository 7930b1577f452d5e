"""Encryption of hosted-provider API keys at rest: Fernet (AES-128-CBC + HMAC-SHA256) with a
key derived from SECRET_KEY by HKDF, so the database alone never reveals a provider key.

Rotating SECRET_KEY makes stored provider keys unreadable (decrypt raises ProviderKeyError):
re-enter them on the Endpoints page.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

# Binds the derived key to this one use: the same SECRET_KEY derives other keys elsewhere.
HKDF_INFO = b"llmops.endpoints.hosted-provider-api-key.v1"


class ProviderKeyError(ValueError):
    """A stored key that cannot be decrypted (SECRET_KEY changed, or the value was altered)."""


@functools.lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return _fernet(settings.SECRET_KEY).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet(settings.SECRET_KEY).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ProviderKeyError(
            "The stored API key cannot be decrypted (was DJANGO_SECRET_KEY changed?); enter it again."
        ) from exc
