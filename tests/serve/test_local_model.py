"""``recursor serve --root local:qwen2.5-coder-1.5b``: the embedded model as an OpenAI server,
called with the three lines the README shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from .harness import wait_for
from .test_fault import free_port

pytestmark = [pytest.mark.local_model, pytest.mark.slow]

MODEL = "local:qwen2.5-coder-1.5b"


def test_embedded_model_served(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "recursor.cli", "serve", "--root", MODEL,
         "--port", str(port), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def up() -> bool:
        assert proc.poll() is None, "the server exited"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=300)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        assert {m.id for m in client.models.list()} == {"rlm", MODEL}
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hello in one word."}]
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens > 0
    finally:
        proc.terminate()
        proc.wait(60)
