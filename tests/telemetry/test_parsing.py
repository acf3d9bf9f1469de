"""The fast parser against prometheus_client's on every fixture and on generated pages: identical samples."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from telemetry.parsing import ParseError, parse, parse_types

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
FIXTURES = sorted([*SHARED.glob("engines/*.prom"), *SHARED.glob("dcgm/*.prom")]) if SHARED.exists() else []


def reference(text: str) -> list[tuple]:
    """prometheus_client's samples, with its `_total` appended to un-suffixed counters taken off again."""
    declared = set(parse_types(text))
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if (family.type == "counter" and name == f"{family.name}_total" and family.name in declared
                    and f"{family.name}_total" not in declared):
                name = family.name
            out.append((name, s.labels, float(s.value), s.timestamp))
    return out


def ours(text: str, **kwargs) -> list[tuple]:
    return [(s.name, s.labels, s.value, s.timestamp) for s in parse(text, **kwargs)]


def same(a: list[tuple], b: list[tuple]) -> bool:
    def norm(rows):
        return [(n, labels, "nan" if math.isnan(v) else v, t) for n, labels, v, t in rows]

    return norm(a) == norm(b)


@pytest.mark.skipif(not FIXTURES, reason="../shared/fixtures is not present")
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_samples_match_prometheus_client(path: Path) -> None:
    # given
    text = path.read_text()
    # when
    expected, got = reference(text), ours(text)
    # then
    assert got and same(got, expected)


@pytest.mark.skipif(not FIXTURES, reason="../shared/fixtures is not present")
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_targeted_parse_returns_exactly_the_named_samples(path: Path) -> None:
    # given every third sample name of the page
    text = path.read_text()
    full = parse(text)
    names = sorted({s.name for s in full})[::3]
    # when
    got = parse(text, names=names)
    # then
    assert got == [s for s in full if s.name in set(names)]


_CHARS = ['a', 'Z', '0', ' ', '"', '\\', '\n', '}', '{', ',', '=', 'é', '#', '\t', 'n', '/', ':']


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _name(rng: random.Random) -> str:
    first = rng.choice("abcxyz_:ABC")
    return first + "".join(rng.choice("abc_:019XYZ") for _ in range(rng.randint(0, 12)))


def _value(rng: random.Random) -> str:
    return rng.choice([
        "NaN", "+Inf", "-Inf", str(rng.randint(-5, 10**12)), repr(rng.random() * 10 ** rng.randint(-5, 20)),
        f"{rng.random():.3e}", "0", "-0.0", "1e3",
    ])


def generated_page(rng: random.Random) -> str:
    lines: list[str] = []
    for _ in range(rng.randint(1, 12)):
        family = _name(rng)
        kind = rng.choice(["counter", "gauge", "histogram", "summary", "untyped"])
        if rng.random() < 0.8:
            lines.append(f"# HELP {family} Some help with \\\\ and \\n escapes.")
            lines.append(f"# TYPE {family} {kind}")
        suffixes = {"histogram": ["_bucket", "_sum", "_count"], "summary": ["", "_sum", "_count"]}.get(kind, [""])
        for _ in range(rng.randint(1, 5)):
            labels = {}
            for _ in range(rng.randint(0, 4)):
                label = rng.choice("abcdefgh") + "".join(rng.choice("xyz_09") for _ in range(rng.randint(0, 6)))
                labels[label] = "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 10)))
            for suffix in suffixes:
                items = [f'{k}="{_escape(v)}"' for k, v in labels.items()]
                if suffix == "_bucket":
                    items.append(f'le="{rng.choice(["0.1", "1.0", "+Inf"])}"')
                body = ("{" + ",".join(items) + ("," if items and rng.random() < 0.2 else "") + "}") if items or \
                    rng.random() < 0.1 else ""
                ts = f" {rng.randint(0, 2 * 10**12)}" if rng.random() < 0.2 else ""
                indent = " " if rng.random() < 0.05 else ""
                lines.append(f"{indent}{family}{suffix}{body} {_value(rng)}{ts}")
            if kind == "counter" and rng.random() < 0.3:
                lines.append(f"{family}_created{{}} {rng.randint(1, 2 * 10**9)}.0")
        if rng.random() < 0.2:
            lines.append("")
        if rng.random() < 0.2:
            lines.append("# just a comment")
    return "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")


@pytest.mark.parametrize("seed", range(300))
def test_generated_pages_match_prometheus_client(seed: int) -> None:
    # given a random page: names, labels with escapes, NaN/±Inf, timestamps, _created, comments, blanks
    text = generated_page(random.Random(seed))
    # when
    try:
        expected = reference(text)
    except ValueError:
        pytest.skip("prometheus_client refuses this page")
    got = ours(text)
    # then
    assert same(got, expected), text


@pytest.mark.parametrize("seed", range(300))
def test_targeted_parse_of_generated_pages_is_the_full_parse_filtered(seed: int) -> None:
    # given a random page and a random subset of its names (plus one absent name)
    rng = random.Random(seed)
    text = generated_page(rng)
    try:
        full = ours(text)
    except ParseError:
        pytest.skip("not a valid page")
    names = {row[0] for row in full if rng.random() < 0.5} | {"absent_metric"}
    # when
    got = ours(text, names=names)
    # then
    assert same(got, [row for row in full if row[0] in names]), text


@pytest.mark.parametrize("text", [
    "<html><body>Login</body></html>\n",
    'foo{a="b" c="d"} 1\n',
    'foo{a="b"} 1 2 3\n',
    "foo 1_000\n",
    'foo{a="unterminated} 1\n',
    "foo bar\n",
])
def test_garbage_is_refused(text: str) -> None:
    # given / when / then
    with pytest.raises(ParseError):
        parse(text)


def test_quoted_utf8_metric_names_are_read() -> None:
    # given
    text = '{"my.metric", a="b"} 2\n'
    # when
    samples = parse(text)
    # then
    assert [(s.name, s.labels, s.value) for s in samples] == [("my.metric", {"a": "b"}, 2.0)]


@pytest.mark.parametrize("text", [
    'foo{a="x} 5"} 1\n', 'foo{a="}",b="{"} 2 1000\n', 'foo {a="\\"}\\\\"} 3\n', "  foo{} 4\n", 'foo{a="b",} 5\n',
])
def test_targeted_parse_of_awkward_label_sets_matches_prometheus_client(text: str) -> None:
    # given label values holding braces and escapes, empty and trailing-comma label sets
    # when
    got = ours(text, names={"foo"})
    # then
    assert same(got, reference(text)) and len(got) == 1


@pytest.mark.parametrize("text", ['foo{a="b" c="d"} 1\n', "foo 1_000\n", 'foo{a="b"} 1 2 3\n', "foo bar\n",
                                  'foo{a="1",a="2"} 1\n'])
def test_targeted_parse_refuses_garbage_on_wanted_lines(text: str) -> None:
    # given / when / then
    with pytest.raises(ParseError):
        parse(text, names={"foo"})
