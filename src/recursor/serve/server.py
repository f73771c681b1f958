"""Running the app under uvicorn, with the shutdown the server promises.

SIGTERM (or Ctrl-C): uvicorn stops accepting and lets open requests finish for ``grace_s``;
then the app's lifespan ends, which gives jobs still running the rest of the grace period,
cancels what is left (each run's tree closes: workers killed), kills the profiles' spare
workers and closes the store. Nothing is left running after the process exits.
"""

from __future__ import annotations

import uvicorn

from recursor.lm.base import LM
from recursor.serve.app import create_app
from recursor.serve.config import ServeConfig


def make_server(config: ServeConfig, lms: dict[str, LM] | None = None) -> uvicorn.Server:
    app = create_app(config, lms)
    s = config.server
    uv = uvicorn.Config(
        app,
        host=s.host,
        port=s.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=max(1, int(s.grace_s)),
        # the app checks sizes itself (413 with a message); this only bounds header abuse
        h11_max_incomplete_event_size=64 * 1024,
        server_header=False,
    )
    return uvicorn.Server(uv)


def serve(config: ServeConfig) -> None:
    make_server(config).run()
