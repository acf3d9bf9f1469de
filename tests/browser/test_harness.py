"""The harness itself: its console and request guards do catch what they must."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_guards_catch_console_errors_and_requests_leaving_the_machine(page_for, world) -> None:
    # given
    bp = page_for("operator")
    bp.goto("/")
    # when
    bp.page.evaluate("() => console.error('boom from the page')")
    bp.page.evaluate("() => fetch('http://192.0.2.10/beacon').catch(() => null)")  # TEST-NET-1: never routed
    bp.page.evaluate("() => { setTimeout(() => { throw new Error('uncaught in page'); }, 0); }")
    bp.page.wait_for_timeout(300)
    # then
    assert any("boom from the page" in e for e in bp.console_errors)
    assert any("uncaught in page" in e for e in bp.console_errors)
    assert bp.blocked_requests == ["http://192.0.2.10/beacon"]
    with pytest.raises(AssertionError):
        bp.assert_clean()
    # The aborted request also logs a console error; reset so the fixture's own teardown check passes.
    bp.console_errors.clear()
    bp.blocked_requests.clear()
