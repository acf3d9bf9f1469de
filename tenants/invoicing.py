"""Monthly invoices (writes). DESIGN.md §5.4: Decimal money, prices per million tokens, ONE rounding per line
(half-even, the currency's minor unit), total = sum of the lines, an issued invoice never changes, late usage
of an issued month becomes an adjustment line on the next invoice, and generating twice changes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from factory_portal.exceptions import ServiceError
from factory_portal.money import round_money
from sites.models import Partner, Site
from tenants.choices import BILLED_STATUSES, INVOICE_TRANSITIONS, AuditAction, InvoiceStatus, TokenKind
from tenants.economics_selectors import _bands_lookup
from tenants.metering import tenant_usage_refresh
from tenants.models import Invoice, InvoiceLine, Tenant, TenantUsage
from tenants.pricing import UsageItem, amount_of, price_items, split_by_bands
from tenants.services import Actor, audit_record


def month_bounds(period_start: dt.date) -> tuple[dt.date, dt.date]:
    if period_start.day != 1:
        raise ServiceError("An invoice period starts on the first day of a month.", field="period_start")
    end = (period_start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return period_start, end


def _aware(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _usage_currency_check(*, tenant: Tenant, currency: str, start: dt.date, end: dt.date) -> None:
    """Refuse when the tenant used a site that counts in another currency than the plan bills in."""
    other = (Site.objects.filter(pk__in=TenantUsage.objects.filter(
        tenant=tenant, bucket_start__gte=_aware(start), bucket_start__lt=_aware(end)).values("endpoint__site_id"))
        .exclude(currency=currency).first())
    if other is not None:
        raise ServiceError(
            f"{tenant.name}'s price plan bills in {currency} but {other.name} counts in {other.currency}. "
            "Assign a plan in the site's currency before invoicing.", field="currency")


def _period_lines(*, tenant: Tenant, start: dt.date, end: dt.date) -> tuple[list[dict], list[str]]:
    """Lines of the month: tokens per (model, kind, price band), priced in time order (tiers)."""
    rows = TenantUsage.objects.filter(tenant=tenant, bucket_start__gte=_aware(start), bucket_start__lt=_aware(end))
    bands_for, _ = _bands_lookup({tenant.pk})
    items = []
    for r in rows.values("pk", "model", "bucket_start", "prompt_tokens", "generation_tokens"):
        items.append(UsageItem(r["pk"], tenant.pk, r["model"], TokenKind.INPUT, r["bucket_start"],
                               r["prompt_tokens"]))
        items.append(UsageItem(r["pk"], tenant.pk, r["model"], TokenKind.OUTPUT, r["bucket_start"],
                               r["generation_tokens"]))
    grouped: dict[tuple, int] = defaultdict(int)
    unpriced: set[str] = set()
    for priced in price_items(items, bands_for=bands_for):
        if priced.revenue is None:
            if priced.item.tokens:
                unpriced.add(priced.item.model)
            continue
        for band, n in priced.pieces:
            grouped[(priced.item.model, priced.item.kind, band.threshold_tokens, band.price_per_mtok)] += n
    lines = [
        {"model": model, "kind": kind, "usage_period_start": start, "is_adjustment": False,
         "tier_threshold_tokens": threshold, "quantity_tokens": qty, "unit_price_per_mtok": price}
        for (model, kind, threshold, price), qty in sorted(grouped.items()) if qty
    ]
    return lines, sorted(unpriced)


def _adjustment_lines(*, tenant: Tenant, before: dt.date, currency: str) -> list[dict]:
    """Tokens of already billed months that were metered after they were billed (positive), or that a billed
    month counted but metering no longer does (negative): priced continuing that month's tier position."""
    billed = Invoice.objects.filter(tenant=tenant, status__in=BILLED_STATUSES, period_start__lt=before)
    if not billed.exists():
        return []
    bands_for, _ = _bands_lookup({tenant.pk})
    lines: list[dict] = []
    for invoice in billed.order_by("period_start"):
        if invoice.currency != currency:
            raise ServiceError(f"{invoice.label} was billed in {invoice.currency}; its late usage cannot go on an "
                               f"invoice in {currency}.", field="currency")
    periods = sorted(set(billed.values_list("period_start", "period_end")))
    for start, end in periods:
        invoiced = defaultdict(int)
        for model, kind, qty in InvoiceLine.objects.filter(
                invoice__tenant=tenant, invoice__status__in=BILLED_STATUSES, usage_period_start=start).values_list(
                "model", "kind").annotate(q=Sum("quantity_tokens")).values_list("model", "kind", "q"):
            invoiced[(model, kind)] += qty
        metered = defaultdict(int)
        for model, p, g in TenantUsage.objects.filter(
                tenant=tenant, bucket_start__gte=_aware(start), bucket_start__lt=_aware(end)).values_list(
                "model").annotate(p=Sum("prompt_tokens"), g=Sum("generation_tokens")).values_list("model", "p", "g"):
            metered[(model, TokenKind.INPUT)] += p or 0
            metered[(model, TokenKind.OUTPUT)] += g or 0
        for (model, kind) in sorted(set(invoiced) | set(metered)):
            bands = bands_for(tenant.pk, model, kind)
            diff = metered[(model, kind)] - invoiced[(model, kind)]
            if not diff or bands is None:
                continue
            if diff > 0:
                pieces = split_by_bands(used_before=invoiced[(model, kind)], tokens=diff, bands=bands)
                sign = 1
            else:
                pieces = split_by_bands(used_before=metered[(model, kind)], tokens=-diff, bands=bands)
                sign = -1
            for band, n in pieces:
                lines.append({"model": model, "kind": kind, "usage_period_start": start, "is_adjustment": True,
                              "tier_threshold_tokens": band.threshold_tokens, "quantity_tokens": sign * n,
                              "unit_price_per_mtok": band.price_per_mtok})
    return lines


