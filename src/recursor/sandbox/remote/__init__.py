"""Environments whose worker runs elsewhere (a container, a vendor's sandbox), same protocol."""

from __future__ import annotations

from typing import Any

#: The worker's own measures where a container or vendor sandbox is the boundary: no
#: namespaces of its own, but an unprivileged uid where it starts as root, and Landlock and
#: seccomp where that kernel has them (the worker reports each).
INSIDE_BOUNDARY: dict[str, Any] = {"namespaces": False, "drop_uid": True, "uid": 65534}
