"""The run page: ``GET /`` lists runs and opens one live; ``GET /runs/{id}/trace`` is the trace
viewer (:mod:`recursor.apps.viewer`) over a run's stored events.

The page is static HTML and one script served from here (the CSP allows scripts from this
origin only, none inline); it reads everything through the JSON API with the bearer key the
user typed (kept in the page's memory, not in a cookie), and inserts run text only with
``textContent``: model text is never HTML.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from recursor.serve.state import ApiError, state_of
from recursor.trace.events import event_from_dict

router = APIRouter()

#: the viewer page's own policy (it embeds its script and data inline, and fetches nothing)
VIEWER_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
)


def _asset(name: str) -> str:
    return resources.files("recursor.serve").joinpath(name).read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    return HTMLResponse(_asset("page.html"))


@router.get("/page.js")
async def script() -> Response:
    return Response(_asset("page.js"), media_type="text/javascript")


@router.get("/runs/{run_id}/trace", response_class=HTMLResponse)
async def trace_view(request: Request, run_id: str) -> HTMLResponse:
    """The full trace viewer for a run (its events so far); keyed servers need the key."""
    state = state_of(request)
    state.authorize(request)
    return _viewer(request, run_id)


@router.post("/runs/{run_id}/trace", response_class=HTMLResponse)
async def trace_view_form(request: Request, run_id: str) -> HTMLResponse:
    """The same, opened from the run page: a keyed server reads the key from the form body
    (a link cannot carry an Authorization header, and a key in a URL ends up in logs)."""
    state = state_of(request)
    if state.config.keys:
        form = await request.form()
        key = form.get("key")
        if not isinstance(key, str) or state.config.find_key(key) is None:
            raise ApiError(401, "a valid API key is needed to open this trace", "invalid_api_key")
    return _viewer(request, run_id)


def _viewer(request: Request, run_id: str) -> HTMLResponse:
    from recursor.apps.viewer import render_html

    state = state_of(request)
    if state.store.get(run_id) is None:
        raise ApiError(404, f"run {run_id!r} not found", "run_not_found")
    events = [event_from_dict(e) for _seq, e in state.store.events(run_id)]
    page = render_html(events, source=run_id)
    return HTMLResponse(page, headers={"content-security-policy": VIEWER_CSP})
