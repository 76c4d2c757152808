"""Optional API key on inference routes: `Authorization: Bearer <key>`, compared in constant time."""

import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from frugalml.serve.errors import ApiError


def api_key_dependencies(api_key: str | None) -> list:
    """Route dependencies enforcing `api_key` (none when no key is configured)."""
    if not api_key:
        return []
    expected = api_key.encode()
    bearer = HTTPBearer(auto_error=False, description="The server's API key.")

    async def require_key(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        # Header values arrive decoded as latin-1; compare the raw bytes.
        given = credentials.credentials.encode("latin-1") if credentials else b""
        if not hmac.compare_digest(given, expected):
            raise ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return [Depends(require_key)]
