"""The ``oracle`` method: each family's known-good program, run through the REPL.

The root is scripted (it "writes" the program, then ``FINAL_VAR(result)``); the program runs in
the configured sandbox against the real context, and calls the real sub-model where the family
needs judgement (OOLONG labels). So the oracle's score measures the scaffold — REPL, broker,
sub-model — and not a root model's skill; with a sub-model that labels correctly it must score
100% (the tests check this with :func:`label_lookup_lm`).

Programs get the question's parameters (``Task.oracle``), never the answer.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from recursor.bench import gen_text
from recursor.bench.methods import Attempt, Models, rlm_attempt
from recursor.bench.task import Task
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace.events import CellRan
from recursor.usage import Usage

ROOT_NAME = "oracle-program"
FAILED = "[oracle program failed]"
BATCH = 25

_SNIAH = """
import re
m = re.search(r"special magic numbers? for " + re.escape({key!r}) + r" is:?\\s*(\\d+)", context)
result = m.group(1) if m else "not found"
"""

_MULTIHOP = """
import re
TEMPLATES = {templates!r}
SLOT = {{"person": r"[A-Z][a-z]+ [A-Z][a-z]+", "org": r"[A-Z][a-z]+ [A-Z][a-z]+",
         "city": r"[A-Z][a-z]+ [A-Z][a-z]+", "country": r"[A-Z][a-z]+"}}
def rx(template):
    pattern = re.escape(template)
    for slot, sub in SLOT.items():
        pattern = pattern.replace(re.escape("{{" + slot + "}}"), f"(?P<{{slot}}>{{sub}})")
    return re.compile(pattern)
text = "\\n".join(context) if isinstance(context, list) else str(context)
found = {{}}
for relation, templates in TEMPLATES.items():
    for template in templates:
        for m in rx(template).finditer(text):
            subject, obj = list(m.groupdict().values())
            found[(relation, subject)] = obj
org = found.get(("works_at", {person!r}))
city = found.get(("hq_in", org))
result = found.get(("city_in", city)) if {hops} == 3 else city
result = result or "not found"
"""

# OOLONG and OOLONG-Pairs share the parse-and-label part; the question part differs
_OOLONG_LABEL = """
import re, collections, datetime
LABELS = {labels!r}
rows = []
for ln in context.splitlines():
    m = re.match(r"Date: (.+?) \\|\\| User: (\\d+) \\|\\| Instance: (.*)$", ln)
    if m:
        day = datetime.datetime.strptime(m.group(1), "%b %d, %Y").date()
        rows.append((day, m.group(2), m.group(3)))
texts = sorted({{r[2] for r in rows}})
ASK = ("Label each question with the type of answer it asks for, one of: "
       + ", ".join(LABELS) + ". Reply with one line per question: '<number>: <label>'.\\n")
batches = [texts[i:i + {batch}] for i in range(0, len(texts), {batch})]
replies = llm_query_batched([ASK + "\\n".join(f"{{j + 1}}. {{t}}" for j, t in enumerate(b))
                             for b in batches])