def _describe(line: dict) -> str:
    kind = "input" if line["kind"] == TokenKind.INPUT else "output"
    text = f"{line['model']} — {kind} tokens"
    if line["tier_threshold_tokens"]:
        text += f" beyond {line['tier_threshold_tokens']:,} tokens of the month"
    if line["is_adjustment"]:
        text = f"Adjustment for {line['usage_period_start']:%Y-%m}: " + text
    return text[:400]


@transaction.atomic
def invoice_generate(*, tenant: Tenant, period_start: dt.date, now: dt.datetime | None = None) -> Invoice:
    """Create or rebuild the draft of the tenant's month from metered usage. An issued, paid or void-free
    invoice of that month is returned unchanged. Running it twice gives the same lines and total."""
    now = now or timezone.now()
    start, end = month_bounds(period_start)
    tenant = Tenant.objects.select_for_update(of=("self",)).select_related("price_plan", "partner").get(pk=tenant.pk)
    existing = Invoice.objects.filter(tenant=tenant, period_start=start).exclude(status=InvoiceStatus.VOID).first()
    if existing is not None and not existing.is_draft:
        return existing
    plan = tenant.price_plan
    if plan is None:
        raise ServiceError(f"Assign a price plan to {tenant.name} before invoicing.", field="price_plan")
    if _aware(start) > now:
        raise ServiceError("That month has not started yet.", field="period_start")
    # Re-meter the month (and the one before, where late usage shows up) with the rules in effect now.
    prev_start = (start - dt.timedelta(days=1)).replace(day=1)
    tenant_usage_refresh(since=_aware(prev_start), until=_aware(end), now=now)
    _usage_currency_check(tenant=tenant, currency=plan.currency, start=start, end=end)
    lines, unpriced = _period_lines(tenant=tenant, start=start, end=end)
    lines += _adjustment_lines(tenant=tenant, before=start, currency=plan.currency)
    invoice = existing or Invoice(tenant=tenant, partner=tenant.partner, period_start=start, period_end=end)
    invoice.currency, invoice.price_plan, invoice.unpriced = plan.currency, plan, unpriced
    invoice.total = Decimal(0)
    invoice.save()
    invoice.lines.all().delete()
    rows = []
    for position, line in enumerate(lines, start=1):
        # The one rounding of DESIGN.md §5.4: each line's exact amount to the currency's minor unit.
        amount = round_money(amount_of(line["quantity_tokens"], line["unit_price_per_mtok"]), plan.currency)
        rows.append(InvoiceLine(invoice=invoice, position=position, amount=amount, description=_describe(line),
                                **line))
    InvoiceLine.objects.bulk_create(rows)
    invoice.total = sum((r.amount for r in rows), Decimal(0))
    invoice.save(update_fields=["total", "updated_at"])
    return invoice


def _next_number(*, partner: Partner, year: int) -> str:
    Partner.objects.select_for_update().get(pk=partner.pk)  # numbers are handed out one at a time per partner
    prefix = f"INV-{year}-"
    used = Invoice.objects.filter(partner=partner, number__startswith=prefix).values_list("number", flat=True)
    last = max((int(n.removeprefix(prefix)) for n in used if n.removeprefix(prefix).isdigit()), default=0)
    return f"{prefix}{last + 1:04d}"


