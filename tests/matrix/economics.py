"""Economics and invoice routes (issue 6): partner staff see cost and margin; tenant people see their own
issued invoices and spend, never cost, margin, drafts or another tenant's invoices."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from tests.matrix import LOGIN, Case, tenant_people


def _invoice(w, status: str) -> int:
    """An invoice of tenant A (partner A) for February 2026, created on first use in the test's database."""
    key = f"invoice_{status}"
    if key not in w.objects:
        from tenants.models import Invoice

        w.objects[key] = Invoice.objects.create(
            tenant=w.tenant_a, partner=w.partner_a, price_plan=w.plan_a, currency="USD",
            period_start=dt.date(2026, 2, 1), period_end=dt.date(2026, 3, 1), status=status,
            number="INV-2026-0001" if status == "issued" else "", total=Decimal("0"),
        )
    return w.objects[key].pk


def issued(w) -> dict:
    return {"pk": _invoice(w, "issued")}


def draft(w) -> dict:
    return {"pk": _invoice(w, "draft")}


def hide_other(w, other: str) -> list[str]:
    return [getattr(w, f"site_{other}").name, getattr(w, f"tenant_{other}").name]


STAFF_ONLY = {"operator": 200, "viewer": 200, "outsider": 200, **tenant_people(403)}
OWN_INVOICE = {"operator": 200, "viewer": 200, "outsider": 404, "alice": 200, "bob": 200, "charlie": 404}
PARTNER_WRITE = {"operator": 200, "viewer": 403, "outsider": 404, "alice": 403, "bob": 403, "charlie": 404}

CASES = [
    # ---------------------------------------------------------------- pages
    Case("tenants:economics_portfolio", expect={"anonymous": LOGIN, **STAFF_ONLY}, hides=hide_other),
    Case("tenants:economics_site", kwargs=lambda w: {"slug": w.site_a.slug},
         expect={"anonymous": LOGIN, "operator": 200, "viewer": 200, "outsider": 404, **tenant_people(403)},
         hides=lambda w, o: [getattr(w, f"site_{o}").name]),
    Case("tenants:economics_site_data", kwargs=lambda w: {"slug": w.site_a.slug},
         expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 404, **tenant_people(403)}),
    Case("tenants:economics_site_chart", kwargs=lambda w: {"slug": w.site_a.slug, "name": "whatif"},
         expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 404, **tenant_people(403)}),
    Case("tenants:economics_site_chart", kwargs=lambda w: {"slug": w.site_a.slug, "name": "nope"},
         id="GET economics_site_chart unknown",
         expect={"anonymous": 401, "operator": 404, "viewer": 404, "outsider": 404, **tenant_people(403)}),
    Case("tenants:partner_invoice_list", expect={"anonymous": LOGIN, **STAFF_ONLY}, hides=hide_other),
    Case("tenants:partner_invoice_list", method="post", id="POST partner_invoice_list generate",
         data=lambda w: {"tenant": w.tenant_a.pk, "month": "2026-02"},
         # the outsider is told to choose one of its own tenants (a redirect with a message, nothing written)
         expect={"anonymous": LOGIN, "operator": 302, "viewer": 403, "outsider": 302, **tenant_people(403)}),
    Case("tenants:tenant_invoice_list",
         expect={"anonymous": LOGIN, "operator": 403, "viewer": 403, "outsider": 403, **tenant_people(200)},
         hides=hide_other),
    Case("tenants:invoice_detail", kwargs=issued, expect={"anonymous": LOGIN, **OWN_INVOICE}, hides=hide_other),
    Case("tenants:invoice_detail", kwargs=draft, id="GET invoice_detail draft",
         expect={"anonymous": LOGIN, "operator": 200, "viewer": 200, "outsider": 404, **tenant_people(404)}),
    Case("tenants:invoice_csv", kwargs=issued, expect={"anonymous": LOGIN, **OWN_INVOICE}, hides=hide_other),
    Case("tenants:invoice_action", method="post", data=lambda w: {},
         kwargs=lambda w: {"pk": _invoice(w, "issued"), "action": "pay"},
         expect={"anonymous": LOGIN, "operator": 302, "viewer": 403, "outsider": 404, **tenant_people(403)}),
    # ---------------------------------------------------------------- API
    Case("economics-site", api=True, kwargs=lambda w: {"pk": w.site_a.pk},
         expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 404, **tenant_people(404)},
         hides=lambda w, o: [getattr(w, f"site_{o}").name]),
    Case("economics-site", api=True, kwargs=lambda w: {"pk": w.site_a.pk}, query="?start=2026-03-02T00:00:00Z"
         "&end=2026-03-01T00:00:00Z", id="GET economics-site bad range",
         expect={"anonymous": 401, "operator": 400, "viewer": 400, "outsider": 404, **tenant_people(404)}),
    Case("economics-tenant", api=True, kwargs=lambda w: {"pk": w.tenant_a.pk},
         expect={"anonymous": 401, **OWN_INVOICE}, hides=hide_other),
    Case("economics-portfolio", api=True, expect={"anonymous": 401, **STAFF_ONLY}, hides=hide_other),
    Case("invoice-list", api=True, expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 200,
                                           **tenant_people(200)}, hides=hide_other),
    Case("invoice-detail", api=True, kwargs=issued, expect={"anonymous": 401, **OWN_INVOICE}, hides=hide_other),
    Case("invoice-detail", api=True, kwargs=draft, id="GET invoice-detail draft",
         expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 404, **tenant_people(404)}),
    Case("invoice-csv", api=True, kwargs=issued, expect={"anonymous": 401, **OWN_INVOICE}, hides=hide_other),
    Case("invoice-generate", api=True, method="post",
         data=lambda w: {"tenant": w.tenant_a.pk, "period_start": "2026-02-01"},
         expect={"anonymous": 401, "operator": 201, "viewer": 403, "outsider": 400, **tenant_people(403)}),
    Case("invoice-issue", api=True, method="post", kwargs=draft,
         expect={"anonymous": 401, "operator": 200, "viewer": 403, "outsider": 404, **tenant_people(404)}),
    Case("invoice-pay", api=True, method="post", kwargs=issued, expect={"anonymous": 401, **PARTNER_WRITE}),
    Case("invoice-void", api=True, method="post", kwargs=issued, data=lambda w: {"reason": "test"},
         expect={"anonymous": 401, **PARTNER_WRITE}),
]
