"""`manage.py scrape_engine URL [--engine NAME] [--json]`: one stateless scrape, nothing stored."""

from __future__ import annotations

import asyncio
import json as jsonlib

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sites.choices import Engine
from telemetry.collectors import engines
from telemetry.collectors.fetch import FetchPolicy, FetchTarget, fetch_many
from telemetry.parsing import ParseError


class Command(BaseCommand):
    help = "Scrape one engine /metrics URL once and print its normalized series (absent = null)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url")
        parser.add_argument("--engine", default="auto", choices=Engine.values)
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, url: str, engine: str, json: bool, **options) -> None:
        result = asyncio.run(fetch_many([FetchTarget(key=0, url=url)], FetchPolicy.from_settings()))[0]
        if result.error is not None:
            raise CommandError(f"{url}: {result.error}")
        try:
            scrape = engines.normalize(result.text or "", engine=engine)
        except (ParseError, engines.EngineError) as exc:
            raise CommandError(f"{url}: {exc}") from None
        # Shown summed over split labels (vLLM: over `engine`), as the issue specifies; deltas never are.
        scrape = scrape.summed()
        if json:
            self.stdout.write(_dumps(scrape.as_json()))
            return
        self.stdout.write(f"engine: {scrape.engine}")
        for s in scrape.series:
            labels = ", ".join(f"{k}={v}" for k, v in s.labels.items())
            self.stdout.write(
                f"  {s.model or '(no model label)'}{' {' + labels + '}' if labels else ''}: "
                f"prompt_tokens={_fmt(s.prompt_tokens)} generation_tokens={_fmt(s.generation_tokens)} "
                f"requests_ok={_fmt(s.requests_ok)} requests_failed={_fmt(s.requests_failed)} "
                f"running={_fmt(s.running)} waiting={_fmt(s.waiting)} kv_cache_usage={_fmt(s.kv_cache_usage)}"
            )


def _dumps(data: dict) -> str:
    return jsonlib.dumps(data, allow_nan=False)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"
