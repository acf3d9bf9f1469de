"""Shared model pieces: the abstract BaseModel and the scoping queryset every app uses."""

from __future__ import annotations

from django.db import models


class BaseModel(models.Model):
    """Timestamps every row carries."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
