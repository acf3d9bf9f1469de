"""A fast parser for the Prometheus text exposition format (version 0.0.4).

Two modes:

* `parse(text)` returns every sample of the page, in page order.
* `parse(text, names={...})` returns only the samples whose name is in `names`; the other lines are skipped
  after a prefix check, without being parsed. An engine adapter asks only for the ~20 names it maps, which
  skips histogram buckets, `python_*` / `process_*` families and everything else it does not use.

It reads what `prometheus_client.parser` reads (tests/telemetry/test_parsing.py compares both on every fixture
and on generated pages): label-value escapes (`\\\\`, `\\"`, `\\n`), `NaN` / `+Inf` / `-Inf`, optional
millisecond timestamps (returned in seconds), comments and `# HELP` / `# TYPE` lines, blank lines, leading
whitespace, `_created` series, trailing commas in label sets and quoted (UTF-8) metric names. Two differences
on purpose: sample names are returned as written (prometheus_client appends `_total` to samples of a counter
declared without it, e.g. Triton's `nv_inference_request_success`), and a line with more than a value and a
timestamp is an error instead of silently using the last field as the timestamp.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from typing import NamedTuple

__all__ = ["ParseError", "Sample", "parse", "parse_types"]


class ParseError(ValueError):
    """The page is not valid Prometheus text format; the message names the line."""


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None  # seconds since the epoch; the format carries milliseconds


# A label value: anything but a quote, a backslash or a newline, or an escaped character.
_VALUE = r'"([^"\\\n]*(?:\\.[^"\\\n]*)*)"'
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
# A well-formed label set between the braces: `name="value"` pairs, commas between, an optional trailing comma.
_LABEL_BODY_PATTERN = (
    r"(?:[ \t]*" + _LABEL_NAME + r"[ \t]*=[ \t]*\"[^\"\\\n]*(?:\\.[^\"\\\n]*)*\"[ \t]*,)*"
    r"(?:[ \t]*" + _LABEL_NAME + r"[ \t]*=[ \t]*\"[^\"\\\n]*(?:\\.[^\"\\\n]*)*\")?[ \t]*"
)
# The common sample line: a legacy name, an optional well-formed label set, a value and an optional timestamp.
_SAMPLE_RE = re.compile(
    r"[ \t]*([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t]*(?:\{(" + _LABEL_BODY_PATTERN + r")\})?"
    r"[ \t]+([^ \t\n]+)(?:[ \t]+([^ \t\n]+))?[ \t]*\r?"
)
# Consumes the separators too, so findall() walks the label set pair by pair instead of scanning inside values.
_PAIR_RE = re.compile(r"[ \t]*(" + _LABEL_NAME + r")[ \t]*=[ \t]*" + _VALUE + r"[ \t]*,?")
_ESCAPE_RE = re.compile(r'\\[\\n"]')
_ESCAPES = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}
_TYPE_RE = re.compile(r"^[ \t]*#[ \t]+TYPE[ \t]+(\S+)[ \t]+(\S+)", re.M)


def _unescape(value: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value) if "\\" in value else value


def _number(text: str, line: str) -> float:
    # float() also takes "1_000"; the exposition format does not.
    if "_" in text:
        raise ParseError(f"invalid number {text!r} in line: {line[:200]!r}")
    try:
        return float(text)
    except ValueError:
        raise ParseError(f"invalid number {text!r} in line: {line[:200]!r}") from None


# label-set text → dict. Label sets repeat on a page (one per metric name) and across scrapes of an endpoint,
# so each is parsed once. The dicts are shared between samples: callers must not mutate `Sample.labels`.
_LABEL_CACHE: dict[str, dict[str, str]] = {}
_LABEL_CACHE_MAX = 200_000


def _labels(body: str | None) -> dict[str, str]:
    if not body:
        return {}
    labels = _LABEL_CACHE.get(body)
    if labels is not None:
        return labels
    pairs = _PAIR_RE.findall(body)
    labels = dict(pairs)
    if len(labels) != len(pairs):
        raise ParseError(f"duplicate label name in {{{body[:200]}}}")
    if "__name__" in labels:
        raise ParseError(f"metric name given twice in label set {{{body[:200]}}}")
    if "\\" in body:
        labels = {k: _unescape(v) for k, v in labels.items()}
    if len(_LABEL_CACHE) >= _LABEL_CACHE_MAX:
        _LABEL_CACHE.clear()
    _LABEL_CACHE[body] = labels
    return labels


_BODY_RE = re.compile(_LABEL_BODY_PATTERN)


def _checked_labels(body: str) -> dict[str, str] | None:
    """The labels of a label-set text, or None when it is not exactly a well-formed label set."""
    if _BODY_RE.fullmatch(body) is None:
        return None
    return _labels(body)


def _sample_from_match(m: re.Match, line: str) -> Sample:
    name, body, value, ts = m.groups()
    return Sample(name, _labels(body), _number(value, line), None if ts is None else _number(ts, line) / 1000)


def _slow_sample(line: str) -> Sample:
    """The careful path for lines the regex does not take: quoted (UTF-8) names, or garbage → ParseError."""
    text = line.strip()
    labels: dict[str, str] = {}
    name = ""
    i = 0
    n = len(text)
    while i < n and text[i] not in "{ \t":
        i += 1
    name = text[:i]
    rest_start = i
    while rest_start < n and text[rest_start] in " \t":
        rest_start += 1
    if rest_start < n and text[rest_start] == "{":
        i = rest_start + 1
        terms: list[tuple[str, str, bool]] = []
        while True:
            while i < n and text[i] in " \t,":
                i += 1
            if i >= n:
                raise ParseError(f"unclosed label set in line: {line[:200]!r}")
            if text[i] == "}":
                i += 1
                break
            # A term: `name="value"`, `"quoted name"="value"`, or a bare `"metric name"`.
            if text[i] == '"':
                key, i = _read_quoted(text, i, line)
                quoted = True
            else:
                j = i
                while j < n and text[j] not in '= \t,}"':
                    j += 1
                key, i, quoted = text[i:j], j, False
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == "=":
                i += 1
                while i < n and text[i] in " \t":
                    i += 1
                if i >= n or text[i] != '"':
                    raise ParseError(f"label value without quotes in line: {line[:200]!r}")
                value, i = _read_quoted(text, i, line)
                terms.append((key, value, quoted))
            elif quoted:
                terms.append(("__name__", key, True))
            else:
                raise ParseError(f"invalid label term {key!r} in line: {line[:200]!r}")
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] not in ",}":
                raise ParseError(f"expected ',' or '}}' in line: {line[:200]!r}")
        for key, value, quoted in terms:
            if key == "__name__":
                if name:
                    raise ParseError(f"metric name given twice in line: {line[:200]!r}")
                name = value
                continue
            if not quoted and not re.fullmatch(_LABEL_NAME, key):
                raise ParseError(f"invalid label name {key!r} in line: {line[:200]!r}")
            if key in labels:
                raise ParseError(f"duplicate label name {key!r} in line: {line[:200]!r}")
            labels[key] = value
        rest = text[i:]
    else:
        rest = text[rest_start:]
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
            raise ParseError(f"invalid metric name in line: {line[:200]!r}")
    if not name:
        raise ParseError(f"sample without a metric name: {line[:200]!r}")
    fields = rest.split()
    if len(fields) not in (1, 2):
        raise ParseError(f"expected a value and an optional timestamp in line: {line[:200]!r}")
    timestamp = _number(fields[1], line) / 1000 if len(fields) == 2 else None
    return Sample(name, labels, _number(fields[0], line), timestamp)


def _read_quoted(text: str, i: int, line: str) -> tuple[str, int]:
    j = i + 1
    n = len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == '"':
            return _unescape(text[i + 1:j]), j + 1
        j += 1
    raise ParseError(f"unterminated quoted string in line: {line[:200]!r}")


def parse(text: str, *, names: Collection[str] | None = None) -> list[Sample]:
    """The samples of a Prometheus text page; with `names`, only those samples (others are not parsed)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if names is None:
        return _parse_lines(text)
    wanted = names if isinstance(names, frozenset) else frozenset(names)
    if not wanted:
        return []
    if '{"' in text:
        # Quoted (UTF-8) metric names can sit inside the braces: take the careful path for the whole page.
        return [sample for sample in _parse_lines(text) if sample.name in wanted]
    # One regex scan of the whole page, in C: it stops only at a newline followed by a wanted name (a trie, so
    # other lines fail on their first characters) and captures name, label set, value and timestamp.
    out: list[Sample] = []
    append = out.append
    labels_of = _LABEL_CACHE.get
    for name, rest, body, value, ts in _targeted_regex(wanted).findall("\n" + text):
        if value:
            labels = (labels_of(body) or _checked_labels(body)) if body else {}
            if labels is not None and "_" not in value and "_" not in ts:
                try:
                    append(Sample(name, labels, float(value), float(ts) / 1000 if ts else None))
                    continue
                except ValueError:
                    pass
        # Not the common shape, a loose label-set match that is not a well-formed label set (a `}` inside a
        # quoted value), or an invalid number: the careful path parses the line or says why not.
        sample = _slow_sample(name + rest)
        if sample.name in wanted:
            append(sample)
    return out


