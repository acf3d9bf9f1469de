"""Who did what to which object, and when. Written by services only, never edited."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from factory_portal.models import BaseModel
from tenants.choices import AuditAction
from tenants.models.scoping import TenantScopedQuerySet


class AuditEventQuerySet(TenantScopedQuerySet):
    partner_path = "partner"


class AuditEvent(BaseModel):
    """One audited change. `tenant` is set when the event concerns one tenant (its people then see it too)."""

    partner = models.ForeignKey("sites.Partner", on_delete=models.PROTECT, related_name="audit_events")
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="Who, as written at the time (survives user deletion).")
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=40)
    summary = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label}: {self.summary}"
