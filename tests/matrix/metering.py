"""Metering API routes."""

from tests.matrix import Case, tenant_people

CASES = [
    Case("usage-list", api=True, expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 200,
                                         **tenant_people(200)},
         hides=lambda w, o: [getattr(w, f"endpoint_{o}").name]),
    Case("usage-list", api=True, query="?bucket=week", id="GET usage-list bad bucket",
         expect={"anonymous": 401, "operator": 400, "viewer": 400, "outsider": 400,
                 **tenant_people(400)}),
]
