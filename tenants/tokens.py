"""Signed, expiring tokens for email links (confirmation, invitations) — nothing stored but what they point at."""

from __future__ import annotations

from django.core import signing

EMAIL_CONFIRM_SALT = "tenants.email-confirm"
INVITATION_SALT = "tenants.invitation"
EMAIL_CONFIRM_MAX_AGE_S = 3 * 24 * 3600
INVITATION_MAX_AGE_S = 7 * 24 * 3600


class BadToken(Exception):
    """The link is forged, altered or expired; the message is safe to show."""


def make_token(payload: dict, *, salt: str) -> str:
    return signing.dumps(payload, salt=salt, compress=True)


def read_token(token: str, *, salt: str, max_age_s: int) -> dict:
    try:
        payload = signing.loads(token, salt=salt, max_age=max_age_s)
    except signing.SignatureExpired:
        raise BadToken("This link has expired. Ask for a new one.") from None
    except signing.BadSignature:
        raise BadToken("This link is not valid. Copy the whole link from the email.") from None
    if not isinstance(payload, dict):
        raise BadToken("This link is not valid. Copy the whole link from the email.")
    return payload
