"""Tenants tasks: thin wrappers around tenants.metering and tenants.invoicing, sent to queue `rollup`."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from tenants import invoicing, metering

__all__ = ["invoices_generate_for_month_task", "tenant_usage_refresh_task"]


@shared_task(name="tenants.tenant_usage_refresh_task", soft_time_limit=240, time_limit=300)
def tenant_usage_refresh_task(since: str | None = None) -> int:
    return metering.tenant_usage_refresh(since=dt.datetime.fromisoformat(since) if since else None)


@shared_task(name="tenants.invoices_generate_for_month_task", soft_time_limit=540, time_limit=600)
def invoices_generate_for_month_task(period_start: str | None = None) -> int:
    """Drafts for a month (default: the previous UTC month); issuing stays a person's decision."""
    if period_start:
        start = dt.date.fromisoformat(period_start)
    else:
        start = (timezone.now().astimezone(dt.UTC).date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    return invoicing.invoices_generate_for_month(period_start=start)