def _parse_lines(text: str) -> list[Sample]:
    match = _SAMPLE_RE.fullmatch
    out: list[Sample] = []
    append = out.append
    for line in text.split("\n"):
        m = match(line)
        if m is not None:
            append(_sample_from_match(m, line))
            continue
        stripped = line.strip()
        if not stripped or stripped[0] == "#":
            continue
        append(_slow_sample(line))
    return out


@functools.lru_cache(maxsize=64)
def _targeted_regex(names: frozenset[str]) -> re.Pattern:
    """A newline, a wanted name (group 1), the rest of its line (group 2) and, when the line has the common shape,
    a loose label set (3; checked by _checked_labels), the value (4) and the timestamp (5)."""
    return re.compile(
        r"\n[ \t]*(" + _trie_pattern(_trie(names)) + r")(?=[ \t{])(?=([^\n]*))"
        r"(?:[ \t]*(?:\{([^}\n]*)\})?[ \t]+([^ \t\n]+)(?:[ \t]+([^ \t\n]+))?[ \t]*\r?(?=\n|\Z))?"
    )


def _trie(names: frozenset[str]) -> dict:
    trie: dict = {}
    for name in names:
        node = trie
        for ch in name:
            node = node.setdefault(ch, {})
        node[""] = {}
    return trie


def _trie_pattern(node: dict) -> str:
    end = "" in node
    branches = [re.escape(ch) + _trie_pattern(child) for ch, child in sorted(node.items()) if ch]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if end else body


def parse_types(text: str) -> dict[str, str]:
    """family name → declared type (`counter`, `gauge`, `histogram`, `summary`, `untyped`) from `# TYPE` lines."""
    return {name.strip('"'): kind for name, kind in _TYPE_RE.findall(text)}
