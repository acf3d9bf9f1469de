import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "factory_portal.settings")
application = get_wsgi_application()

from factory_portal.runtime import web_process_gc_tune  # noqa: E402  (after the app is loaded: it freezes it)

web_process_gc_tune()
