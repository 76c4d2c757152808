"""Optional API key on inference routes: `Authorization: Bearer <key>`, compared in constant time."""

import hmac
from typing import Annotated

from fastapi import Depends, Header
from fastapi.security import HTTPBearer

from frugalml.serve.errors import ApiError


def check_api_key(authorization: str | None, api_key: str | None) -> None:
    """Raise a 401 ApiError unless `authorization` is `Bearer <api_key>` (or no key is set)."""
    if not api_key:
        return
    scheme, _, token = (authorization or "").partition(" ")
    # Header values arrive decoded as latin-1; compare the raw bytes.
    given = token.encode("latin-1") if scheme.lower() == "bearer" else b""
    if not hmac.compare_digest(given, api_key.encode()):
        raise ApiError(
            401,
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def api_key_dependencies(api_key: str | None) -> list:
    """Route dependencies enforcing `api_key` (none when no key is configured)."""
    if not api_key:
        return []
    # HTTPBearer declares the security scheme in the OpenAPI document; the check is check_api_key's.
    bearer = HTTPBearer(auto_error=False, description="The server's API key.")

    async def require_key(
        _: Annotated[object, Depends(bearer)],
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        check_api_key(authorization, api_key)

    return [Depends(require_key)]
