"""A directory given as context never leads outside itself, and never hangs or floods the host."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from recursor import RLM
from recursor.context import Context
from recursor.context_dir import DirectoryContext, read_directory
from recursor.errors import ContextError
from recursor.testing import ScriptedLM


@pytest.fixture
def poisoned(tmp_path: Path) -> Path:
    """A repository-like directory with links out, a device link, a FIFO and an inside link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "credentials").write_text("aws_secret_access_key=HOSTSECRET")
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("hello")
    (repo / "src" / "main.py").write_text("print(1)\n")
    (repo / "creds").symlink_to(outside / "credentials")
    (repo / "shadow").symlink_to("/etc/shadow")
    (repo / "zero").symlink_to("/dev/zero")
    (repo / "up").symlink_to("../outside/credentials")
    (repo / "alias.md").symlink_to("README.md")  # inside: read
    (repo / "outdir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(repo / "pipe")
    (repo / "blob.bin").write_bytes(b"\0\1\2" * 10)
    return repo


def test_reads_only_regular_files_inside(poisoned: Path) -> None:
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(read_directory(poisoned)), daemon=True)
    worker.start()
    worker.join(10)
    assert done, "reading the directory hung (a FIFO must never be opened for a blocking read)"
    read = done[0]
    assert isinstance(read, DirectoryContext)
    assert read.docs == {"README.md": "hello", "alias.md": "hello", "src/main.py": "print(1)\n"}
    reasons = {s.path: s.reason for s in read.skipped}
    for link in ("creds", "shadow", "up"):
        assert reasons[link] == "a link leading outside the directory"
    assert reasons["zero"] == "a link leading outside the directory"
    assert reasons["outdir"] == "a link to a directory"
    assert reasons["pipe"] == "not a regular file (a FIFO)"
    assert reasons["blob.bin"] == "binary"
    assert "HOSTSECRET" not in repr(read.docs)


def test_device_inside_is_refused(tmp_path: Path) -> None:
    # a directory that is itself under /dev-like paths: a link whose target is inside the root
    # but not a regular file is refused by fstat, never read until MemoryError
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "fifo")
    (root / "via").symlink_to(root / "fifo")
    read = read_directory(root)
    assert read.docs == {}
    assert {s.path for s in read.skipped} == {"fifo", "via"}


def test_caps_name_the_limit(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}.txt").write_text("x" * 100)
    with pytest.raises(ContextError, match="max_files"):
        read_directory(tmp_path, max_files=3)
    with pytest.raises(ContextError, match="max_bytes"):
        read_directory(tmp_path, max_bytes=250)
    big = read_directory(tmp_path, max_file_bytes=50)
    assert big.docs == {} and all("larger than 50 bytes" in s.reason for s in big.skipped)
    assert len(read_directory(tmp_path, max_files=5, max_bytes=500).docs) == 5


def test_progress_is_reported(tmp_path: Path) -> None:
    for i in range(250):
        (tmp_path / f"f{i:03}.txt").write_text("y")
    seen: list[tuple[int, int]] = []
    read_directory(tmp_path, progress=lambda n, size: seen.append((n, size)))
    assert seen[0] == (100, 100) and seen[-1] == (250, 250)


def test_python_api_reads_a_directory(poisoned: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="recursor.context"):
        ctx = Context(poisoned)
    assert ctx.source is not None and "3 text files" in ctx.source
    assert any("a link leading outside the directory" in r.message for r in caplog.records)
    root = ScriptedLM(["```python\nprint(sorted(context))\nFINAL(str(len(context)))\n```"])
    result = RLM(root=root, environment="inprocess", max_depth=0).completion("n?", context=poisoned)
    assert result.answer == "3"
