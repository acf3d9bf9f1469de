"""Dashboard performance: the live cards' figures (`sites_gpu_now`, each GPU's latest reading kept on its row by the
ingest) equal the slow way over the raw samples, and the fleet charts' cached settled days
(`sites_gpu_buckets`) equal the figures aggregated row by row, show a new rollup on the next refresh and never
serve one partner's figures to another."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from sites.dashboard import site_cards
from telemetry import gpu_selectors
from telemetry.models import GpuSample, SiteGpuRollup1m
from tests import factories
from tests.telemetry import dash_support as seed
from tests.telemetry.dash_support import NOW, frozen_now  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_now")]


def _slow_now(sites, now: dt.datetime) -> dict[int, dict]:
    """`sites_gpu_now` row by row from the raw samples: per site, each GPU's newest reading, counted when it is
    within the site's last 3 poll intervals; utilization averaged and power summed over the readings that had them."""
    out = {}
    for site in sites:
        since = now - dt.timedelta(seconds=gpu_selectors.LIVE_WINDOW_POLLS * site.gpu_poll_interval_s)
        newest: dict[int, GpuSample] = {}
        for s in GpuSample.objects.filter(gpu__node__site=site, ts__lte=now).order_by("ts"):
            newest[s.gpu_id] = s
        latest = [s for s in newest.values() if s.ts >= since]
        if not latest:
            continue
        utils = [s.util_pct for s in latest if s.util_pct is not None]
        powers = [s.power_w for s in latest if s.power_w is not None]
        out[site.pk] = {"gpus_reporting": len(latest), "util_mean_pct": sum(utils) / len(utils) if utils else None,
                        "power_w": sum(powers) if powers else None}
    return out


def test_live_figures_equal_the_slow_way_per_site_window(world) -> None:
    # given: site A polled every 10 s (30 s window), a second site of partner A polled every 60 s (180 s window),
    # partner B's site; readings inside and outside each window, some without utilization or power
    slow_site = factories.SiteFactory(partner=world.site_a.partner, gpu_poll_interval_s=60)
    gpu_a2 = factories.GpuFactory(node=world.node_a, index=1)
    gpu_slow = factories.GpuFactory(node=factories.NodeFactory(site=slow_site), index=0)
    gpu_gone = factories.GpuFactory(node=world.node_a, index=2)
    for gpu, ages, util, power in [
        (world.gpu_a, [1, 11, 21, 45], 40, 300.0),  # the 45 s reading is outside site A's 30 s window
        (gpu_a2, [15, 5], None, 500.0),  # no utilization; written oldest first
        (gpu_slow, [10, 70, 130, 170, 200], 80, None),  # no power; 200 s is outside the 180 s window
        (gpu_gone, [40, 50], 10, 1000.0),  # gone stale: its newest reading is older than site A's window
        (world.gpu_b, [2, 12], 99, 700.0),
    ]:
        for i, age in enumerate(ages):  # in the order listed: an older reading written later never rolls back
            seed.sample(gpu=gpu, ts=NOW - dt.timedelta(seconds=age), util_pct=None if util is None else util + i,
                        power_w=None if power is None else power + 10 * i)
    sites = [world.site_a, slow_site, world.site_b]
    # when
    fast = gpu_selectors.sites_gpu_now(user=world.users["viewer"], sites=sites, now=NOW)
    outsider = gpu_selectors.sites_gpu_now(user=world.users["outsider"], sites=sites, now=NOW)
    on_cards = {c.site.pk: c.shared["gpu_latest"] for c in site_cards(user=world.users["viewer"], now=NOW)}
    # then: partner A sees its two sites exactly as computed row by row, nothing of partner B's; the cards' figures
    # (from the inventory scan) are the selector's
    assert {k: v for k, v in on_cards.items() if v is not None} == fast
    slow = _slow_now(sites, NOW)
    assert set(fast) == {world.site_a.pk, slow_site.pk}
    for site_id, figures in fast.items():
        assert figures["gpus_reporting"] == slow[site_id]["gpus_reporting"]
        for key in ("util_mean_pct", "power_w"):
            assert (figures[key] is None) == (slow[site_id][key] is None)
            if figures[key] is not None:
                assert float(figures[key]) == pytest.approx(slow[site_id][key])
    assert fast[slow_site.pk]["power_w"] is None and fast[world.site_a.pk]["gpus_reporting"] == 2
    assert set(outsider) == {world.site_b.pk}
    assert float(outsider[world.site_b.pk]["util_mean_pct"]) == pytest.approx(99)
    assert fast[world.site_a.pk]["util_mean_pct"] == pytest.approx(40)  # gpu_a's newest; gpu_a2 has none
    assert fast[world.site_a.pk]["power_w"] == pytest.approx(300.0 + 510.0)  # gpu_a2's newest (5 s) is 510 W
    assert fast[slow_site.pk]["util_mean_pct"] == pytest.approx(80)


