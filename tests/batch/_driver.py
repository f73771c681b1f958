"""A batch driver run as its own process, so a test can kill it mid-batch (SIGKILL).

python -m tests.batch._driver OUT N process|RAY_ADDRESS
"""

from __future__ import annotations

import os
import sys

from recursor.batch import JobSpec, ProcessExecutor, RayExecutor, run
from tests.batch.conftest import make_items


def main() -> None:
    out, n, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    executor = (
        ProcessExecutor(2)
        if where == "process"
        else RayExecutor(where, env={"OPENAI_BASE_URL": os.environ["OPENAI_BASE_URL"]})
    )
    run(
        make_items(n),
        executor,
        out=out,
        spec=JobSpec(model="openai:stub", max_depth=0, trace_dir=None),
    )


if __name__ == "__main__":
    main()
