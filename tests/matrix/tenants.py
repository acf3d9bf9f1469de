"""Tenant routes: public signup and links, the tenant's own pages, partner staff pages, and the API.

The rules, for every route:
- partner pages (`/partner/...`): 403 for anyone who is no partner's staff (tenant people included) before any
  lookup; another partner's object 404; a write the role lacks (viewer) 403;
- tenant pages (`/tenant/...`): 403 for people of no tenant (partner staff included); they only ever read the
  person's own tenant, so another tenant's object id is 404; admin-only actions 403 for members;
- API: reads are scoped (`visible_to`): another partner's or tenant's object 404; a write the role lacks 403
  (tenant people on partner-managed objects they can see, viewers, members on tenant-admin actions).
"""

import datetime as dt

from tests.matrix import LOGIN, Case

PARTNER_STAFF = ("operator", "viewer", "outsider")
PEOPLE = ("alice", "bob", "charlie")


def expect(anonymous: int, **statuses: int) -> dict[str, int]:
    return {"anonymous": anonymous, **statuses}


def partner_page(*, operator: int, viewer: int, outsider: int, tenants: int = 403, api: bool = False) -> dict:
    return expect(401 if api else LOGIN, operator=operator, viewer=viewer, outsider=outsider,
                  **dict.fromkeys(PEOPLE, tenants))


def tenant_page(*, alice: int, bob: int, charlie: int, staff: int = 403) -> dict:
    return expect(LOGIN, **dict.fromkeys(PARTNER_STAFF, staff), alice=alice, bob=bob, charlie=charlie)


def everyone(status: int, *, anonymous: int = LOGIN) -> dict:
    return expect(anonymous, **dict.fromkeys(PARTNER_STAFF + PEOPLE, status))


def hide_tenant(w, o) -> list[str]:
    return [getattr(w, f"tenant_{o}").name]


def hide_allocation(w, o) -> list[str]:
    return [getattr(w, f"tenant_{o}").name, getattr(w, f"gpu_{o}").uuid, f"note-{o}", getattr(w, f"node_{o}").hostname]


def hide_key(w, o) -> list[str]:
    key = getattr(w, f"api_key_{o}")
    return [key.name, key.prefix]


def hide_plan(w, o) -> list[str]:
    return [getattr(w, f"plan_{o}").name, f"model-{o}"]


def hide_rule(w, o) -> list[str]:
    return [getattr(w, f"tenant_{o}").name, getattr(w, f"endpoint_{o}").name]


def signup_payload(w) -> dict:
    return {"org_name": "Newco AI", "full_name": "Nora New", "email": "nora@newco.example.test",
            "password1": "lunar-orbit-cassava-91", "password2": "lunar-orbit-cassava-91"}


def confirm_token(w) -> dict:
    from tenants.services import email_confirmation_token

    return {"token": email_confirmation_token(tenant=w.tenant_pending)}


def invite_token(w) -> dict:
    from tenants.models import TenantInvitation
    from tenants.services import invitation_token

    invitation = TenantInvitation.objects.create(tenant=w.tenant_a, email="ivy@tenant-a.example.test", role="member")
    return {"token": invitation_token(invitation=invitation)}


def request_payload(w) -> dict:
    from django.utils import timezone

    start = (timezone.localdate() + dt.timedelta(days=30)).isoformat()
    return {"models_text": "meta-llama/Llama-3.1-70B-Instruct", "kind": "gpus", "gpu_count": "4",
            "expected_tokens_per_month": "2000000000", "start_date": start}


tenant_a = lambda w: {"slug": w.tenant_a.slug}  # noqa: E731
pending = lambda w: {"slug": w.tenant_pending.slug}  # noqa: E731
pk_of = lambda name: (lambda w: {"pk": getattr(w, name).pk})  # noqa: E731