def as_label(raw):
    raw = raw.strip().strip("'\\".").lower()
    return next((L for L in LABELS if raw == L or raw.startswith(L.split()[0])), None)
label_of = {{}}
for batch, reply in zip(batches, replies):
    got = {{}}
    for ln in reply.splitlines():
        m = re.match(r"\\s*(\\d+)\\s*[.:)]\\s*(.+)", ln)
        if m:
            got[int(m.group(1))] = as_label(m.group(2))
    for j, t in enumerate(batch):
        label_of[t] = got.get(j + 1)
labelled = [(day, user, label_of[t]) for day, user, t in rows]
counts = collections.Counter(label for _, _, label in labelled)
"""

_OOLONG_ASK = """
p = {params!r}
kind = p["kind"]
if kind == "count":
    result = str(counts[p["label"]])
elif kind in ("most", "least"):
    present = [L for L in LABELS if counts[L]]
    pick = max if kind == "most" else min
    result = pick(present, key=lambda L: counts[L])
elif kind == "compare":
    a, b = counts[p["a"]], counts[p["b"]]
    result = "more common than" if a > b else ("less common than" if a < b else "same frequency as")
elif kind == "user":
    result = str(sum(1 for _, u, L in labelled if u == p["user"] and L == p["label"]))
else:
    lo, hi = datetime.date.fromisoformat(p["from"]), datetime.date.fromisoformat(p["to"])
    result = str(sum(1 for d, _, L in labelled if lo <= d <= hi and L == p["label"]))
"""

_PAIRS_ASK = """
import itertools
p = {params!r}
profile = collections.defaultdict(collections.Counter)
for _, user, label in labelled:
    profile[user][label] += 1
def ok(cu, cv):
    if p["kind"] == "both_either":
        return cu[p["p"]] + cu[p["q"]] >= 1 and cv[p["p"]] + cv[p["q"]] >= 1
    if p["kind"] == "both_at_least":
        return cu[p["p"]] >= p["k"] and cv[p["p"]] >= p["k"]
    return (cu[p["p"]] >= 1 and cv[p["q"]] >= 1) or (cu[p["q"]] >= 1 and cv[p["p"]] >= 1)
users = sorted(profile)
pairs = [(u, v) for u, v in itertools.combinations(users, 2) if ok(profile[u], profile[v])]
result = "\\n".join(f"({{u}}, {{v}})" for u, v in pairs) or "none"
"""

# Imports the generated repository from the context dict (a finder over it), runs the asked
# function, and picks the option equal to its value; the finder and modules are removed after,
# since the inprocess environment shares sys.modules with the host.
_CODEQA = """
import importlib, importlib.abc, importlib.util, sys
class _Files(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        base = name.replace(".", "/")
        if base + ".py" in context:
            return importlib.util.spec_from_loader(name, self, is_package=False)
        if base + "/__init__.py" in context:
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None
    def exec_module(self, module):
        base = module.__name__.replace(".", "/")
        source = context.get(base + ".py", context.get(base + "/__init__.py", ""))
        exec(compile(source, base + ".py", "exec"), module.__dict__)
finder = _Files()
sys.meta_path.insert(0, finder)
top = {module!r}.split(".")[0]
try:
    value = getattr(importlib.import_module({module!r}), {function!r})({arg!r})
finally:
    sys.meta_path.remove(finder)
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]
choices = {choices!r}
result = next((letter for letter, v in choices.items() if v == value), "none")
"""


def program(task: Task) -> str:
    """The family's known-good program for ``task``."""
    o = task.oracle
    if not o:
        raise ValueError(
            f"task {task.id!r} carries no oracle parameters: the oracle runs on generated tasks "
            "(recursor.bench.generate), not on loaded datasets"
        )
    if task.family == "sniah":
        return _SNIAH.format(key=o["key"])
    if task.family == "multihop":
        templates = {
            "works_at": gen_text.WORKS_AT,
            "hq_in": gen_text.HQ_IN,
            "city_in": gen_text.CITY_IN,
        }
        return _MULTIHOP.format(templates=templates, person=o["person"], hops=o["hops"])
    if task.family in ("oolong", "oolong_pairs"):
        head = _OOLONG_LABEL.format(labels=o["labels"], batch=BATCH)
        params = {k: v for k, v in o.items() if k != "labels"}
        ask = _OOLONG_ASK if task.family == "oolong" else _PAIRS_ASK
        return head + ask.format(params=params)
    if task.family == "codeqa":
        return _CODEQA.format(**o)
    raise ValueError(f"no oracle program for family {task.family!r}")


class Oracle:
    name = "oracle"

    def run(self, task: Task, models: Models) -> Attempt:
        return run_oracle(task, models)


def run_oracle(task: Task, models: Models) -> Attempt:
    from recursor.rlm import RLM

    reply = f"```repl\n{program(task).strip()}\n```\nFINAL_VAR(result)"
    # if the program raises, the engine asks the root again: it gives up with a marked answer
    # the program is one cell that makes every sub-call: it may take as long as the whole task
    # (a cell limit meant for a model's exploratory cells would cut it off mid-batch)
    limits = dataclasses.replace(models.limits, cell_timeout_s=models.limits.timeout_s)
    rlm = RLM(
        ScriptedLM([reply, f"FINAL({FAILED})"], name=ROOT_NAME),
        models.sub,
        max_depth=1,
        environment=models.environment,
        limits=limits,
        max_concurrency=models.concurrency,
    )
    with rlm:
        result = rlm.completion(task.query, task.context)
    attempt = rlm_attempt(result)
    if attempt.answer == FAILED:
        errors = [e.error for e in result.trace.of(CellRan) if e.error]
        attempt.error = "oracle program failed: " + (errors[-1] if errors else "no result")
        attempt.answer = None
    # the scripted root is not a model: only the sub-model's usage is the oracle's cost
    attempt.usage = sum(
        (u for name, u in result.usage.by_model.items() if name != ROOT_NAME), Usage()
    )
    return attempt


_NUMBERED = re.compile(r"^\s*(\d+)\.\s(.*)$", re.M)


def label_lookup_lm(tasks: Iterable[Task], *, name: str = "label-lookup") -> FunctionLM:
    """A sub-model that labels OOLONG instances correctly, from the tasks' latent labels.

    It answers the oracle's numbered labelling prompts; it stands in for a perfect sub-model so
    a test can check that the scaffold loses nothing (oracle == 100%).
    """
    truth: dict[str, str] = {}
    for task in tasks:
        for item in task.meta.get("items", []):
            truth[item["text"]] = item["label"]

    def reply(messages: list[dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        lines: list[str] = []
        for number, text in _NUMBERED.findall(prompt):
            lines.append(f"{number}: {truth.get(text.strip(), 'unknown')}")
        return "\n".join(lines)

    return FunctionLM(reply, name=name)
