"""Property-based tests of outside input the access-token check parses: any bearer string,
and tokens signed with the right secret but carrying any claims. Whatever comes in is a
:class:`Grant` or a 401 ``BadRequest``, never another exception; only what was minted with the
secret ever passes."""

from __future__ import annotations

import time
from typing import Any

import jwt
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.errors import BadRequest
from bridge.server.auth import Grant, mint, verify
from tests.test_fuzz import JSON

SECRET = "fuzz-secret-0123456789abcdef0123456789"


def outcome(token: str) -> Grant | str:
    try:
        return verify(SECRET, token, max_ttl=3600)
    except BadRequest as exc:
        assert exc.status == 401 and exc.code in ("invalid_token", "token_expired")
        return exc.code


@given(token=st.text(max_size=300) | st.binary(max_size=200).map(lambda b: b.hex()))
def test_any_bearer_string_is_refused_cleanly(token: str) -> None:
    assert isinstance(outcome(token), str)


@given(claims=st.dictionaries(st.text(max_size=10), JSON, max_size=6), grants=JSON)
def test_signed_tokens_with_any_claims_are_a_grant_or_a_401(
    claims: dict[str, Any], grants: Any
) -> None:
    now = int(time.time())
    full = {"iss": "rtc-bridge", "sub": "s", "iat": now, "exp": now + 60, **claims}
    full["grants"] = grants
    result = outcome(jwt.encode(full, SECRET, algorithm="HS256"))
    if isinstance(result, Grant):
        assert result.subject and result.expires_at is not None
        assert result.admin in (True, False)


@given(tampered=st.integers(0, 200), char=st.sampled_from("AaZz09-_"))
def test_a_changed_character_never_passes(tampered: int, char: str) -> None:
    good = mint(SECRET, 60, subject="alice", admin=False)
    index = tampered % len(good)
    if good[index] == char or good[index] == ".":
        return
    forged = good[:index] + char + good[index + 1 :]
    result = outcome(forged)
    # Base64url padding bits may make a change decode to the same bytes: then it is the same
    # token; anything else is refused.
    assert isinstance(result, str) or (result.subject == "alice" and not result.admin)
