"""The server's configuration: a TOML file, ``RECURSOR_*`` environment overrides, validated once.

A bad configuration fails at start with the file, the key and the reason (pydantic gives the
key path; :func:`load_config` puts the file in front), never at the first request::

    [server]
    host = "127.0.0.1"
    port = 8000
    data_dir = ".recursor-serve"
    max_concurrent_runs = 8

    [[keys]]                       # none: only loopback binds are allowed
    name = "alice"
    sha256 = "9f86d08..."          # sha256 of the bearer key; `key = "..."` is hashed at load
    daily_usd = 5.0
    daily_tokens = 2_000_000

    [profiles.rlm]                 # an RLM profile: it has a root
    root = "openai:gpt-5-mini"
    sub = "openai:gpt-5-nano"
    max_depth = 1
    environment = "subprocess"
    limits = { max_iterations = 20, timeout_s = 300 }

    [profiles.mini]                # a plain profile: one model
    model = "openai:gpt-5-mini"

Environment overrides, applied after the file: ``RECURSOR_SERVER_<KEY>`` sets a ``[server]``
key (``RECURSOR_SERVER_PORT=9000``), ``RECURSOR_PROFILE__<name>__<key>`` a profile's key
(``RECURSOR_PROFILE__rlm__max_depth=2``). Values are read as TOML values (numbers, booleans),
else kept as strings.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recursor.errors import ConfigurationError
from recursor.limits import Limits

__all__ = [
    "ApiKey",
    "LimitsConfig",
    "ModelProfile",
    "RLMProfile",
    "ServeConfig",
    "ServerSettings",
    "hash_key",
    "load_config",
]

#: characters of conversation above which a chat request to an RLM profile becomes an RLM run
DEFAULT_INLINE_LIMIT = 32_000
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def hash_key(key: str) -> str:
    """The stored form of a bearer key (keys are never kept in clear)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Strict):
    """:class:`recursor.Limits` as a table; negative values are refused here, at start."""

    max_iterations: int | None = Field(default=None, ge=1)
    max_subcalls: int | None = Field(default=None, ge=0)
    max_batch: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)
    cell_timeout_s: float | None = Field(default=None, gt=0)

    def apply(self, base: Limits) -> Limits:
        """``base`` with the keys set here replaced (how a profile sets its limits)."""
        from dataclasses import replace

        return replace(base, **self.model_dump(exclude_none=True))

    def tighten(self, base: Limits) -> Limits:
        """``base`` with the keys set here lowered, never raised: a request may ask for less
        than its profile allows, not more."""
        from dataclasses import asdict, replace

        current = asdict(base)
        lowered = {
            k: v if current[k] is None else min(v, current[k])
            for k, v in self.model_dump(exclude_none=True).items()
        }
        return replace(base, **lowered)


