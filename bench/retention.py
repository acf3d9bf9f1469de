"""Retention benchmark: removing a day of raw GPU samples by dropping its partition (the project's
`gpu_sample_retention_apply`) next to `DELETE ... WHERE ts < cutoff` of the same rows from an unpartitioned copy
of the table (same columns, PK (gpu_id, ts), BRIN on ts), in the same run, at two sizes of a day, on two clusters:

* the throwaway test cluster of `scripts/with_postgres.sh` (`fsync=off synchronous_commit=off full_page_writes=off`),
* a private cluster started here from the same `PG_BIN` with PostgreSQL's default durability settings (all three
  on), as production runs: there a DELETE also writes a full-page image of every page it touches first after a
  checkpoint, and its commit waits for the WAL flush.

    scripts/with_postgres.sh .venv/bin/python bench/retention.py [--gpus 100,200] [--hot-gpus 100] [--test-gpus 100]

Two states of the day being removed, on the private cluster: **aged out** (the default, what a retention run meets:
the day is `RAW_SAMPLE_RETENTION_DAYS` old, so neither PostgreSQL's shared buffers nor the kernel's page cache hold
it — the cluster is restarted after the checkpoint and both sides' table, index and TOAST files are dropped from the
page cache with `posix_fadvise(DONTNEED)`; the catalogs stay cached, as on a running server) and **just written**
(both tables still in memory: the drop then also pays for evicting the day's cached pages, the DELETE reads nothing
from disk).

A day at the issue's scale (10,000 GPUs every 10 s) is 86.4 M rows, too many to seed here in a benchmark's time;
two smaller days show how each side grows. Rows are generated server-side (`INSERT ... SELECT generate_series`,
every column filled as a real reading fills it), not timed. Each run builds both sides the same way, untimed: the
day partition and the unpartitioned table are filled, indexed and vacuumed, then a CHECKPOINT (a week-old day has
long been checkpointed). Both removals are timed to their commit (autocommit): the drop's file release and the
DELETE's WAL flush are part of what each costs. The VACUUM a DELETE leaves behind, and a drop does not, is not
counted. Nothing is tuned for either side: both clusters keep every other setting at its default.

The private clusters' data lives on a fresh ext4 on a loop device, mounted without online discard, as database
volumes are (`--data-fs tmp`: the temporary directory instead): this VM's root filesystem is mounted with
`discard`, which TRIMs every block of a released file before the release returns, so a drop there measures the
disk's TRIM (≈ 0.2 ms per MiB). The report gives that cost, measured in the same run, and what it would make of the
first row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import setup_django  # noqa: E402

PLAIN = "bench_gpusample_plain"
DAY0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# The columns of telemetry.ingest.SAMPLE_COLUMNS, as an NVML reading of an H100 fills them.
SELECT_ROWS = (
    "SELECT g, %(start)s + s * interval '{interval} seconds', 'nvml', (s + g) %% 101, 40, 40000000000 + s, "
    "350.0 + (s * 7 + g) %% 350 + 0.125, 1000000000 + s::bigint * 4000000 + g, 55, 1980, 2619, 0, 0, NULL, 0, "
    "'{{\"retired_pages_pending\": \"NVMLError_NotSupported: Not Supported\"}}'::jsonb "
    "FROM unnest(%(gpus)s::bigint[]) g, generate_series(%(first)s, %(last)s) s"
)
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")
HEADER = ("| cluster (settings), state of the day | day | retention (detach + drop) | of which parent locked | DELETE "
          "| speed-up (target ≥ 20×; per run) | VACUUM after the DELETE | speed-up counting it |\n"
          "|---|---|---|---|---|---|---|---|")


def measure(args: argparse.Namespace) -> dict:
    """Time both removals on the cluster of DATABASE_URL; the results as a dict (printed as JSON by --measure)."""
    setup_django()

    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from telemetry.ingest import SAMPLE_COLUMNS, TABLE
    from telemetry.retention import (
        forget_known_partitions,
        gpu_sample_partitions_ensure,
        gpu_sample_retention_apply,
        partition_name,
    )
    from tests import factories

    with connection.cursor() as cursor:
        settings_now = {}
        for name in DURABILITY:
            cursor.execute(f"SHOW {name}")
            settings_now[name] = cursor.fetchone()[0]
    sizes = [int(n) for n in args.gpus.split(",")]
    node = factories.NodeFactory(hostname="bench-retention")
    gpu_ids = [factories.GpuFactory(node=node, index=i % 8).pk for i in range(max(sizes))]
    per_day = 86400 // args.interval
    hour_rows = 3600 // args.interval
    columns = ", ".join(SAMPLE_COLUMNS)
    select = SELECT_ROWS.format(interval=args.interval)
    day0 = partition_name(DAY0.date())
    # "now" such that day 0 is past retention and day 1 is not.
    now = DAY0 + dt.timedelta(days=1 + 7, hours=12)

    def fill(cursor, table: str, gpus: list[int], first: int, last: int) -> None:
        cursor.execute(f"INSERT INTO {table} ({columns}) {select}",
                       {"start": DAY0, "gpus": gpus, "first": first, "last": last})

    def fresh_day0(cursor, gpus: list[int]) -> None:
        """Day 0 as a partition built the fast way (fill, index, attach), the same files as ingest leaves."""
        cursor.execute(f'CREATE TABLE "{day0}" (LIKE {TABLE} INCLUDING DEFAULTS)')
        fill(cursor, f'"{day0}"', gpus, 0, per_day - 1)
        cursor.execute(f'ALTER TABLE "{day0}" ADD PRIMARY KEY (gpu_id, ts)')
        cursor.execute(f'CREATE INDEX ON "{day0}" USING brin (ts)')
        cursor.execute(f'ALTER TABLE {TABLE} ATTACH PARTITION "{day0}" FOR VALUES FROM (%s) TO (%s)',
                       [DAY0, DAY0 + dt.timedelta(days=1)])
        cursor.execute(f'VACUUM ANALYZE "{day0}"')

    def fresh_plain(cursor, gpus: list[int]) -> None:
        """The same day plus the next day's first hour in one unpartitioned table, built the same way."""
        cursor.execute(f"DROP TABLE IF EXISTS {PLAIN}")
        cursor.execute(f"CREATE TABLE {PLAIN} (LIKE {TABLE} INCLUDING DEFAULTS)")
        fill(cursor, PLAIN, gpus, 0, per_day + hour_rows - 1)
        cursor.execute(f"ALTER TABLE {PLAIN} ADD PRIMARY KEY (gpu_id, ts)")
        cursor.execute(f"CREATE INDEX {PLAIN}_ts_brin ON {PLAIN} USING brin (ts)")
        cursor.execute(f"VACUUM ANALYZE {PLAIN}")

    def forget_cached_pages() -> int:
        """The state of a day that aged out: a restarted server (nothing in shared buffers), and the files of both
        sides' tables, indexes and TOAST dropped from the kernel's page cache (clean after the checkpoint). The
        catalogs stay in the page cache, as on a server that runs. Bytes advised."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = ANY(%s::regclass[]) "
                "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = ANY(%s::regclass[])) "
                "OR c.oid IN (SELECT reltoastrelid FROM pg_class WHERE oid = ANY(%s::regclass[])) "
                "OR c.oid IN (SELECT i.indexrelid FROM pg_index i JOIN pg_class t ON t.reltoastrelid = i.indrelid "
                "WHERE t.oid = ANY(%s::regclass[]))", [[f'"{day0}"', PLAIN]] * 4)
            stems = [row[0] for row in cursor.fetchall() if row[0]]
        connection.close()
        subprocess.run(json.loads(args.restart_cmd), check=True, capture_output=True, timeout=120)
        advised = 0
        for stem in stems:
            for path in Path(args.data_dir).glob(stem + "*"):  # segments .1, .2 … and the _fsm / _vm forks
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    advised += os.fstat(fd).st_size
                finally:
                    os.close(fd)
        connection.ensure_connection()
        return advised

    results = []
    started = time.perf_counter()
    for size in sizes:
        gpus = gpu_ids[:size]
        forget_known_partitions()
        gpu_sample_partitions_ensure(days=[(DAY0 + dt.timedelta(days=1)).date()])
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {TABLE}")
            cursor.execute(f'DROP TABLE IF EXISTS "{day0}"')
            # The next day's first hour stays on both sides (what DELETE has to step over is the index).
            fill(cursor, TABLE, gpus, per_day, per_day + hour_rows - 1)
        drop_s, detach_s, delete_s, vacuum_s = [], [], [], []
        day_bytes = 0
        for run in range(args.runs):
            with connection.cursor() as cursor:
                fresh_day0(cursor, gpus)
                fresh_plain(cursor, gpus)
                cursor.execute(f"SELECT pg_total_relation_size('\"{day0}\"')")
                day_bytes = cursor.fetchone()[0]
                cursor.execute("CHECKPOINT")  # a week-old day has long been checkpointed, on both sides
            if args.aged:
                assert forget_cached_pages() >= day_bytes
            with override_settings(RAW_SAMPLE_RETENTION_DAYS=7), CaptureQueriesContext(connection) as queries:
                began = time.perf_counter()
                result = gpu_sample_retention_apply(now=now)
                drop_s.append(time.perf_counter() - began)
            assert result["partitions_dropped"] == 1, result
            detach_s.append(sum(float(q["time"]) for q in queries.captured_queries if "DETACH" in q["sql"]))
            if os.environ.get("BENCH_RETENTION_TRACE"):
                for q in queries.captured_queries:
                    print(f"  {float(q['time']) * 1000:8.1f} ms  {q['sql'][:110]}", file=sys.stderr)
            with connection.cursor() as cursor:  # autocommit: the statement and its commit (WAL flush)
                began = time.perf_counter()
                cursor.execute(f"DELETE FROM {PLAIN} WHERE ts < %s", [DAY0 + dt.timedelta(days=1)])
                delete_s.append(time.perf_counter() - began)
                deleted = cursor.rowcount
                cursor.execute(f"SELECT count(*) FROM {TABLE}")
                kept = cursor.fetchone()[0]
                cursor.execute(f"SELECT count(*) FROM {PLAIN}")
                plain_kept = cursor.fetchone()[0]
                # The dead rows a DELETE leaves must be vacuumed away (autovacuum would); a drop leaves none.
                began = time.perf_counter()
                cursor.execute(f"VACUUM {PLAIN}")
                vacuum_s.append(time.perf_counter() - began)
            assert deleted == size * per_day and kept == plain_kept == size * hour_rows, (deleted, kept, plain_kept)
            print(f"{size} GPUs, run {run + 1}: retention {drop_s[-1] * 1000:.1f} ms (DETACH "
                  f"{detach_s[-1] * 1000:.1f} ms), DELETE {delete_s[-1] * 1000:.0f} ms (+ VACUUM "
                  f"{vacuum_s[-1] * 1000:.0f} ms); at "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
        results.append({"gpus": size, "rows": size * per_day, "day_bytes": day_bytes, "drop_s": drop_s,
                        "detach_s": detach_s, "delete_s": delete_s, "vacuum_s": vacuum_s})
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PLAIN}")
    return {"settings": settings_now, "results": results, "took_s": time.perf_counter() - started,
            "aged": bool(args.aged)}


def mount_options(path: Path) -> tuple[str, str]:
    """(filesystem type, mount options) of the filesystem holding `path`, from /proc/mounts."""
    best = ("", "", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, point, fstype, options, *_ = line.split()
            if str(path.resolve()).startswith(point.rstrip("/") + "/") or str(path.resolve()) == point:
                if len(point) >= len(best[0]):
                    best = (point, fstype, options)
    except OSError:
        pass
    return best[1], best[2]


def file_release_ms_per_mib(directory: Path, mib: int = 64) -> float:
    """What releasing a file's blocks costs on the filesystem of `directory`, per MiB: a file written and synced,
    dropped from the page cache, then truncated to nothing (what PostgreSQL does to a dropped table's files at
    commit). With ext4's online `discard` the truncate TRIMs every freed block before it returns."""
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        chunk = os.urandom(1 << 20)
        for _ in range(mib):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        began = time.perf_counter()
        os.ftruncate(f.fileno(), 0)
        return (time.perf_counter() - began) * 1000 / mib