def test_new_reading_shows_on_the_next_live_refresh(world, client_for) -> None:
    # given: one reading at 20 % and the live JSON read once
    client = client_for("viewer")
    seed.sample(gpu=world.gpu_a, ts=NOW - dt.timedelta(seconds=20), util_pct=20, power_w=100.0)
    url = reverse("sites:site_data", args=[world.site_a.slug])
    key = f"site-{world.site_a.pk}-util"
    before = client.get(url).json()["fields"][key]
    # when: a new reading at 80 % arrives
    seed.sample(gpu=world.gpu_a, ts=NOW - dt.timedelta(seconds=1), util_pct=80, power_w=100.0)
    after = client.get(url).json()["fields"][key]
    # then: the next refresh shows the GPU's newest reading
    assert before == "20 %" and after == "80 %"


def _minutes(site, start: dt.datetime, minutes: int, *, phase: int = 0) -> None:
    """Per-site minute rollups whose utilization, sample counts and power vary (some minutes without power)."""
    SiteGpuRollup1m.objects.bulk_create([
        SiteGpuRollup1m(site=site, bucket=start + dt.timedelta(minutes=i), gpu_count=2, sample_count=12,
                        util_samples=0 if (i + phase) % 17 == 3 else 6 + (i * 7 + phase) % 11,
                        util_mean_pct=None if (i + phase) % 17 == 3 else float((i * 13 + phase) % 101),
                        util_max_pct=100, power_mean_w=None if i % 23 == 4 else 500.0 + (i * 31) % 400,
                        power_max_w=1000.0 + i % 50, energy_j=Decimal(6000 + i % 7),
                        energy_estimated=i % 97 == 1)
        for i in range(0, minutes, 7)])  # every 7th minute: fewer rows, buckets still cover the whole range


def _slow_hours(site, start: dt.datetime, end: dt.datetime) -> list[dict]:
    hours: dict[dt.datetime, dict] = {}
    for r in SiteGpuRollup1m.objects.filter(site=site, bucket__gte=start, bucket__lt=end).order_by("bucket"):
        h = hours.setdefault(r.bucket.replace(minute=0, second=0, microsecond=0),
                             {"w": 0.0, "n": 0, "p": [], "pmax": None, "e": None, "est": False})
        if r.util_samples:
            h["w"] += r.util_mean_pct * r.util_samples
            h["n"] += r.util_samples
        if r.power_mean_w is not None:
            h["p"].append(r.power_mean_w)
        h["pmax"] = r.power_max_w if h["pmax"] is None else max(h["pmax"], r.power_max_w)
        h["e"] = (h["e"] or Decimal(0)) + r.energy_j
        h["est"] = h["est"] or r.energy_estimated
    return [{"bucket": b, "util_mean_pct": h["w"] / h["n"] if h["n"] else None,
             "power_mean_w": sum(h["p"]) / len(h["p"]) if h["p"] else None, "power_max_w": h["pmax"],
             "energy_j": h["e"], "energy_estimated": h["est"]} for b, h in hours.items()]