def _transition(invoice: Invoice, to: str) -> Invoice:
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if to not in INVOICE_TRANSITIONS[invoice.status]:
        raise ServiceError(f"A {invoice.get_status_display().lower()} invoice cannot become "
                           f"{InvoiceStatus(to).label.lower()}.", field="status")
    return invoice


@transaction.atomic
def invoice_issue(*, invoice: Invoice, by: Actor, now: dt.datetime | None = None) -> Invoice:
    """Rebuild the draft from current usage, then freeze it: numbered, immutable from here on."""
    now = now or timezone.now()
    invoice = _transition(invoice, InvoiceStatus.ISSUED)
    if _aware(invoice.period_end) > now:
        raise ServiceError("A month is invoiced once it has ended.", field="period_start")
    invoice = invoice_generate(tenant=invoice.tenant, period_start=invoice.period_start, now=now)
    invoice.number = _next_number(partner=invoice.partner, year=now.year)
    invoice.status, invoice.issued_at = InvoiceStatus.ISSUED, now
    invoice.save(update_fields=["number", "status", "issued_at", "updated_at"])
    audit_record(actor=by, action=AuditAction.INVOICE_ISSUED, obj=invoice,
                 summary=f"Invoice {invoice.number} issued to {invoice.tenant.name}: {invoice.total} "
                         f"{invoice.currency}")
    return invoice


@transaction.atomic
def invoice_mark_paid(*, invoice: Invoice, by: Actor, now: dt.datetime | None = None) -> Invoice:
    invoice = _transition(invoice, InvoiceStatus.PAID)
    invoice.status, invoice.paid_at = InvoiceStatus.PAID, now or timezone.now()
    invoice.save(update_fields=["status", "paid_at", "updated_at"])
    audit_record(actor=by, action=AuditAction.INVOICE_PAID, obj=invoice, summary=f"Invoice {invoice.label} paid")
    return invoice


@transaction.atomic
def invoice_void(*, invoice: Invoice, by: Actor, reason: str = "", now: dt.datetime | None = None) -> Invoice:
    """Void a draft or an issued invoice (its month can then be invoiced again); it stays on record."""
    invoice = _transition(invoice, InvoiceStatus.VOID)
    invoice.status, invoice.voided_at, invoice.void_reason = InvoiceStatus.VOID, now or timezone.now(), reason[:300]
    invoice.save(update_fields=["status", "voided_at", "void_reason", "updated_at"])
    audit_record(actor=by, action=AuditAction.INVOICE_VOIDED, obj=invoice,
                 summary=f"Invoice {invoice.label} voided" + (f": {reason[:200]}" if reason else ""))
    return invoice


def invoices_generate_for_month(*, period_start: dt.date, now: dt.datetime | None = None) -> int:
    """Drafts for every approved tenant with a plan (the monthly job). Idempotent; returns drafts touched."""
    count = 0
    for tenant in Tenant.objects.filter(status="approved", price_plan__isnull=False):
        try:
            invoice = invoice_generate(tenant=tenant, period_start=period_start, now=now)
        except ServiceError:
            continue  # e.g. a currency mismatch: shown when the partner opens or issues that invoice
        count += invoice.is_draft
    return count


def _cell(text: str) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula; model names come from engine labels.
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def invoice_csv(*, invoice: Invoice) -> str:
    """The invoice as CSV: one row per line, then the total (amounts as exact decimal strings)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["invoice", "tenant", "period_start", "period_end", "currency", "status", "line", "model",
                     "kind", "usage_period", "adjustment", "quantity_tokens", "unit_price_per_mtok", "amount",
                     "description"])
    def shown(amount: Decimal) -> Decimal:
        # Stored with 4 places for every currency; shown at the currency's minor unit (already rounded to it).
        return round_money(amount, invoice.currency)

    head = [invoice.label, _cell(invoice.tenant.name), invoice.period_start.isoformat(), invoice.period_end.isoformat(),
            invoice.currency, invoice.status]
    for line in invoice.lines.all():
        writer.writerow([*head, line.position, _cell(line.model), line.kind, f"{line.usage_period_start:%Y-%m}",
                         "yes" if line.is_adjustment else "no", line.quantity_tokens, line.unit_price_per_mtok,
                         shown(line.amount), _cell(line.description)])
    writer.writerow([*head, "total", "", "", "", "", "", "", shown(invoice.total), ""])
    return buffer.getvalue()
