"""A small fixed-window rate limit on the cache, for HTML forms (DRF endpoints use DRF throttles)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

PERIODS = {"s": 1, "sec": 1, "min": 60, "m": 60, "hour": 3600, "h": 3600, "day": 86400, "d": 86400}
DEFAULT_RATES = {"signup": "10/hour", "token": "30/hour"}


def parse_rate(rate: str) -> tuple[int, int]:
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip().lower()]


def client_ip(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites REMOTE_ADDR.
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def hit(scope: str, ident: str) -> bool:
    """Count one attempt; False when the scope's limit for this window is used up."""
    rates = {**DEFAULT_RATES, **getattr(settings, "HTML_RATE_LIMITS", {})}
    limit, period_s = parse_rate(rates[scope])
    window = int(time.time() // period_s)
    key = f"rl:{scope}:{ident}:{window}"
    cache.add(key, 0, timeout=period_s + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=period_s + 5)
        count = 1
    return count <= limit


def rate_limited(scope: str, methods: tuple[str, ...] = ("POST",)) -> Callable:
    """Limit a view's requests of `methods` per client address (token links are GETs, forms are POSTs)."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method in methods and not hit(scope, client_ip(request)):
                return TemplateResponse(request, "tenants/rate_limited.html", status=429)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
