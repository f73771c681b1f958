"""``recursor view``: one self-contained HTML page for a trace.

The page is ``viewer.html`` (inline CSS and vanilla JS, no CDN, a Content-Security-Policy that
forbids every fetch) with the trace's events embedded as JSON in a
``<script type="application/json">`` tag; the script builds the page from them. Every ``<``
in the JSON is written as ``\\u003c``, so a trace holding ``</script>`` or ``<!--`` (model
output can hold anything) cannot end the tag early, and the script only ever inserts trace
text with ``textContent``, never as HTML.

The page opens whatever file it is given: a line that is not JSON (a trace cut short by a
crash) or not an event is skipped and named in a warning at the top of the page, ``NaN`` and
``Infinity`` (not JSON: the browser's parser would reject the whole page) are shown as empty
values, and a file with no readable run, or data the script fails on, gets a clear error on
the page instead of a blank one.
"""

from __future__ import annotations

import html
import json
import os
import sys
import webbrowser
from importlib import resources
from pathlib import Path
from typing import Any

from recursor.trace.events import Event, event_from_dict
from recursor.trace.jsonl import BLOB_TYPE, dumps
from recursor.trace.redact import scrub

_JSON_MARK = "__TRACE_JSON__"
_TITLE_MARK = "__TITLE__"


def template() -> str:
    return resources.files("recursor.apps").joinpath("viewer.html").read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON that is inert inside a ``<script>`` element."""
    text = dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Inside <script>, only "<" can end the element ("</script>") or open a comment ("<!--");
    # "\u003c" is the same character to JSON. U+2028/9 are escaped for old JS parsers.
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def read_trace(path: str | Path) -> tuple[list[Event], list[str]]:
    """The events of a trace file that can be read, and a note for each line that cannot."""
    events: list[Event] = []
    problems: list[str] = []
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            constants: list[str] = []
            try:
                # NaN/Infinity are read as None (what append returns) and noted
                record = json.loads(line, parse_constant=constants.append)
            except (ValueError, RecursionError) as exc:
                problems.append(f"line {n}: not JSON ({exc}); skipped")
                continue
            if isinstance(record, dict) and record.get("type") == BLOB_TYPE:
                continue
            try:
                if not isinstance(record, dict):
                    raise TypeError(f"a JSON {type(record).__name__}, not an object")
                events.append(event_from_dict(record))
            except (TypeError, ValueError) as exc:
                problems.append(f"line {n}: not a trace event ({exc}); skipped")
                continue
            if constants:
                problems.append(
                    f"line {n}: {', '.join(sorted(set(constants)))} is not a JSON number; "
                    "shown as empty"
                )
    return events, problems


def render_html(
    events: list[Event], *, source: str | None = None, problems: list[str] | None = None
) -> str:
    """The page for these events (``problems``: notes on lines of the file not shown as is)."""
    data = {
        "source": source,
        "events": [json.loads(scrub(dumps(e.to_dict(), ensure_ascii=False))) for e in events],
        "problems": [scrub(p) for p in problems or []],
    }
    query = next((getattr(e, "query", "") for e in events if e.type == "run_started"), "")
    title = html.escape(f"recursor · {query[:60]}" if query else "recursor trace")
    page = template().replace(_TITLE_MARK, title, 1)
    head, sep, tail = page.partition(_JSON_MARK)
    if not sep:
        raise RuntimeError("viewer.html has no trace placeholder")
    return head + embed_json(data) + tail


def default_out(trace_path: Path) -> Path:
    """``run.jsonl`` → ``run.html`` next to it."""
    return trace_path.with_suffix(".html")


def write_html(trace_path: str | Path, out: str | Path | None = None) -> Path:
    """Write the page for a trace file; its path."""
    src = Path(trace_path)
    dest = Path(out) if out is not None else default_out(src)
    events, problems = read_trace(src)
    page = render_html(events, source=src.name, problems=problems)
    dest.write_text(page, encoding="utf-8", errors="backslashreplace")
    return dest


def can_open_browser() -> bool:
    """Whether opening a browser makes sense here: a desktop session, and not a test run."""
    if "PYTEST_CURRENT_TEST" in os.environ or os.environ.get("CI"):
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def open_in_browser(path: Path) -> bool:
    """Open the page when a browser is there; whether it was opened."""
    if not can_open_browser():
        return False
    return webbrowser.open(path.resolve().as_uri())
