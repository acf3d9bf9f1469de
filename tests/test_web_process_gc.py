"""The web process (factory_portal/wsgi.py, which gunicorn and runserver load) freezes its loaded application out of
the garbage collector's reach and collects less often (factory_portal/runtime.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from factory_portal.runtime import WEB_GC_THRESHOLDS

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import gc, json
before = gc.get_threshold()
import factory_portal.wsgi
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "django_loaded": "django.urls" in __import__("sys").modules}))
"""


def test_loading_the_wsgi_application_tunes_the_collector():
    # when a fresh interpreter loads the WSGI application, as a gunicorn worker does
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environ, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # then the thresholds are the web process's, not CPython's defaults, and the loaded application (tens of
    # thousands of objects: Django, the apps, the URL conf) sits in the permanent generation
    assert tuple(seen["before"]) == (700, 10, 10)
    assert tuple(seen["after"]) == WEB_GC_THRESHOLDS
    assert seen["django_loaded"]
    assert seen["frozen"] > 20_000
