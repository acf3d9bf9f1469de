"""GPU-hours of a site (the capex basis of its cards and economics), summed in the database."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection

from sites.models import Gpu
from tenants.economics_selectors import site_gpu_hours
from tests.factories import GpuFactory, NodeFactory, SiteFactory

START = dt.datetime(2026, 3, 10, 0, 0, tzinfo=dt.UTC)
END = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.mark.django_db
def test_gpu_hours_count_each_gpu_from_its_registration_exactly():
    # given GPUs registered long before the window, inside it (to the microsecond), at its end and after it
    site = SiteFactory()
    node = NodeFactory(site=site)
    other_site_node = NodeFactory()
    registered = [START - dt.timedelta(days=90), START, START + dt.timedelta(hours=2, microseconds=1),
                  START + dt.timedelta(hours=11, minutes=59, seconds=59, microseconds=999_999), END,
                  END + dt.timedelta(days=1)]
    for i, at in enumerate(registered):
        gpu = GpuFactory(node=node, index=i)
        Gpu.objects.filter(pk=gpu.pk).update(created_at=at)
    GpuFactory(node=other_site_node)  # another site's GPU counts nowhere here
    # when
    gpus, gpu_hours = site_gpu_hours(site=site, start=START, end=END)
    # then every GPU is counted, and the hours are exact: 12 + 12 + (10 h − 1 µs) + 1 µs + 0 + 0 = 34 h
    assert connection.vendor == "postgresql"
    assert gpus == 6
    assert gpu_hours == Decimal(34)
