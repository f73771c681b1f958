"""Fail when the venv holds a distribution the lock does not pin at that exact version.

``make test`` and ``make demo`` install with ``-c requirements.lock``; pip applies a constraint
only to what is asked for, so a dependency added to pyproject.toml without ``make lock`` would
install at whatever version is newest today. This check turns that silent drift into a red
build naming the package.

    python scripts/lockcheck.py requirements.lock
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(lock: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[_norm(name)] = version.split(";", 1)[0].strip()
    return out


def main(argv: list[str]) -> int:
    lock = Path(argv[1] if len(argv) > 1 else "requirements.lock")
    pins = pinned(lock)
    bad = []
    for dist in metadata.distributions():
        name = _norm(dist.metadata["Name"] or "")
        if not name or name == "recursor":
            continue
        want = pins.get(name)
        if want != dist.version:
            bad.append(f"  {name} {dist.version} (lock: {want or 'not pinned'})")
    if bad:
        print(f"installed versions differ from {lock}; run `make lock`:", *sorted(bad), sep="\n")
        return 1
    print(f"{lock}: every installed distribution matches its pin")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
