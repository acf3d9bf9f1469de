"""Shared DRF pieces: role permission, scoped related fields, token login."""

from __future__ import annotations

from django.db.models import Model
from rest_framework import permissions, serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle


def partner_id_of(obj: Model) -> int | None:
    """The partner that owns an inventory object (walks the FK path the scoping querysets use)."""
    path = type(obj)._default_manager.get_queryset().partner_path
    if path == "pk":
        return obj.pk
    target = obj
    for part in path.split("__")[:-1]:
        target = getattr(target, part)
    return getattr(target, f"{path.split('__')[-1]}_id")


class PartnerRolePermission(permissions.IsAuthenticated):
    """Members read; owners and operators write. Other partners' objects never reach here (404)."""

    message = "Your role at this partner is read-only."

    def has_object_permission(self, request: Request, view, obj: Model) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        from sites.selectors import user_can_write_partner

        return user_can_write_partner(user=request.user, partner_id=partner_id_of(obj))


class VisibleRelatedField(serializers.PrimaryKeyRelatedField):
    """A PK field whose choices are the objects the requesting user may see."""

    def get_queryset(self):
        request = self.context.get("request")
        queryset = super().get_queryset()
        return queryset.visible_to(request.user) if request is not None else queryset.none()


class TokenLoginSerializer(AuthTokenSerializer):
    # Bounded like the user model's field, so absurd input is a 400 before it reaches the lockout log.
    username = serializers.CharField(label="Username", max_length=150, write_only=True)
    password = serializers.CharField(label="Password", max_length=4096, write_only=True, trim_whitespace=False,
                                     style={"input_type": "password"})


class TokenLoginView(ObtainAuthToken):
    """POST username and password, get `{"token": ...}` for `Authorization: Token ...`."""

    serializer_class = TokenLoginSerializer

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"
