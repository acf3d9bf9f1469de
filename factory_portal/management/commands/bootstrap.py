"""First-run setup for `make run`: an administrator account on an empty database, and how to log in."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first administrator on an empty database and print how to log in."

    def handle(self, *args, **options) -> None:
        users = get_user_model().objects
        port = os.environ.get("PORT", "8000")
        if users.exists():
            self.stdout.write(f"Log in at http://127.0.0.1:{port}/accounts/login/ with an existing account.")
            return
        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.create_superuser(username="admin", email="admin@localhost", password=password)
        self.stdout.write(f"Created the platform administrator: username admin, password {password}")
        self.stdout.write("(printed once; set ADMIN_PASSWORD to choose it). Django admin: /admin/")
