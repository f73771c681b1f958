"""``recursor view``: a self-contained page, safe against hostile trace text, and (in headless
Chromium) built by its own script from the embedded trace."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import webbrowser
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recursor import Limits
from recursor.apps.viewer import can_open_browser, render_html, template, write_html
from recursor.cli import app
from recursor.testing import ScriptedLM
from recursor.trace import RunStarted, Trace

from ..conftest import code
from .conftest import record

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HOSTILE = "</script><script>document.title='pwned'</script><!-- <b>bold</b>"


def hostile_trace(path: Path) -> Path:
    """Several child runs, sub-calls, limit hits, an error, and text that tries to break out."""
    root = ScriptedLM(
        [
            code(f"print({HOSTILE!r})", "Probe, and say " + HOSTILE),
            code(
                "parts = llm_query_batched([f'up: {c}' for c in [context[:6], context[6:12]]])\n"
                "print(parts)"
            ),
            code(
                "kids = rlm_query_batched(['count a', 'count b'], "
                "contexts=[context[:30], context[30:60]])\nprint(kids)"
            ),
            code("FINAL('two children answered: ' + ' + '.join(kids))"),
        ]
    )
    # 4 sub-calls are allowed: the children's own llm_query calls hit the limit
    record(path, root=root, limits=Limits(max_subcalls=4, cell_timeout_s=10))
    return path


def embedded(page: str) -> dict[str, object]:
    start = page.index('<script type="application/json" id="trace-data">') + len(
        '<script type="application/json" id="trace-data">'
    )
    data: dict[str, object] = json.loads(page[start : page.index("</script>", start)])
    return data


def test_hostile_text_cannot_leave_the_data_tag(tmp_path: Path) -> None:
    path = hostile_trace(tmp_path / "run.jsonl")
    events = Trace.load(path).events
    page = render_html(events, source="run.jsonl")
    assert page.count("</script>") == template().count("</script>")  # none added by the data
    assert "<!--" not in page.split('id="trace-data">', 1)[1]
    data = embedded(page)  # ends at the real closing tag and parses: the JSON is intact
    assert data["source"] == "run.jsonl"
    assert data["events"] == [json.loads(json.dumps(e.to_dict())) for e in events]
    assert HOSTILE in json.dumps(data["events"], ensure_ascii=False)


def test_page_is_offline() -> None:
    page = template()
    assert "default-src 'none'" in page  # the browser itself refuses any fetch
    for needle in ("http://", "https://", "<link", " src=", "@import", "url("):
        assert needle not in page, needle
    assert page.count("__TRACE_JSON__") == 1


def test_cli_view_writes_next_to_the_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_browser(*args: object, **kwargs: object) -> bool:
        raise AssertionError("tests must not open a browser")

    monkeypatch.setattr(webbrowser, "open", no_browser)
    assert can_open_browser() is False
    path = hostile_trace(tmp_path / "run.jsonl")
    res = runner.invoke(app, ["view", str(path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run.html").exists() and str(tmp_path / "run.html") in res.stdout
    out = tmp_path / "elsewhere" / "page.html"
    out.parent.mkdir()
    res = runner.invoke(app, ["view", str(path), "--out", str(out)])
    assert res.exit_code == 0 and out.exists()
    assert out.read_text() == (tmp_path / "run.html").read_text()


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.found if name in a.get("class", "").split()]

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.found if "id" in a}


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make installs it)")
def test_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    trace = hostile_trace(tmp_path / "run.jsonl")
    page = write_html(trace, tmp_path / "run.html")
    uri = page.resolve().as_uri()

    dom = _chromium(tmp_path, "--dump-dom", uri).stdout
    parsed = _Elements()
    parsed.feed(dom)
    body = next(a for t, a in parsed.found if t == "body")
    assert body.get("data-rendered") == "true"  # the script ran to the end
    assert {"summary", "query", "final-answer", "stop-reason", "totals", "limits", "tree"} <= (
        parsed.ids()
    )
    assert len(parsed.with_class("iter-card")) == 4  # one card per root iteration
    assert (
        len(parsed.with_class("cell")) == 4 + 2
    )  # the root's in the timeline, a child's in the tree
    runs = parsed.with_class("run")
    assert len(runs) == 3 and {"node-" + r.run_id for r in Trace.load(trace).of(RunStarted)} <= {
        a["id"] for a in runs
    }
    assert len(parsed.with_class("subcall")) == 2  # the root's batch; the children's were refused
    assert len(parsed.with_class("limit-hit")) >= 2
    assert re.search(r'id="stop-reason"[^>]*>final<', dom)
    assert "two children answered: child done + child done" in dom
    # the hostile text is shown as text, and did not run
    assert "&lt;/script&gt;&lt;script&gt;document.title='pwned'" in dom
    assert "<title>pwned</title>" not in dom and "<b>bold</b>" not in dom

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "trace-viewer.png"
    shot.unlink(missing_ok=True)
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", uri)
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
    shutil.copy(page, ARTIFACTS / "trace-viewer.html")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make installs it)")
def test_page_of_several_runs_and_a_crash(tmp_path: Path) -> None:
    from recursor import RLM
    from recursor.errors import ScriptExhausted
    from recursor.trace import JsonlSink

    two, crashed = tmp_path / "two.jsonl", tmp_path / "crashed.jsonl"
    with JsonlSink(two) as sink, JsonlSink(crashed) as crash_sink:
        RLM(ScriptedLM(["FINAL(first)"]), environment="inprocess", sinks=[sink]).completion(
            "first question", "c"
        )
        with pytest.raises(ScriptExhausted):  # the second run dies mid-way
            RLM(
                ScriptedLM([code("print('partial')")]),
                environment="inprocess",
                sinks=[sink, crash_sink],
            ).completion("second question", "c")
    dom = _chromium(tmp_path, "--dump-dom", write_html(two).resolve().as_uri()).stdout
    parsed = _Elements()
    parsed.feed(dom)
    assert "root-select" in parsed.ids() and dom.count("<option") == 2
    assert re.search(r'id="query"[^>]*>first question<', dom)  # the first run is shown first

    dom = _chromium(tmp_path, "--dump-dom", write_html(crashed).resolve().as_uri()).stdout
    assert re.search(r'id="stop-reason"[^>]*>incomplete<', dom)
    assert "the trace ends before the run did" in dom and "partial" in dom


def _broken_trace(path: Path) -> Path:
    """A hand-written trace: a run whose cell has a forged NaN duration and a NaN cost, a line
    that is no event, and a last line cut short (the writer was killed mid-line)."""
    started = {
        "type": "run_started",
        "run_id": "r1",
        "t": 1.0,
        "parent_id": None,
        "depth": 0,
        "query": "what broke?",
        "context_meta": {"type": "str", "total_chars": 3},
        "config": {"root": "m", "sub": "m", "max_depth": 1, "environment": "inprocess"},
    }
    called = {
        "type": "model_called",
        "run_id": "r1",
        "t": 2.0,
        "iteration": 1,
        "model": "m",
        "new_messages": [],
        "reply": "```repl\nprint(1)\n```",
        "usage": {"input_tokens": 5, "output_tokens": 2, "cost_usd": "__NAN__"},
        "latency_s": 0.5,
    }
    cell = {
        "type": "cell_ran",
        "run_id": "r1",
        "t": 3.0,
        "iteration": 1,
        "index": 0,
        "code": "print(1)",
        "stdout": "1\n",
        "stderr": "",
        "error": None,
        "duration_s": "__NAN__",
        "timed_out": False,
        "lost_state": False,
        "final": None,
    }
    lines = [json.dumps(r).replace('"__NAN__"', "NaN") for r in (started, called, cell)]
    lines.append('{"type": "no_such_event", "run_id": "r1"}')
    lines.append('{"type": "run_finished", "run_id": "r1", "t": 4.0, "answer": "ha')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_unreadable_lines_are_reported_not_fatal(tmp_path: Path) -> None:
    from recursor.apps.viewer import read_trace

    events, problems = read_trace(_broken_trace(tmp_path / "broken.jsonl"))
    assert [e.type for e in events] == ["run_started", "model_called", "cell_ran"]
    assert len(problems) == 4
    assert problems[0].startswith("line 2: NaN is not a JSON number")
    assert problems[1].startswith("line 3: NaN is not a JSON number")
    assert problems[2].startswith("line 4: not a trace event (unknown trace event type")
    assert problems[3].startswith("line 5: not JSON (")
    page = write_html(tmp_path / "broken.jsonl")
    data = embedded(page.read_text())  # strict JSON: the NaN became null
    assert ":NaN" not in page.read_text().split('id="trace-data">', 1)[1].split("</script>")[0]
    assert data["events"][2]["duration_s"] is None  # type: ignore[index]
    assert data["problems"] == problems
    res = runner.invoke(app, ["view", str(tmp_path / "broken.jsonl"), "--no-open"])
    assert res.exit_code == 0, res.output


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make installs it)")
def test_a_broken_trace_still_renders_with_a_clear_message(tmp_path: Path) -> None:
    page = write_html(_broken_trace(tmp_path / "broken.jsonl"))
    dom = _chromium(tmp_path, "--dump-dom", page.resolve().as_uri()).stdout
    parsed = _Elements()
    parsed.feed(dom)
    body = next(a for t, a in parsed.found if t == "body")
    assert body.get("data-rendered") == "true"  # the page was built
    assert "trace-problems" in parsed.ids()
    assert "4 lines of this trace could not be read as written" in dom
    assert "line 5: not JSON" in dom and "line 2: NaN is not a JSON number" in dom
    assert re.search(r'id="query"[^>]*>what broke\?<', dom)
    assert len(parsed.with_class("cell")) == 1

    # nothing readable at all: an error on the page, not a blank one
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b'{"type": "run_started", "run_id"\n\xff\xfe not json\n')
    dom = _chromium(tmp_path, "--dump-dom", write_html(junk).resolve().as_uri()).stdout
    parsed = _Elements()
    parsed.feed(dom)
    assert next(a for t, a in parsed.found if t == "body").get("data-rendered") == "error"
    assert "trace-error" in parsed.ids()
    assert "This trace could not be shown." in dom and "No run could be read" in dom
    assert "line 1: not JSON" in dom and "line 2: not JSON" in dom

    # data the script cannot use (a run without its config): the script's error, on the page
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"type": "run_started", "run_id": "r", "t": 1, "parent_id": null}\n')
    dom = _chromium(tmp_path, "--dump-dom", write_html(odd).resolve().as_uri()).stdout
    assert "This trace could not be shown." in dom and "The viewer failed on this trace" in dom


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make installs it)")
def test_tool_calls_are_shown_by_their_cell(tmp_path: Path) -> None:
    from recursor import RLM
    from recursor.trace import JsonlSink

    def lookup(key: str) -> str:
        """Look a key up."""
        if key == "x":
            raise KeyError("no x")
        return key.upper()

    body = "a = [lookup(k) for k in 'ab']\ntry:\n    lookup('x')\nexcept Exception:\n    pass"
    trace = tmp_path / "run.jsonl"
    with JsonlSink(trace) as sink:
        rlm = RLM(
            ScriptedLM([code(body), code("FINAL(a)")]),
            environment="inprocess",
            sinks=[sink],
            tools=[lookup],
        )
        rlm.completion("q", context="c")
    dom = _chromium(
        tmp_path, "--dump-dom", write_html(trace, tmp_path / "run.html").as_uri()
    ).stdout
    assert 'data-rendered="true"' in dom
    assert ">3 tool calls<" in dom
    assert 'tool lookup([["a"], {}])' in dom and '→ "A"' in dom
    assert "ToolError: tool 'lookup' raised KeyError: 'no x'" in dom
