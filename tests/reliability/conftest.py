"""The real-Chromium harness of tests/browser, for the stored-XSS test here."""

from tests.browser.conftest import browser, page_for  # noqa: F401 - pytest fixtures