class DataFilesystem:
    """Where the private cluster keeps its data: by default a fresh ext4 on a loop device (direct I/O, so reads of
    an aged-out day go to the disk, not to the page cache of the image file) mounted *without* online discard, as
    database volumes are mounted (`fstrim` on a timer instead). This VM's root filesystem is mounted with `discard`,
    which makes every file release a synchronous TRIM of its blocks (≈ 0.2 ms per MiB here): a partition drop would
    measure the disk's TRIM, not PostgreSQL. Needs root and a loop device; otherwise (or with `--data-fs tmp`) the
    system's temporary directory, and the report says which."""

    def __init__(self, kind: str, size_gib: int = 8) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="fp-pgbench-fs."))
        self.base.chmod(0o755)  # the cluster's user must reach its directory below
        self.image = self.base / "data.ext4"
        self.mountpoint = self.base / "mnt"
        self.loop = ""
        self.kind = "tmp"
        if kind == "loop" and os.geteuid() == 0 and shutil.which("losetup") and shutil.which("mkfs.ext4"):
            try:
                self.mountpoint.mkdir()
                with open(self.image, "wb") as f:
                    f.truncate(size_gib << 30)  # sparse
                subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", str(self.image)], check=True,
                               capture_output=True, timeout=120)
                self.loop = subprocess.run(["losetup", "--direct-io=on", "-f", "--show", str(self.image)], check=True,
                                           capture_output=True, text=True, timeout=60).stdout.strip()
                subprocess.run(["mount", self.loop, str(self.mountpoint)], check=True, capture_output=True, timeout=60)
                self.kind = "loop"
            except (OSError, subprocess.SubprocessError) as exc:
                print(f"no loop-mounted data filesystem ({exc}); using {tempfile.gettempdir()}", file=sys.stderr)
                self.release()
                self.base = Path(tempfile.mkdtemp(prefix="fp-pgbench-fs."))
                self.base.chmod(0o755)
        self.root = self.mountpoint if self.kind == "loop" else self.base

    def describe(self) -> str:
        fstype, options = mount_options(self.root)
        discard = "with online `discard`" if "discard" in options.split(",") else "without online discard"
        where = "a loop device (direct I/O) over a sparse image" if self.kind == "loop" else "the temporary directory"
        return f"{fstype or 'unknown'} {discard}, on {where}"

    def release(self) -> None:
        if self.loop:
            subprocess.run(["umount", str(self.mountpoint)], capture_output=True, timeout=120)
            subprocess.run(["losetup", "-d", self.loop], capture_output=True, timeout=60)
            self.loop = ""
        shutil.rmtree(self.base, ignore_errors=True)


