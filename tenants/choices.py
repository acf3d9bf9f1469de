from django.db import models


class TenantStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"

    @classmethod
    def colors(cls) -> dict[str, str]:
        return {"pending": "orange", "approved": "green", "rejected": "red"}


class TenantRole(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"

    @classmethod
    def colors(cls) -> dict[str, str]:
        return {"pending": "orange", "approved": "green", "rejected": "red"}


# Common MIG profiles of A100/H100/H200/B200; the capacity form offers them, the model accepts any `Ng.Mgb`.
MIG_PROFILES = [
    "1g.10gb", "1g.12gb", "1g.18gb", "1g.20gb", "1g.23gb", "1g.24gb", "1g.35gb", "1g.45gb",
    "2g.20gb", "2g.24gb", "2g.35gb", "2g.45gb", "3g.40gb", "3g.47gb", "3g.71gb", "3g.90gb",
    "4g.40gb", "4g.47gb", "4g.71gb", "4g.90gb", "7g.80gb", "7g.141gb", "7g.180gb",
]


class AuditAction(models.TextChoices):
    TENANT_SIGNED_UP = "tenant.signed_up", "Tenant signed up"
    TENANT_EMAIL_CONFIRMED = "tenant.email_confirmed", "Email confirmed"
    TENANT_APPROVED = "tenant.approved", "Tenant approved"
    TENANT_REJECTED = "tenant.rejected", "Tenant rejected"
    TENANT_SUSPENDED = "tenant.suspended", "Tenant suspended"
    TENANT_UNSUSPENDED = "tenant.unsuspended", "Tenant unsuspended"
    TENANT_PRICE_PLAN = "tenant.price_plan", "Price plan assigned"
    REQUEST_FILED = "request.filed", "Capacity request filed"
    REQUEST_APPROVED = "request.approved", "Capacity request approved"
    REQUEST_REJECTED = "request.rejected", "Capacity request rejected"
    ALLOCATION_CREATED = "allocation.created", "Allocation created"
    ALLOCATION_ENDED = "allocation.ended", "Allocation ended"
    RULE_CREATED = "rule.created", "Attribution rule created"
    RULE_CHANGED = "rule.changed", "Attribution rule changed"
    RULE_DELETED = "rule.deleted", "Attribution rule deleted"
    PRICE_PLAN_CREATED = "price_plan.created", "Price plan created"
    PRICE_PLAN_CHANGED = "price_plan.changed", "Price plan changed"
    MEMBER_INVITED = "member.invited", "Member invited"
    MEMBER_JOINED = "member.joined", "Member joined"
    MEMBER_REMOVED = "member.removed", "Member removed"
    API_KEY_CREATED = "api_key.created", "API key created"
    API_KEY_REVOKED = "api_key.revoked", "API key revoked"
    INVOICE_ISSUED = "invoice.issued", "Invoice issued"
    INVOICE_PAID = "invoice.paid", "Invoice paid"
    INVOICE_VOIDED = "invoice.voided", "Invoice voided"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ISSUED = "issued", "Issued"
    PAID = "paid", "Paid"
    VOID = "void", "Void"

    @classmethod
    def colors(cls) -> dict[str, str]:
        return {"draft": "gray", "issued": "blue", "paid": "green", "void": "red"}


# An issued invoice never changes (DESIGN.md §5.4): paid and void are its only ways on.
INVOICE_TRANSITIONS = {
    InvoiceStatus.DRAFT: {InvoiceStatus.ISSUED, InvoiceStatus.VOID},
    InvoiceStatus.ISSUED: {InvoiceStatus.PAID, InvoiceStatus.VOID},
    InvoiceStatus.PAID: set(),
    InvoiceStatus.VOID: set(),
}
# Invoices whose usage counts as billed: an issued period is closed to re-metering.
BILLED_STATUSES = (InvoiceStatus.ISSUED, InvoiceStatus.PAID)


class TokenKind(models.TextChoices):
    INPUT = "input", "Input tokens"
    OUTPUT = "output", "Output tokens"
