"""``recursor view``: one self-contained HTML page for a trace.

The page is ``viewer.html`` (inline CSS and vanilla JS, no CDN, a Content-Security-Policy that
forbids every fetch) with the trace's events embedded as JSON in a
``<script type="application/json">`` tag; the script builds the page from them. Every ``<``
in the JSON is written as ``\\u003c``, so a trace holding ``</script>`` or ``<!--`` (model
output can hold anything) cannot end the tag early, and the script only ever inserts trace
text with ``textContent``, never as HTML.
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

from recursor.trace import Trace
from recursor.trace.events import Event
from recursor.trace.redact import scrub

_JSON_MARK = "__TRACE_JSON__"
_TITLE_MARK = "__TITLE__"


def template() -> str:
    return resources.files("recursor.apps").joinpath("viewer.html").read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON that is inert inside a ``<script>`` element."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Inside <script>, only "<" can end the element ("</script>") or open a comment ("<!--");
    # "\u003c" is the same character to JSON. U+2028/9 are escaped for old JS parsers.
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render_html(events: list[Event], *, source: str | None = None) -> str:
    """The page for these events."""
    data = {
        "source": source,
        "events": [json.loads(scrub(json.dumps(e.to_dict(), ensure_ascii=False))) for e in events],
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
    page = render_html(Trace.load(src).events, source=src.name)
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