CASES = [
    # ---- public
    Case("tenants:signup", expect=expect(200, **dict.fromkeys(PARTNER_STAFF + PEOPLE, 302))),
    Case("tenants:signup_partner", kwargs=lambda w: {"partner_slug": "partner-a"},
         expect=expect(200, **dict.fromkeys(PARTNER_STAFF + PEOPLE, 302))),
    Case("tenants:signup_partner", method="post", id="POST tenants:signup_partner", data=signup_payload,
         kwargs=lambda w: {"partner_slug": "partner-a"}, expect=everyone(302, anonymous=302)),
    Case("tenants:confirm_email", kwargs=confirm_token, expect=expect(200, **dict.fromkeys(PARTNER_STAFF + PEOPLE,
                                                                                          302))),
    Case("tenants:confirm_email", kwargs=lambda w: {"token": "forged.token:value"}, id="confirm_email forged",
         expect=everyone(400, anonymous=400)),
    Case("tenants:invite_accept", kwargs=invite_token, expect=everyone(200, anonymous=200)),
    # ---- the tenant's own pages
    Case("tenants:tenant_home", expect=tenant_page(alice=200, bob=200, charlie=200), hides=hide_tenant),
    Case("tenants:resend_confirmation", method="post", expect=tenant_page(alice=302, bob=403, charlie=302)),
    Case("tenants:capacity_request_create", expect=tenant_page(alice=200, bob=403, charlie=200)),
    Case("tenants:capacity_request_create", method="post", data=request_payload,
         id="POST tenants:capacity_request_create", expect=tenant_page(alice=302, bob=403, charlie=302)),
    Case("tenants:tenant_allocations", expect=tenant_page(alice=200, bob=200, charlie=200), hides=hide_allocation),
    Case("tenants:tenant_usage", expect=tenant_page(alice=200, bob=200, charlie=200), hides=hide_allocation),
    Case("tenants:tenant_members", expect=tenant_page(alice=200, bob=200, charlie=200),
         hides=lambda w, o: [f"tenant-{o}.example.test"]),
    Case("tenants:tenant_members", method="post", id="POST tenants:tenant_members",
         data=lambda w: {"email": "new.person@example.test", "role": "member"},
         expect=tenant_page(alice=302, bob=403, charlie=302)),
    Case("tenants:member_remove", method="post", kwargs=lambda w: {"pk": w.users["bob"].tenant_memberships.get().pk},
         expect=tenant_page(alice=302, bob=403, charlie=404)),
    Case("tenants:api_keys", expect=tenant_page(alice=200, bob=200, charlie=200), hides=hide_key),
    Case("tenants:api_keys", method="post", id="POST tenants:api_keys", data=lambda w: {"name": "ci",
                                                                                        "expires_in_days": "30"},
         expect=tenant_page(alice=200, bob=403, charlie=200), hides=hide_key),
    Case("tenants:api_key_revoke", method="post", kwargs=pk_of("api_key_a"),
         expect=tenant_page(alice=302, bob=403, charlie=404)),
    Case("tenants:tenant_audit", expect=tenant_page(alice=200, bob=403, charlie=200), hides=hide_key),
    Case("tenants:allocations_csv", expect=everyone(200), hides=hide_allocation),
    # ---- partner staff pages
    Case("tenants:partner_tenant_list", expect=partner_page(operator=200, viewer=200, outsider=200),
         hides=hide_tenant),
    Case("tenants:partner_tenant_detail", kwargs=tenant_a, expect=partner_page(operator=200, viewer=200, outsider=404)),
    Case("tenants:tenant_decide", method="post", kwargs=pending, data=lambda w: {"decision": "approve"},
         expect=partner_page(operator=302, viewer=403, outsider=404)),
    Case("tenants:tenant_suspension", method="post", kwargs=tenant_a, data=lambda w: {"action": "suspend"},
         expect=partner_page(operator=302, viewer=403, outsider=404)),
    Case("tenants:tenant_price_plan", method="post", kwargs=tenant_a, data=lambda w: {"price_plan": w.plan_a.pk},
         expect=partner_page(operator=302, viewer=403, outsider=404)),
    Case("tenants:request_decide", method="post", kwargs=pk_of("request_pending"),
         data=lambda w: {"decision": "reject", "reason": "no capacity in that region"},
         expect=partner_page(operator=302, viewer=403, outsider=404)),
    Case("tenants:allocation_create", kwargs=tenant_a, expect=partner_page(operator=200, viewer=403, outsider=404)),
    Case("tenants:allocation_create", method="post", kwargs=tenant_a, id="POST tenants:allocation_create",
         data=lambda w: {"endpoint": w.endpoint_a.pk}, expect=partner_page(operator=302, viewer=403, outsider=404)),
    Case("tenants:allocation_end", method="post", kwargs=pk_of("allocation_a"),
         expect=partner_page(operator=302, viewer=403, outsider=404)),
    Case("tenants:rule_list", expect=partner_page(operator=200, viewer=200, outsider=200), hides=hide_rule),
    Case("tenants:rule_create", expect=partner_page(operator=200, viewer=403, outsider=200)),
    Case("tenants:rule_create", method="post", id="POST tenants:rule_create",
         data=lambda w: {"endpoint": w.endpoint_a.pk, "tenant": w.tenant_a.pk, "label": "team", "value": "acme"},
         # partner B's owner cannot pick partner A's endpoint: the form answers with a choice error.
         expect=partner_page(operator=302, viewer=403, outsider=200)),
    Case("tenants:rule_edit", kwargs=pk_of("rule_a"), expect=partner_page(operator=200, viewer=403, outsider=404)),
    Case("tenants:rule_delete", method="post", kwargs=pk_of("rule_a"),
         expect=partner_page(operator=302, viewer=403, outsider=404)),
    Case("tenants:price_plan_list", expect=partner_page(operator=200, viewer=200, outsider=200), hides=hide_plan),
    Case("tenants:price_plan_create", expect=partner_page(operator=200, viewer=403, outsider=200)),
    Case("tenants:price_plan_edit", kwargs=pk_of("plan_a"), expect=partner_page(operator=200, viewer=403,
                                                                                 outsider=404)),
    Case("tenants:partner_audit", expect=partner_page(operator=200, viewer=200, outsider=200), hides=hide_tenant),
    # ---- API
    Case("tenant-list", api=True, expect=everyone(200, anonymous=401), hides=hide_tenant),
    Case("tenant-detail", api=True, kwargs=pk_of("tenant_a"),
         expect=expect(401, operator=200, viewer=200, outsider=404, alice=200, bob=200, charlie=404)),
    Case("tenant-detail", api=True, method="patch", kwargs=pk_of("tenant_a"), id="PATCH tenant-detail",
         data=lambda w: {"price_plan": w.plan_a.pk},
         expect=expect(401, operator=200, viewer=403, outsider=404, alice=403, bob=403, charlie=404)),
    Case("tenant-approve", api=True, method="post", kwargs=pk_of("tenant_pending"), data=lambda w: {},
         expect=expect(401, operator=200, viewer=403, outsider=404, alice=404, bob=404, charlie=404)),
    Case("tenant-reject", api=True, method="post", kwargs=pk_of("tenant_pending"),
         data=lambda w: {"reason": "not a fit"},
         expect=expect(401, operator=200, viewer=403, outsider=404, alice=404, bob=404, charlie=404)),
    Case("tenant-suspend", api=True, method="post", kwargs=pk_of("tenant_a"), data=lambda w: {"reason": "unpaid"},
         expect=expect(401, operator=200, viewer=403, outsider=404, alice=403, bob=403, charlie=404)),
    Case("tenant-unsuspend", api=True, method="post", kwargs=pk_of("tenant_a"), data=lambda w: {},
         # tenant A is not suspended: the operator passes the role check and gets the business rule's 400.
         expect=expect(401, operator=400, viewer=403, outsider=404, alice=403, bob=403, charlie=404)),
    Case("allocation-list", api=True, expect=everyone(200, anonymous=401), hides=hide_allocation),
    Case("allocation-list", api=True, method="post", id="POST allocation-list",
         data=lambda w: {"tenant": w.tenant_a.pk, "endpoint": w.endpoint_a.pk},
         expect=expect(401, operator=201, viewer=403, outsider=400, alice=403, bob=403, charlie=403)),
    Case("allocation-detail", api=True, kwargs=pk_of("allocation_a"),
         expect=expect(401, operator=200, viewer=200, outsider=404, alice=200, bob=200, charlie=404)),
    Case("allocation-end", api=True, method="post", kwargs=pk_of("allocation_a"), data=lambda w: {},
         expect=expect(401, operator=200, viewer=403, outsider=404, alice=403, bob=403, charlie=404)),
    Case("attribution-rule-list", api=True, expect=everyone(200, anonymous=401), hides=hide_rule),
    Case("attribution-rule-list", api=True, method="post", id="POST attribution-rule-list",
         data=lambda w: {"endpoint": w.endpoint_a.pk, "tenant": w.tenant_a.pk, "label": "team", "value": "acme"},
         expect=expect(401, operator=201, viewer=403, outsider=400, alice=403, bob=403, charlie=403)),
    Case("attribution-rule-detail", api=True, kwargs=pk_of("rule_a"),
         expect=expect(401, operator=200, viewer=200, outsider=404, alice=200, bob=200, charlie=404)),
    Case("attribution-rule-detail", api=True, method="patch", kwargs=pk_of("rule_a"), id="PATCH attribution-rule",
         data=lambda w: {"effective_to": "2099-01-01T00:00:00Z"},
         expect=expect(401, operator=200, viewer=403, outsider=404, alice=403, bob=403, charlie=404)),
    Case("attribution-rule-detail", api=True, method="delete", kwargs=pk_of("rule_a"), id="DELETE attribution-rule",
         expect=expect(401, operator=204, viewer=403, outsider=404, alice=403, bob=403, charlie=404)),
    Case("api-key-list", api=True, expect=everyone(200, anonymous=401), hides=hide_key),
    Case("api-key-list", api=True, method="post", id="POST api-key-list", data=lambda w: {"name": "ci"},
         expect=expect(401, operator=403, viewer=403, outsider=403, alice=201, bob=403, charlie=201)),
    Case("api-key-detail", api=True, kwargs=pk_of("api_key_a"),
         # API keys are the tenant's own business: partner staff do not see them.
         expect=expect(401, operator=404, viewer=404, outsider=404, alice=200, bob=200, charlie=404)),
    Case("api-key-detail", api=True, method="delete", kwargs=pk_of("api_key_a"), id="DELETE api-key-detail",
         expect=expect(401, operator=404, viewer=404, outsider=404, alice=204, bob=403, charlie=404)),
    Case("price-plan-list", api=True, expect=everyone(200, anonymous=401), hides=hide_plan),
    Case("price-plan-list", api=True, method="post", id="POST price-plan-list",
         data=lambda w: {"partner": w.partner_a.pk, "name": "Premium", "currency": "EUR",
                         "effective_from": "2026-03-01",
                         "rates": [{"model": "*", "input_price_per_mtok": "0.15", "output_price_per_mtok": "0.45"}]},
         expect=expect(401, operator=201, viewer=403, outsider=400, alice=403, bob=403, charlie=403)),
    Case("price-plan-detail", api=True, kwargs=pk_of("plan_a"),
         expect=expect(401, operator=200, viewer=200, outsider=404, alice=200, bob=200, charlie=404)),
    Case("price-plan-detail", api=True, method="patch", kwargs=pk_of("plan_a"), id="PATCH price-plan-detail",
         data=lambda w: {"notes": "list prices"},
         expect=expect(401, operator=200, viewer=403, outsider=404, alice=403, bob=403, charlie=404)),
]
