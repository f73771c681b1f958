"""Keeping secrets out of traces.

A trace is a file people share, attach to issues and train on, so nothing that leaves the
process through :mod:`recursor.trace` may carry an API key. Three layers, because a key can
reach an event by more than one road:

* the run configuration is built from names only, and :func:`redact_config` masks any
  entry whose key looks like a credential (defence against a future field that isn't);
* every line written is passed through :func:`scrub`, which masks the values of
  credential-like environment variables (``OPENAI_API_KEY``, ``HF_TOKEN``, ...) and the keys
  that model objects carry (registered by :class:`~recursor.rlm.RLM` through
  :func:`register_secrets_of`): model code that prints ``os.environ`` in an in-process REPL,
  or a provider error that echoes the key, is caught here;
* ``user:password@`` in URLs is masked.

Each secret is also looked for in the forms code is likely to print it in: base64 (standard
and URL-safe, with and without ``=`` padding, and inside a longer base64 text at any of the
three byte alignments, as in an encoded ``Authorization`` header), hex (lower and upper case)
and URL-encoded (``%XX``, either case, and ``+`` for spaces).

Known limit, said plainly: matching is by value, in one piece of text at a time. A key split
across two outputs (half printed in one cell, half in the next, or the two halves in separate
events) is not recognised, nor is a key transformed in any other way (reversed, encrypted,
compressed, spelled out). Keep keys out of the reach of model code: the ``inprocess``
environment refuses to start while one is in the process environment.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
#: shorter values are not treated as secrets (masking "1" or "true" everywhere helps nobody)
_MIN_SECRET_CHARS = 8
_SECRET_ENV = re.compile(r"(API_?KEY|_KEY$|TOKEN$|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)
#: whole config field names only: ``max_tokens`` is a limit, ``api_key`` is a key
_SECRET_FIELD = re.compile(
    r"^(.*[_-])?(api[_-]?key|key|token|secret|password|passwd|authorization|credentials?)$", re.I
)
_URL_USERINFO = re.compile(r"(?<=://)[^/\s:@\"']+:[^/\s@\"']+@")
#: attributes where model objects keep their keys (RemoteLM: ``endpoint.api_key``, a Secret)
_KEY_ATTRS = ("api_key", "_api_key", "key", "_key", "token", "secret")

_registered: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every trace written by this process from now on."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_CHARS:
        with _lock:
            _registered.add(value)


def _reveal(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    reveal = getattr(value, "reveal", None)  # recursor.lm._remote.Secret
    if callable(reveal):
        out = reveal()
        return out if isinstance(out, str) else None
    return None


def register_secrets_of(objects: Iterable[object]) -> None:
    """Register the keys that model objects carry (``lm.api_key``, ``lm.endpoint.api_key``)."""
    for obj in objects:
        for holder in (obj, getattr(obj, "endpoint", None)):
            if holder is None:
                continue
            for attr in _KEY_ATTRS:
                try:
                    value = getattr(holder, attr, None)
                except Exception:  # a property that raises is no key we can see
                    continue
                if callable(value) and not hasattr(value, "reveal"):
                    continue  # a method named key(), not a value
                register_secret(_reveal(value))


def secrets() -> list[str]:
    """The values masked right now: registered keys and credential-like environment values.

    Longest first, so a key that contains another is masked whole.
    """
    found = {
        value
        for name, value in os.environ.items()
        if len(value) >= _MIN_SECRET_CHARS and _SECRET_ENV.search(name)
    }
    with _lock:
        found |= _registered
    return sorted(found, key=len, reverse=True)


def _base64_cores(raw: bytes) -> list[str]:
    """The base64 characters that depend on ``raw`` alone, wherever it sits in a longer
    encoded text: one string per alignment (0, 1 or 2 bytes before it in its group of 3)."""
    cores = []
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode("ascii")
        first = -(-8 * k // 6)  # the first character made of the key's bits only
        last = 8 * (k + len(raw)) // 6  # past the last such character
        cores.append(enc[first:last])
    return cores


@functools.lru_cache(maxsize=256)
def _forms(secret: str) -> tuple[str, ...]:
    """``secret`` and its encoded forms, longest first (a whole form before its core)."""
    raw = secret.encode("utf-8", "surrogatepass")
    padded = base64.b64encode(raw).decode("ascii")
    forms = {secret, padded, padded.rstrip("=")}
    for core in _base64_cores(raw):
        forms.add(core)
    for form in list(forms - {secret}):  # the URL-safe alphabet: - for +, _ for /
        forms.add(form.translate(_URLSAFE))
    forms.add(raw.hex())
    forms.add(raw.hex().upper())
    for url in (quote(secret, safe=""), quote_plus(secret, safe="")):
        forms.add(url)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), url))
    # a form shorter than a secret may be would mask innocent text
    return tuple(sorted((f for f in forms if len(f) >= _MIN_SECRET_CHARS), key=len, reverse=True))


_URLSAFE = str.maketrans("+/", "-_")


def scrub(text: str, values: list[str] | None = None) -> str:
    """``text`` with every secret value (in its plain and encoded forms, see the module's
    docstring) and every URL password masked."""
    for secret in secrets() if values is None else values:
        for form in _forms(secret):
            if form in text:
                text = text.replace(form, MASK)
    if "://" in text:
        text = _URL_USERINFO.sub(MASK + "@", text)
    return text


def redact_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a run configuration with credential-like entries masked, at any depth."""

    def walk(value: Any, key: str = "") -> Any:
        if key and _SECRET_FIELD.search(key) and value is not None:
            return MASK
        if isinstance(value, dict):
            return {k: walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return scrub(value)
        return value

    out = walk(config)
    assert isinstance(out, dict)
    return out