def _same(rows: list[dict], slow: list[dict]) -> None:
    assert [r["bucket"] for r in rows] == [r["bucket"] for r in slow]
    for r, s in zip(rows, slow, strict=True):
        for key in ("util_mean_pct", "power_mean_w", "power_max_w"):
            assert (r[key] is None) == (s[key] is None), (r["bucket"], key)
            if s[key] is not None:
                assert r[key] == pytest.approx(s[key])
        assert r["energy_j"] == s["energy_j"] and r["energy_estimated"] == s["energy_estimated"]


def test_fleet_hours_cached_per_day_equal_the_slow_way_and_show_a_new_rollup(world) -> None:
    # given: 30 days (and the minutes of today) of uneven per-site minute rollups of both of partner A's sites
    start = NOW - dt.timedelta(days=30)
    site_2 = factories.SiteFactory(partner=world.site_a.partner)
    _minutes(world.site_a, start - dt.timedelta(hours=1), 31 * 24 * 60)
    _minutes(site_2, start, 30 * 24 * 60, phase=5)
    user, ids = world.users["viewer"], [world.site_a.pk, site_2.pk]
    # when: read cold, then warm (cached settled days)
    cold = gpu_selectors.sites_gpu_buckets(user=user, site_ids=ids, start=start, end=NOW, now=NOW)
    warm = gpu_selectors.sites_gpu_buckets(user=user, site_ids=ids, start=start, end=NOW, now=NOW)
    # then: both equal the hours aggregated row by row, the partial first day and today's tail included
    for site in (world.site_a, site_2):
        slow = _slow_hours(site, start, NOW)
        assert len(slow) >= 30 * 24 - 1  # hours of 30 days (the first one partial: the range starts at 12:00:30)
        _same(cold[site.pk], slow)
        _same(warm[site.pk], slow)
    # when: a rollup lands in the last minute
    SiteGpuRollup1m.objects.create(site=world.site_a, bucket=NOW.replace(second=0) - dt.timedelta(minutes=1),
                                   gpu_count=2, sample_count=12, util_samples=1000, util_mean_pct=0.0,
                                   util_max_pct=0, power_mean_w=None, power_max_w=0.0, energy_j=Decimal(1))
    again = gpu_selectors.sites_gpu_buckets(user=user, site_ids=ids, start=start, end=NOW, now=NOW)
    # then: the next refresh shows it despite the cache
    _same(again[world.site_a.pk], _slow_hours(world.site_a, start, NOW))
    assert again[world.site_a.pk][-1]["util_mean_pct"] < warm[world.site_a.pk][-1]["util_mean_pct"]


def test_fleet_cache_never_crosses_partners(world, client_for) -> None:
    # given: partner A's site with 30 days of minutes at 40 %, partner B's at 90 %, A's cache warmed
    start = NOW - dt.timedelta(days=30)
    seed.minute_rollups(site=world.site_a, start=start, minutes=30 * 24 * 60, util=40.0, power_w=1000.0)
    seed.minute_rollups(site=world.site_b, start=start, minutes=30 * 24 * 60, util=90.0, power_w=5000.0)
    ids = [world.site_a.pk, world.site_b.pk]
    viewer = gpu_selectors.sites_gpu_buckets(user=world.users["viewer"], site_ids=ids, start=start, end=NOW, now=NOW)
    # when: partner B's member asks for both sites (A's days are in the cache), and their overview chart
    outsider = gpu_selectors.sites_gpu_buckets(user=world.users["outsider"], site_ids=ids, start=start, end=NOW,
                                               now=NOW)
    figure = client_for("outsider").get(reverse("sites:overview_chart", args=["utilization"]) + "?range=30d").json()
    # then: each sees only its own partner's figures
    assert viewer[world.site_b.pk] == [] and outsider[world.site_a.pk] == []
    assert viewer[world.site_a.pk] and all(r["util_mean_pct"] == pytest.approx(40.0) for r in viewer[world.site_a.pk])
    assert outsider[world.site_b.pk] and all(r["util_mean_pct"] == pytest.approx(90.0)
                                             for r in outsider[world.site_b.pk])
    ys = [y for trace in figure["data"] for y in trace["y"] if y is not None]
    assert ys and all(y == pytest.approx(90.0) for y in ys)
    assert world.site_a.name not in str(figure)
