"""``recursor serve``: an RLM any OpenAI client can call, with jobs, files, an MCP server and a
live run page. Needs the ``serve`` extra (``pip install "recursor[serve]"``).

Modules: :mod:`~recursor.serve.config` (TOML + env), :mod:`~recursor.serve.models` (profiles'
objects, built once), :mod:`~recursor.serve.feed` (one run's live events: the seam to the
library), :mod:`~recursor.serve.runs` (runs in flight), :mod:`~recursor.serve.store` (SQLite),
:mod:`~recursor.serve.state`, :mod:`~recursor.serve.app`, :mod:`~recursor.serve.chat`,
:mod:`~recursor.serve.jobs`, :mod:`~recursor.serve.files`, :mod:`~recursor.serve.page`,
:mod:`~recursor.serve.server` (uvicorn), :mod:`~recursor.serve.mcp_server`.
"""
