"""Two ingest workers creating the same day partition at once: neither fails, the day exists once."""

import datetime as dt
import threading

import pytest
from django.db import connection, connections, transaction

from telemetry.retention import existing_partitions, forget_known_partitions, gpu_sample_partitions_ensure


@pytest.mark.django_db(transaction=True)
def test_concurrent_partition_creation_for_the_same_day_does_not_fail():
    # given two threads (two database connections) that both need 2031-05-05
    day = dt.date(2031, 5, 5)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def ingest() -> None:
        try:
            forget_known_partitions()
            with transaction.atomic():
                barrier.wait(timeout=10)
                gpu_sample_partitions_ensure(days=[day])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ingest) for _ in range(2)]
    # when
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # then
    assert errors == []
    forget_known_partitions()
    assert day in existing_partitions()
    assert connection.vendor == "postgresql"
