"""``codeqa``: a generated Python repository and a multiple-choice question whose answer needs
reading across files.

The asked-about function lives in a service module; it imports a constant from one config module
and a helper from a util module, which imports a second constant from another config module.
Hard negatives: the same constant names with other values in sibling config modules, and a
helper of the same name with another body in a sibling util module. Wrong options are the values
those negatives would give. The context is a dict ``{path: source}`` of an importable package;
``meta`` holds the chain, so a test can import the files and check the gold by running them.
"""

from __future__ import annotations

import random
from typing import Any

from recursor.bench.task import Task

_PKG = "app"
_CONFIGS = ["pricing", "limits", "defaults", "tuning", "quotas", "rates", "thresholds", "policy"]
_UTILS = ["mathx", "numeric", "helpers", "calc", "transform", "legacy"]
_SERVICES = [
    "billing", "shipping", "payroll", "inventory", "search", "reports", "alerts", "orders",
    "accounts", "scheduler", "metrics", "exports",
]  # fmt: skip
_CONSTS = ["RATE", "BASE", "SCALE", "OFFSET", "FACTOR", "MARGIN", "STEP", "BONUS"]
_HELPERS = ["adjust", "normalize", "clamp_up", "shift", "rebase", "tweak"]
_VERBS = ["compute", "estimate", "derive", "score", "resolve", "measure"]
_NOUNS = ["fee", "total", "budget", "priority", "weight", "quota", "delay", "capacity"]
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _filler_module(rng: random.Random, path: str) -> str:
    """A plausible module of small functions and constants that the question does not touch."""
    lines = [f'"""{path.rsplit("/", 1)[-1][:-3].replace("_", " ").title()} utilities."""', ""]
    lines += [
        f"{rng.choice(_CONSTS)}_{rng.randint(1, 9)} = {rng.randint(2, 500)}"
        for _ in range(rng.randint(2, 5))
    ]
    lines.append("")
    for _ in range(rng.randint(2, 5)):
        name = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}_{rng.randint(1, 99)}"
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        op = rng.choice(list(_OPS))
        lines += [
            "",
            f"def {name}(value):",
            f'    """Return the {rng.choice(_NOUNS)} for ``value``."""',
            f"    if value > {a}:",
            f"        return value {op} {b}",
            f"    return value {op} {a}",
            "",
        ]
    return "\n".join(lines) + "\n"


def _add_filler(rng: random.Random, files: dict[str, str], length: int) -> None:
    """Filler modules until the repository reaches ``length`` tokens (4 characters each)."""
    total = sum(len(s) for s in files.values())
    k = 0
    while total < length * 4:
        folder = rng.choice(["config", "util", "services", "models", "api"])
        if f"{_PKG}/{folder}/__init__.py" not in files:
            files[f"{_PKG}/{folder}/__init__.py"] = ""
        path = f"{_PKG}/{folder}/{rng.choice(_NOUNS)}_{rng.choice(_SERVICES)}_{k}.py"
        files[path] = _filler_module(rng, path)
        total += len(files[path])
        k += 1


def codeqa(rng: random.Random, index: int, length: int) -> Task:
    cfg1, cfg2, *neg_cfgs = rng.sample(_CONFIGS, 4)
    util, neg_util = rng.sample(_UTILS, 2)
    service = rng.choice(_SERVICES)
    const1, const2 = rng.sample(_CONSTS, 2)
    helper = rng.choice(_HELPERS)
    fn = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
    v1, v2 = rng.randint(2, 9), rng.randint(10, 60)
    op1, op2, neg_op = rng.choice(["+", "*"]), rng.choice(["+", "-"]), rng.choice(["*", "-"])
    arg = rng.randint(3, 40)

    files: dict[str, str] = {f"{_PKG}/__init__.py": ""}
    for sub in ("config", "util", "services"):
        files[f"{_PKG}/{sub}/__init__.py"] = ""
    files[f"{_PKG}/config/{cfg1}.py"] = f"{const1} = {v1}\n{const2} = {v2 + rng.randint(3, 9)}\n"
    files[f"{_PKG}/config/{cfg2}.py"] = f"{const2} = {v2}\n"
    negative_values: dict[str, int] = {}
    for neg in neg_cfgs:
        wrong1, wrong2 = v1 + rng.randint(1, 5), v2 + rng.randint(10, 20)
        negative_values[neg] = wrong1
        files[f"{_PKG}/config/{neg}.py"] = f"{const1} = {wrong1}\n{const2} = {wrong2}\n"
    files[f"{_PKG}/util/{util}.py"] = (
        f"from {_PKG}.config.{cfg2} import {const2}\n\n\n"
        f"def {helper}(x):\n    return x {op2} {const2}\n"
    )
    files[f"{_PKG}/util/{neg_util}.py"] = (
        f"from {_PKG}.config.{cfg2} import {const2}\n\n\n"
        f"def {helper}(x):\n    return x {neg_op} {const2}\n"
    )
    alias = rng.random() < 0.5
    if alias:
        imports = f"from {_PKG}.config import {cfg1} as cfg\n"
        ref = f"cfg.{const1}"
    else:
        imports = f"from {_PKG}.config.{cfg1} import {const1}\n"
        ref = const1
    files[f"{_PKG}/services/{service}.py"] = (
        f"{imports}from {_PKG}.util.{util} import {helper}\n\n\n"
        f"def {fn}(n):\n    return {helper}(n {op1} {ref})\n"
    )

    _add_filler(rng, files, length)

    def value(c1: int, helper_op: str) -> int:
        inner = _OPS[op1](arg, c1)
        return int(_OPS[helper_op](inner, v2))

    gold_value = value(v1, op2)
    options = {gold_value}
    candidates = [value(v1, neg_op), *(value(w, op2) for w in negative_values.values())]
    candidates += [gold_value + d for d in (1, -1, 2, -2, 10)]
    for c in candidates:
        if len(options) == 4:
            break
        options.add(c)
    shown = list(options)
    rng.shuffle(shown)
    letters = "ABCD"
    gold = letters[shown.index(gold_value)]
    module = f"{_PKG}.services.{service}"
    query = (
        f"In this repository, what does `{module}.{fn}({arg})` return?\n"
        + "\n".join(f"({letters[i]}) {v}" for i, v in enumerate(shown))
        + "\nAnswer with the letter of the correct option."
    )
    items = list(files.items())
    rng.shuffle(items)  # the files in no helpful order
    meta: dict[str, Any] = {
        "module": module,
        "function": fn,
        "arg": arg,
        "value": gold_value,
        "choices": dict(zip(letters, shown, strict=True)),
        "chain": {
            "service": f"{_PKG}/services/{service}.py",
            "util": f"{_PKG}/util/{util}.py",
            "config": [f"{_PKG}/config/{cfg1}.py", f"{_PKG}/config/{cfg2}.py"],
        },
    }
    return Task(
        id=f"codeqa-{length}-{index}",
        family="codeqa",
        context=dict(items),
        query=query,
        gold=gold,
        scorer="choice",
        length=length,
        meta=meta,
        oracle={"module": module, "function": fn, "arg": arg, "choices": meta["choices"]},
    )
