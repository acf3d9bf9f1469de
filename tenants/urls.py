from django.urls import path

from tenants.views import economics, partner, signup, tenant

app_name = "tenants"

urlpatterns = [
    # Public: signup (with one partner in the database /signup/ picks it), confirmation and invitation links.
    path("signup/", signup.signup, name="signup"),
    path("signup/confirm/<str:token>/", signup.confirm_email, name="confirm_email"),
    path("signup/<slug:partner_slug>/", signup.signup, name="signup_partner"),
    path("invite/<str:token>/", signup.invite_accept, name="invite_accept"),
    # The tenant's own pages.
    path("tenant/", tenant.tenant_home, name="tenant_home"),
    path("tenant/confirm-email/resend/", tenant.resend_confirmation, name="resend_confirmation"),
    path("tenant/requests/new/", tenant.capacity_request_create, name="capacity_request_create"),
    path("tenant/allocations/", tenant.tenant_allocations, name="tenant_allocations"),
    path("tenant/usage/", tenant.tenant_usage, name="tenant_usage"),
    path("tenant/members/", tenant.tenant_members, name="tenant_members"),
    path("tenant/members/<int:pk>/remove/", tenant.member_remove, name="member_remove"),
    path("tenant/api-keys/", tenant.api_keys, name="api_keys"),
    path("tenant/api-keys/<int:pk>/revoke/", tenant.api_key_revoke, name="api_key_revoke"),
    path("tenant/audit/", tenant.tenant_audit, name="tenant_audit"),
    path("tenant/invoices/", economics.tenant_invoice_list, name="tenant_invoice_list"),
    # Shared invoice pages: scoped to the invoices the user may see (a tenant sees its issued ones).
    path("invoices/<int:pk>/", economics.invoice_detail, name="invoice_detail"),
    path("invoices/<int:pk>.csv", economics.invoice_csv, name="invoice_csv"),
    # Shared: scoped to what the user may see.
    path("allocations.csv", partner.allocations_csv, name="allocations_csv"),
    # Partner staff.
    path("partner/tenants/", partner.tenant_list, name="partner_tenant_list"),
    path("partner/tenants/<slug:slug>/", partner.tenant_detail, name="partner_tenant_detail"),
    path("partner/tenants/<slug:slug>/decide/", partner.tenant_decide, name="tenant_decide"),
    path("partner/tenants/<slug:slug>/suspension/", partner.tenant_suspension, name="tenant_suspension"),
    path("partner/tenants/<slug:slug>/price-plan/", partner.tenant_price_plan, name="tenant_price_plan"),
    path("partner/tenants/<slug:slug>/allocations/new/", partner.allocation_create, name="allocation_create"),
    path("partner/requests/<int:pk>/decide/", partner.request_decide, name="request_decide"),
    path("partner/allocations/<int:pk>/end/", partner.allocation_end, name="allocation_end"),
    path("partner/attribution-rules/", partner.rule_list, name="rule_list"),
    path("partner/attribution-rules/new/", partner.rule_create, name="rule_create"),
    path("partner/attribution-rules/<int:pk>/edit/", partner.rule_edit, name="rule_edit"),
    path("partner/attribution-rules/<int:pk>/delete/", partner.rule_delete, name="rule_delete"),
    path("partner/price-plans/", partner.price_plan_list, name="price_plan_list"),
    path("partner/price-plans/new/", partner.price_plan_create, name="price_plan_create"),
    path("partner/price-plans/<int:pk>/edit/", partner.price_plan_edit, name="price_plan_edit"),
    path("partner/audit/", partner.partner_audit, name="partner_audit"),
    path("partner/economics/", economics.portfolio, name="economics_portfolio"),
    path("partner/economics/sites/<slug:slug>/", economics.site_economics, name="economics_site"),
    path("partner/economics/sites/<slug:slug>/live.json", economics.site_economics_data, name="economics_site_data"),
    path("partner/economics/sites/<slug:slug>/charts/<slug:name>.json", economics.site_economics_chart,
         name="economics_site_chart"),
    path("partner/invoices/", economics.partner_invoice_list, name="partner_invoice_list"),
    path("partner/invoices/<int:pk>/<slug:action>/", economics.invoice_action, name="invoice_action"),
]
