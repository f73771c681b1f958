"""``recursor route release``: a routing policy from ``recursor bench`` results.

Kept out of :mod:`recursor.cli` like the trace commands; :func:`register` adds the ``route``
group to the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from recursor._terminal import markup_safe

route_app = typer.Typer(help="Routing between direct, REPL-only and recursive runs.")
out = Console(highlight=False, soft_wrap=True)


@route_app.command()
def release(
    results: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="results.json of recursor bench."),
    ],
    min_score: Annotated[float, typer.Option(help="Mean score a route must reach.")] = 0.9,
    max_p95_cost: Annotated[
        float | None, typer.Option(help="USD: the p95 cost per task a route must stay under.")
    ] = None,
    max_p95_seconds: Annotated[
        float | None, typer.Option(help="The p95 latency a route must stay under.")
    ] = None,
    out_path: Annotated[Path, typer.Option("--out", help="Where the policy goes.")] = Path(
        "policy.json"
    ),
) -> None:
    """Keep, per task family and complexity class, the cheapest route that clears every bar;
    say which routes were eligible and why the others were not."""
    from recursor.bench.report import load_records
    from recursor.routing.policy import Bars, release

    bars = Bars(min_score, max_p95_cost, max_p95_seconds)
    policy, decisions = release(load_records(results), bars)
    for d in decisions:
        chosen = (
            "no route cleared every bar"
            if d.chosen is None
            else (f"released: {d.chosen.method} ({d.chosen.route})")
        )
        out.print(markup_safe(f"{d.group}: {chosen}"))
        for c in d.candidates:
            cost = "?" if c.p95_cost_usd is None else f"${c.p95_cost_usd:.4f}"
            facts = f"n={c.n} score={c.score:.3f} p95 cost={cost} p95 s={c.p95_seconds:.2f}"
            verdict = "eligible" if c.eligible else "not eligible: " + "; ".join(c.failed)
            out.print(markup_safe(f"  {c.method:<7} {facts}  {verdict}"))
    out_path.write_text(policy.to_json(), "utf-8")
    out.print(markup_safe(f"policy: {out_path}"))


def register(app: typer.Typer) -> None:
    app.add_typer(route_app, name="route")
