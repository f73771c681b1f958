"""The demo's 10 needle tasks only (``local_model.py``'s ``rlm_root`` section, without its
load and speed sections): how many answers hold the value, and how many are the bare value.

    python benchmarks/demo_needles.py --out benchmarks/results/demo_needles.json
    python benchmarks/demo_needles.py --prompt-version v2 \
        --out benchmarks/results/demo_needles-v2.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from local_model import rlm_root_section

from recursor.lm.gguf_store import DEFAULT_EMBEDDED_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--prompt-version", help="v1, v2 (default: the RLM's default)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = rlm_root_section(DEFAULT_EMBEDDED_MODEL, args.tasks, args.chars, args.prompt_version)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