class MCPServer(_Strict):
    """An MCP server whose tools a profile's model code may call: one started per run over
    stdio (``command``, ``args``), or one already listening (``url``, streamable HTTP)."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    url: str | None = None

    @model_validator(mode="after")
    def _one(self) -> MCPServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs command (stdio) or url (HTTP), not both")
        return self


class RLMProfile(_Strict):
    """An RLM behind one model name."""

    kind: Literal["rlm"] = "rlm"
    root: str
    sub: str | None = None
    max_depth: int = Field(default=1, ge=0)
    environment: str = "subprocess"
    #: the in-process environment runs model code in the server: refused unless this is set
    trusted: bool = False
    limits: LimitsConfig = LimitsConfig()
    #: conversation characters above which a chat request becomes an RLM run (drop-in mode)
    inline_limit: int = Field(default=DEFAULT_INLINE_LIMIT, ge=0)
    max_concurrency: int = Field(default=16, ge=1)
    #: "direct", "repl", "recursive", "auto", or the path of a policy released by
    #: ``recursor route release`` (None: always an RLM at max_depth)
    route: str | None = None
    #: the operator's Python functions model code may call, as "package.module:function"
    #: (imported when the server starts; they run in the server process)
    tools: list[str] = Field(default_factory=list)
    #: MCP servers whose tools model code may call (a stdio one is started for each run)
    mcp: list[MCPServer] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> RLMProfile:
        if self.environment == "inprocess" and not self.trusted:
            raise ValueError(
                "environment 'inprocess' runs model code inside the server; "
                "set trusted = true in this profile to allow it"
            )
        fixed = ("direct", "repl", "recursive", "auto")
        if self.route is not None and self.route not in fixed and not Path(self.route).is_file():
            raise ValueError(
                f"route: {self.route!r} is neither direct, repl, recursive, auto nor a policy file"
            )
        for spec in self.tools:
            module, _, name = spec.partition(":")
            if not module or not name:
                raise ValueError(f"tools: {spec!r} must be 'package.module:function'")
        return self


class ModelProfile(_Strict):
    """One model served as it is (the embedded ``local:`` models included)."""

    kind: Literal["model"] = "model"
    model: str


class ApiKey(_Strict):
    name: str
    #: sha256 (hex) of the key; ``key`` is accepted and hashed at load, never kept
    sha256: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    key: str | None = Field(default=None, exclude=True, repr=False)
    daily_usd: float | None = Field(default=None, ge=0)
    daily_tokens: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _hash(self) -> ApiKey:
        if self.key is not None:
            object.__setattr__(self, "sha256", hash_key(self.key))
            object.__setattr__(self, "key", None)
        if not self.sha256:
            raise ValueError("a key needs sha256 (or key, hashed at load)")
        return self

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(self.sha256, hash_key(presented))


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path(".recursor-serve")
    max_concurrent_runs: int = Field(default=8, ge=1)
    #: JSON request bodies (chat, runs); uploads have their own cap
    max_body_bytes: int = Field(default=16 * 2**20, ge=1024)
    max_file_bytes: int = Field(default=4 * 2**30, ge=1)
    #: wall time of one request's run (a profile's own timeout_s may be shorter)
    request_timeout_s: float = Field(default=600.0, gt=0)
    #: after SIGTERM, how long running runs may go on before they are cancelled
    grace_s: float = Field(default=30.0, ge=0)
    #: seconds a 429 for too many runs asks the client to wait
    retry_after_s: int = Field(default=2, ge=1)
    #: conversations (``/v1/sessions``) open at once, and how long an unused one lives
    max_sessions: int = Field(default=16, ge=1)
    session_idle_s: float = Field(default=900.0, gt=0)


class ServeConfig(_Strict):
    server: ServerSettings = ServerSettings()
    keys: list[ApiKey] = Field(default_factory=list)
    profiles: dict[str, Annotated[RLMProfile | ModelProfile, Field(discriminator="kind")]] = Field(
        min_length=1
    )

    @model_validator(mode="before")
    @classmethod
    def _kinds(cls, data: Any) -> Any:
        # a table with "root" is an RLM profile, one with "model" a plain one: say which is
        # missing instead of pydantic's two failed union branches
        if isinstance(data, Mapping) and isinstance(data.get("profiles"), Mapping):
            profiles = {}
            for name, table in data["profiles"].items():
                if isinstance(table, Mapping) and "kind" not in table:
                    kind = "rlm" if "root" in table else "model" if "model" in table else None
                    if kind is None:
                        raise ValueError(f"profiles.{name}: needs root (an RLM profile) or model")
                    profiles[name] = {**table, "kind": kind}
                else:
                    profiles[name] = table
            data = {**data, "profiles": profiles}
        return data

    @model_validator(mode="after")
    def _safe(self) -> ServeConfig:
        if not self.keys and self.server.host not in LOOPBACK:
            raise ValueError(
                f"host {self.server.host!r} is not loopback and no [[keys]] are configured: "
                "add API keys or bind 127.0.0.1"
            )
        return self

    def find_key(self, presented: str) -> ApiKey | None:
        return next((k for k in self.keys if k.matches(presented)), None)


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``data`` with the ``RECURSOR_SERVER_*`` and ``RECURSOR_PROFILE__*`` overrides set."""
    data = {**data, "server": dict(data.get("server") or {})}
    profiles = {k: dict(v) for k, v in (data.get("profiles") or {}).items()}
    for var, text in environ.items():
        if var.startswith("RECURSOR_SERVER_"):
            data["server"][var.removeprefix("RECURSOR_SERVER_").lower()] = _env_value(text)
        elif var.startswith("RECURSOR_PROFILE__"):
            name, sep, key = var.removeprefix("RECURSOR_PROFILE__").partition("__")
            if sep and name and key:
                profiles.setdefault(name, {})[key.lower()] = _env_value(text)
    if profiles:
        data["profiles"] = profiles
    return data


def _where(loc: tuple[int | str, ...]) -> str:
    # drop the profile kind pydantic puts after the profile's name (the union's tag) and its
    # validator names ("function-after[...]") from the key path
    parts = [str(p) for p in loc if not (isinstance(p, str) and "[" in p)]
    if len(parts) > 2 and parts[0] == "profiles" and parts[2] in {"rlm", "model"}:
        del parts[2]
    return ".".join(parts) or "(top level)"


def validate(data: dict[str, Any], source: str) -> ServeConfig:
    """``data`` as a :class:`ServeConfig`, or a :class:`ConfigurationError` naming
    ``source``, the key and the reason."""
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigurationError("bad server configuration:\n  " + "\n  ".join(lines)) from None


def load_config(
    path: str | Path | None = None,
    *,
    defaults: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServeConfig:
    """The configuration from ``path`` (or ``defaults`` without a file), env applied."""
    data: dict[str, Any] = dict(defaults or {})
    source = "(command line)"
    if path is not None:
        source = str(path)
        try:
            with Path(path).open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigurationError(f"{source}: no such config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source}: not valid TOML: {exc}") from None
    data = apply_env(data, os.environ if environ is None else environ)
    return validate(data, source)