class DefaultDurabilityCluster:
    """A private cluster from the same binaries as scripts/with_postgres.sh, with PostgreSQL's default durability
    (fsync, synchronous_commit, full_page_writes all on), its data under `root`; as root it runs as the unprivileged
    user `fptest`."""

    def __init__(self, root: Path | None = None) -> None:
        import socket

        self.bin = Path(os.environ.get("PG_BIN", ""))
        if not (self.bin / "initdb").exists():
            sys.exit("PG_BIN must name PostgreSQL's server binaries (scripts/with_postgres.sh exports it).")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = Path(tempfile.mkdtemp(prefix="fp-pgbench.", dir=root))
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, user="fptest")  # with_postgres.sh created the user
            self.run_as = ["runuser", "-u", "fptest", "--"]

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/factory_portal"

    def start(self) -> None:
        # initdb's own --no-sync only skips syncing its template files; the server below runs with the defaults.
        subprocess.run([*self.run_as, str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                        "-A", "trust", "--no-sync"], check=True, capture_output=True, timeout=120)
        subprocess.run([*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
                        str(self.dir / "server.log"), "-w", "-o",
                        f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True, timeout=120)

    @property
    def restart_cmd(self) -> list[str]:
        return [*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
                str(self.dir / "server.log"), "-m", "fast", "-w", "restart"]

    def stop(self) -> None:
        subprocess.run([*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_measure(args: argparse.Namespace, database_url: str, gpus: str,
                aged_on: DefaultDurabilityCluster | None = None) -> dict:
    aged = ["--aged", "--restart-cmd", json.dumps(aged_on.restart_cmd), "--data-dir", str(aged_on.dir / "data")] \
        if aged_on else []
    out = subprocess.run([sys.executable, __file__, "--measure", "--gpus", gpus, "--interval", str(args.interval),
                          "--runs", str(args.runs), *aged],
                         env={**os.environ, "DATABASE_URL": database_url}, stdout=subprocess.PIPE, text=True,
                         timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", default="100,200",
                        help="GPUs per day on the default-durability cluster, one size per comma-separated value")
    parser.add_argument("--hot-gpus", default="100",
                        help="GPUs per day for the just-written case on the default-durability cluster (empty: skip)")
    parser.add_argument("--test-gpus", default="", help="the same on the test cluster, just written (empty: skip)")
    parser.add_argument("--interval", type=int, default=10, help="seconds between samples (the default poll)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-fs", choices=("loop", "tmp"), default="loop",
                        help="the private clusters' data filesystem: a loop-mounted ext4 without online discard "
                             "(needs root), or the temporary directory")
    parser.add_argument("--measure", action="store_true", help="internal: measure on DATABASE_URL, print JSON")
    parser.add_argument("--aged", action="store_true", help="internal: with --measure, the aged-out state")
    parser.add_argument("--restart-cmd", default="[]", help="internal: argv restarting the measured cluster")
    parser.add_argument("--data-dir", default="", help="internal: that cluster's data directory")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Run under scripts/with_postgres.sh (DATABASE_URL must point to PostgreSQL).")

    started = time.perf_counter()
    clusters = []
    tmp_fs = mount_options(Path(tempfile.gettempdir()))
    tmp_release = file_release_ms_per_mib(Path(tempfile.gettempdir()))
    data_fs = DataFilesystem(args.data_fs)
    try:
        fs_text = data_fs.describe()
        fs_release = file_release_ms_per_mib(data_fs.root)
        private = DefaultDurabilityCluster(data_fs.root)
        try:
            private.start()
            print("private cluster with default durability, aged-out days...", file=sys.stderr)
            clusters.append(("production defaults, day aged out", run_measure(args, private.url, args.gpus, private)))
        finally:
            private.stop()
        if args.hot_gpus:
            private = DefaultDurabilityCluster(data_fs.root)  # a fresh one: each measurement seeds its own inventory
            try:
                private.start()
                print("private cluster with default durability, just-written days...", file=sys.stderr)
                clusters.append(("production defaults, day just written",
                                 run_measure(args, private.url, args.hot_gpus)))
            finally:
                private.stop()
    finally:
        data_fs.release()
    if args.test_gpus:
        print("test cluster (scripts/with_postgres.sh)...", file=sys.stderr)
        clusters.append(("test cluster, day just written",
                         run_measure(args, os.environ["DATABASE_URL"], args.test_gpus)))

    per_day = 86400 // args.interval
    lines = []
    for label, data in clusters:
        durability = ", ".join(f"`{k}={v}`" for k, v in data["settings"].items())
        for r in data["results"]:
            drop, detach, delete, vacuum = (statistics.median(r[k]) for k in ("drop_s", "detach_s", "delete_s",
                                                                                "vacuum_s"))
            ratios = [d / x for d, x in zip(r["delete_s"], r["drop_s"], strict=True)]
            with_vacuum = statistics.median(
                (d + v) / x for d, v, x in zip(r["delete_s"], r["vacuum_s"], r["drop_s"], strict=True))
            lines.append(
                f"| {label} ({durability}) | {r['gpus']:,} GPUs: {r['rows']:,} rows, {r['day_bytes'] / 2**20:,.0f} MiB "
                f"| {drop * 1000:.1f} ms | {detach * 1000:.1f} ms | {delete * 1000:,.0f} ms | {delete / drop:,.0f}× "
                f"({', '.join(f'{x:.0f}×' for x in ratios)}) | {vacuum * 1000:,.0f} ms | {with_vacuum:,.0f}× |")
    table = "\n".join(lines)
    first = clusters[0][1]["results"][0] if clusters and clusters[0][1]["results"] else None
    discard_note = ""
    if first and "discard" in tmp_fs[1].split(",") and data_fs.kind == "loop":
        mib = first["day_bytes"] / 2**20
        drop, delete = statistics.median(first["drop_s"]), statistics.median(first["delete_s"])
        extra = tmp_release * mib / 1000
        discard_note = (
            f" On this machine's temporary directory ({tmp_fs[0]} mounted with online `discard`), releasing a file "
            f"measured {tmp_release:.2f} ms per MiB in this run ({fs_release:.3f} on the data filesystem): there, "
            f"dropping the {first['gpus']:,}-GPU day ({mib:,.0f} MiB) would take ≈ {(drop + extra) * 1000:.0f} ms "
            f"and the speed-up be ≈ {delete / (drop + extra):.0f}× — the disk's TRIM, not PostgreSQL. Mount the "
            "data volume without `discard` and trim it with `fstrim` on a timer (docs/scaling.md).")
    print(f"""## Retention (`bench/retention.py`)

Removing one day of raw GPU samples (one sample every {args.interval} s per GPU: {per_day:,} rows per GPU, every
column filled as a reading fills it) from a table that also holds the next day's first hour: the project's retention
(`gpu_sample_retention_apply`: DETACH the day's partition, then DROP it; 1-minute rollup retention included) next to
`DELETE ... WHERE ts < cutoff` on an unpartitioned table with the same rows, PK and BRIN index. Both sides are
freshly built (filled, indexed, vacuumed) and checkpointed before each run and timed to their commit. Each figure
is taken under the settings shown, on a private cluster started from the same binaries with PostgreSQL's default
durability, as production runs (there the DELETE also writes a full-page image of each page it touches to the WAL
and waits for its flush). **Aged out** is what a retention run meets, the figure of record: the day is
`RAW_SAMPLE_RETENTION_DAYS` old, so it is in neither PostgreSQL's shared buffers nor the kernel's page cache (the
cluster is restarted after the checkpoint and both sides' files are dropped from the page cache alike; the catalogs
stay cached, as on a running server): the DELETE has to read the day from disk, the drop only releases its files.
**Just written** keeps both tables in memory: the drop then also pays for evicting the day's cached pages, and the
DELETE reads nothing from disk.
The private clusters keep their data on {fs_text}.{discard_note}
Median of {args.runs} runs per size. "Parent locked" is the DETACH statement: the only time the partitioned table
that ingest and the dashboards use is locked; the DROP after it locks only the detached table. The VACUUM of the
rows a DELETE leaves dead (autovacuum would run it; a drop leaves nothing to vacuum) is shown apart.

{HEADER}
{table}

_All of it took {time.perf_counter() - started:.0f} s (setup included)._
""")


if __name__ == "__main__":
    main()
