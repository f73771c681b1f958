"""Loaders for the official benchmark files, read from local paths (never the network).

Each loader takes a file, or a directory whose data files (``.jsonl``, ``.json``, ``.parquet``)
are read in name order, not recursively, and returns :class:`~recursor.bench.task.Task` objects
whose ids are the dataset's own ids, so a result file written today can be joined with one
written next month.

* **OOLONG-synth** (Bertsch et al. 2025, arXiv 2511.02817): Hugging Face
  ``oolongbench/oolong-synth``, published as ``data/{validation,test}-*.parquet``; JSONL or JSON
  exports of the same rows load too. Columns: ``id, context_len, dataset, context_window_text,
  context_window_text_with_labels, question, task_group, task, answer, answer_type,
  input_subset, num_labels, context_window_id``. ``answer`` is a Python list literal:
  ``"['spam']"``, ``"[12]"``, ``"['more common than']"``, ``"[datetime.date(2023, 5, 15)]"``.
* **LongBench v2** (Bai et al. 2024, arXiv 2412.15204): ``data.json`` of ``THUDM/LongBench-v2``,
  a JSON list of ``{_id, domain, sub_domain, difficulty, length, question, choice_A..choice_D,
  answer, context}`` where ``answer`` is a letter.
* **BrowseComp-Plus** (Chen et al. 2025, arXiv 2508.06600): the *decrypted* queries that the
  official ``scripts_build_index/decrypt_dataset.py`` writes from ``Tevatron/browsecomp-plus``
  (``browsecomp_plus_decrypted.jsonl``): ``{query_id, query, answer, evidence_docs, gold_docs,
  negative_docs}``, each document ``{docid, text[, url]}``. Optionally the corpus
  (``Tevatron/browsecomp-plus-corpus``), rows of ``{docid, text[, url]}``. The Hub copy is
  obfuscated (every field but ``query_id``); we refuse it with a pointer to that script.

JSON and JSONL need nothing; Parquet needs ``pyarrow``. A malformed row raises
:class:`~recursor.errors.ConfigurationError` naming ``file:line`` (``file:row N`` for Parquet).
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

from recursor.bench.task import Task, render
from recursor.errors import ConfigurationError

__all__ = ["load_browsecomp_plus", "load_longbench_v2", "load_oolong_synth", "parse_oolong_answer"]

PathArg = str | os.PathLike[str]
#: a record and where it came from ("file:line"), so every error can point at it
Row = tuple[str, dict[str, Any]]

_SUFFIXES = frozenset({".jsonl", ".json", ".parquet"})


# -- reading files ---------------------------------------------------------------------------


def _files(path: PathArg) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ConfigurationError(f"{p}: no such file or directory")
    # not recursive on purpose: a Hugging Face snapshot holds several splits side by side, and
    # silently mixing validation with test would be worse than asking for the split's folder
    found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in _SUFFIXES)
    if not found:
        raise ConfigurationError(f"{p}: no .jsonl, .json or .parquet file in this directory")
    return found


def _rows(files: Iterable[Path]) -> Iterator[Row]:
    for file in files:
        if file.suffix == ".parquet":
            yield from _parquet_rows(file)
        elif file.suffix == ".json":
            yield from _json_rows(file, file.read_text(encoding="utf-8"))
        else:
            yield from _jsonl_rows(file)


def _record(where: str, obj: Any) -> Row:
    if not isinstance(obj, dict):
        raise ConfigurationError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return where, obj


def _jsonl_rows(file: Path) -> Iterator[Row]:
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{file}:{number}: not valid JSON ({exc.msg})") from None
            yield _record(f"{file}:{number}", obj)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _json_rows(file: Path, text: str) -> Iterator[Row]:
    """A JSON list of objects, one object, or objects back to back (JSON Lines named .json).

    Decoded item by item with ``raw_decode`` rather than ``json.load`` so that an error can
    name the line where the offending item starts, as it does for JSONL.
    """
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    array = text.startswith("[", pos)
    if array:
        pos = _skip_space(text, pos + 1)
    line, counted = 1, 0
    while pos < len(text) and not (array and text[pos] == "]"):
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{file}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        yield _record(f"{file}:{line}", obj)
        pos = _skip_space(text, pos)
        if array and text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
    if array and not text.startswith("]", pos):
        raise ConfigurationError(f"{file}: the JSON list is not closed")


def _parquet_rows(file: Path) -> Iterator[Row]:
    try:
        # imported by name: pyarrow is optional and has no type stubs for mypy to require
        parquet: Any = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise ConfigurationError(
            f"{file}: reading Parquet needs pyarrow (pip install pyarrow); "
            "or export the rows to JSONL, which needs nothing"
        ) from None
    for number, obj in enumerate(parquet.read_table(file).to_pylist(), 1):
        yield _record(f"{file}:row {number}", obj)


# -- validating rows -------------------------------------------------------------------------


def _need(where: str, row: dict[str, Any], *fields: str) -> None:
    for name in fields:
        if row.get(name) is None:
            raise ConfigurationError(f"{where}: missing field {name!r}")


def _text(where: str, row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}: field {name!r} should be a string")
    return value


def _int(where: str, row: dict[str, Any], name: str) -> int:
    try:
        return int(row[name])
    except (TypeError, ValueError):
        raise ConfigurationError(f"{where}: field {name!r} should be an integer") from None


def _wanted(choice: object) -> frozenset[object] | None:
    """A filter argument as a set: one value, several, or None for no filtering."""
    if choice is None:
        return None
    if isinstance(choice, str | int) or not isinstance(choice, Collection):
        return frozenset({choice})
    return frozenset(choice)


def _collect(
    rows: Iterator[Row], make: Callable[[str, dict[str, Any]], Task | None], limit: int | None
) -> list[Task]:
    """Tasks in file order, the first ``limit`` that pass the filters (``make`` returns None)."""
    if limit is not None and limit < 0:
        raise ConfigurationError(f"limit must be at least 0, got {limit}")
    tasks: list[Task] = []
    seen: dict[str, str] = {}
    if limit == 0:
        return tasks
    for where, row in rows:
        task = make(where, row)
        if task is None:
            continue
        # ids are how results are joined across runs; two rows with one id would corrupt that
        if task.id in seen:
            raise ConfigurationError(
                f"{where}: duplicate id {task.id!r} (first at {seen[task.id]})"
            )
        seen[task.id] = where
        tasks.append(task)
        if len(tasks) == limit:
            break  # stop reading: a limit is how one samples a multi-gigabyte file quickly
    return tasks


# -- OOLONG-synth ----------------------------------------------------------------------------

_OOLONG_FIELDS = (
    "id", "context_len", "dataset", "context_window_text", "question", "answer", "answer_type",
)  # fmt: skip
#: left out of ``meta``: megabytes each, and the labelled copy would give the answer away
_OOLONG_BIG = frozenset({"context_window_text", "context_window_text_with_labels"})
_DATE = re.compile(r"datetime\.date\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)")


def parse_oolong_answer(answer: Any, answer_type: str) -> int | str:
    """The gold value of an OOLONG-synth ``answer`` field, a Python list literal.

    As OOLONG's own ``synth_process_response``: element 0 of the list (even when a tie put
    several labels there), an ``int`` for ``ANSWER_TYPE.NUMERIC`` (the only type that earns
    ``0.75 ** |error|`` partial credit), a string otherwise. User ids stay strings so that a
    neighbouring id earns nothing. Dates become ``MM/DD/YYYY``, the form the questions ask for.
    """
    if isinstance(answer, str):
        found = _DATE.search(answer)
        if found:
            year, month, day = (int(part) for part in found.groups())
            return date(year, month, day).strftime("%m/%d/%Y")
        answer = ast.literal_eval(answer.strip())
    values = answer if isinstance(answer, list | tuple) else [answer]
    if not values:
        raise ValueError("the answer list is empty")
    if answer_type.endswith("NUMERIC"):
        return int(values[0])
    return str(values[0])


def load_oolong_synth(
    path: PathArg,
    *,
    limit: int | None = None,
    context_len: int | Collection[int] | None = None,
    dataset: str | Collection[str] | None = None,
) -> list[Task]:
    """OOLONG-synth rows as tasks, optionally only some ``context_len`` values (the dataset's
    nominal window size, 1024 to 4M) and source ``dataset`` names (``"trec_coarse"``, ...)."""
    lengths, sources = _wanted(context_len), _wanted(dataset)

    def make(where: str, row: dict[str, Any]) -> Task | None:
        _need(where, row, *_OOLONG_FIELDS)
        if lengths is not None and _int(where, row, "context_len") not in lengths:
            return None
        if sources is not None and row["dataset"] not in sources:
            return None
        try:
            gold = parse_oolong_answer(row["answer"], str(row["answer_type"]))
        except (ValueError, SyntaxError, TypeError) as exc:
            raise ConfigurationError(
                f"{where}: cannot parse answer {row['answer']!r} ({exc})"
            ) from None
        context = _text(where, row, "context_window_text")
        return Task(
            id=f"oolong-synth/{row['id']}",
            family="oolong",
            context=context,
            query=_text(where, row, "question"),
            gold=gold,
            scorer="oolong",
            length=len(render(context)) // 4,
            meta={k: v for k, v in row.items() if k not in _OOLONG_BIG},
        )

    return _collect(_rows(_files(path)), make, limit)


# -- LongBench v2 ----------------------------------------------------------------------------

_LETTERS = ("A", "B", "C", "D")
_LONGBENCH_FIELDS = (
    "_id", "domain", "sub_domain", "difficulty", "length", "question", "answer", "context",
    *(f"choice_{letter}" for letter in _LETTERS),
)  # fmt: skip


def load_longbench_v2(
    path: PathArg,
    *,
    limit: int | None = None,
    difficulty: str | Collection[str] | None = None,
    length: str | Collection[str] | None = None,
) -> list[Task]:
    """LongBench v2 items as four-way multiple choice, optionally only some ``difficulty``
    (``"easy"``, ``"hard"``) and ``length`` categories (``"short"``, ``"medium"``, ``"long"``)."""
    levels, lengths = _wanted(difficulty), _wanted(length)

    def make(where: str, row: dict[str, Any]) -> Task | None:
        _need(where, row, *_LONGBENCH_FIELDS)
        if levels is not None and row["difficulty"] not in levels:
            return None
        if lengths is not None and row["length"] not in lengths:
            return None
        gold = str(row["answer"]).strip().upper()
        if gold not in _LETTERS:
            raise ConfigurationError(f"{where}: answer {row['answer']!r} is not A, B, C or D")
        choices = "\n".join(
            f"({letter}) {str(row[f'choice_{letter}']).strip()}" for letter in _LETTERS
        )
        # the question and choices as LongBench v2's own 0-shot prompt words them, minus the
        # document, which travels as the context
        query = (
            f"What is the correct answer to this question: {_text(where, row, 'question')}\n"
            f"Choices:\n{choices}\n\n"
            'Answer with the letter of the correct choice: "The correct answer is (X)".'
        )
        context = _text(where, row, "context")
        return Task(
            id=f"longbench-v2/{row['_id']}",
            family="longbench_v2",
            context=context,
            query=query,
            gold=gold,
            scorer="choice",
            length=len(render(context)) // 4,
            meta={k: v for k, v in row.items() if k != "context"},
        )

    return _collect(_rows(_files(path)), make, limit)


# -- BrowseComp-Plus -------------------------------------------------------------------------

_DOC_LISTS = {"evidence": "evidence_docs", "gold": "gold_docs", "negatives": "negative_docs"}
#: the Hub copy is base64 of XOR-ed bytes: one long run of base64 characters, never a sentence
_OBFUSCATED = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")


def _docid_order(item: tuple[str, str]) -> tuple[int, int, str]:
    # sorted by id, not listed evidence-first: document order must not hint at the evidence
    docid = item[0]
    return (0, int(docid), "") if docid.isdigit() else (1, 0, docid)


def _corpus(files: list[Path]) -> dict[str, str]:
    texts: dict[str, str] = {}
    for where, row in _rows(files):
        _need(where, row, "docid", "text")
        texts[str(row["docid"])] = _text(where, row, "text")
    return texts


def load_browsecomp_plus(
    path: PathArg,
    *,
    limit: int | None = None,
    corpus: PathArg | None = None,
    docs: str = "evidence+negatives",
) -> list[Task]:
    """BrowseComp-Plus queries, each over its own documents as a ``{docid: text}`` context.

    ``docs`` joins with ``+`` the per-query lists to include: ``evidence``, ``gold``,
    ``negatives``, and ``corpus`` for every corpus document (meant for a corpus cut down to a
    size that fits, as the RLM paper's 1,000 documents per query; the full one is ~100K). The
    corpus, from ``corpus`` or from files named ``*corpus*`` in the ``path`` directory, also
    supplies the text of any listed document given without one.
    """
    parts = _doc_parts(docs)
    root = Path(path)
    found = _files(root)
    query_files = [f for f in found if not root.is_dir() or "corpus" not in f.name]
    corpus_files = (
        _files(corpus) if corpus is not None else [f for f in found if f not in query_files]
    )
    if not query_files:
        raise ConfigurationError(f"{root}: only corpus files here, no queries")
    if "corpus" in parts and not corpus_files:
        raise ConfigurationError("docs includes 'corpus' but no corpus file was given or found")
    # read on first need, once: the full corpus is gigabytes and most runs never touch it
    corpus_texts = functools.cache(lambda: _corpus(corpus_files))
    lookup = corpus_texts if corpus_files else None

    def make(where: str, row: dict[str, Any]) -> Task | None:
        lists = [_DOC_LISTS[part] for part in parts if part in _DOC_LISTS]
        _need(where, row, "query_id", "query", "answer", *lists)
        question = _text(where, row, "query").strip()
        if _OBFUSCATED.fullmatch(question):
            raise ConfigurationError(
                f"{where}: the query is still obfuscated; decrypt the Hub copy with "
                "BrowseComp-Plus's scripts_build_index/decrypt_dataset.py first"
            )
        context: dict[str, str] = {}
        for part in parts:
            if part == "corpus":
                pairs: Iterable[tuple[str, str]] = corpus_texts().items()
            else:
                pairs = _listed_docs(where, row, _DOC_LISTS[part], lookup)
            for docid, text in pairs:
                context.setdefault(docid, text)
        context = dict(sorted(context.items(), key=_docid_order))
        return Task(
            id=f"browsecomp-plus/{row['query_id']}",
            family="browsecomp_plus",
            context=context,
            query=f"{question}\n\nGive only the exact answer, as briefly as possible.",
            gold=str(row["answer"]).strip(),
            scorer="exact",
            length=len(render(context)) // 4,
            meta=_browsecomp_meta(row, parts),
        )

    return _collect(_rows(query_files), make, limit)


def _doc_parts(docs: str) -> list[str]:
    """The document lists named by ``docs`` (``evidence+negatives``...), checked."""
    parts = [part.strip() for part in docs.split("+") if part.strip()]
    unknown = sorted(set(parts) - {*_DOC_LISTS, "corpus"})
    if not parts or unknown:
        raise ConfigurationError(
            f"docs={docs!r}: join evidence, gold, negatives, corpus with '+'"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return parts


def _listed_docs(
    where: str, row: dict[str, Any], field: str, corpus: Callable[[], dict[str, str]] | None
) -> Iterator[tuple[str, str]]:
    """(docid, text) of the documents a query row lists under ``field``; a document given
    without its text takes it from ``corpus``."""
    if not isinstance(row[field], list):
        raise ConfigurationError(f"{where}: field {field!r} should be a list")
    for i, doc in enumerate(row[field]):
        if not isinstance(doc, dict) or doc.get("docid") is None:
            raise ConfigurationError(f"{where}: {field}[{i}] has no 'docid'")
        docid = str(doc["docid"])
        text: Any = doc.get("text")
        if text is None and corpus is not None:
            text = corpus().get(docid)
        if text is None:
            raise ConfigurationError(
                f"{where}: {field}[{i}] (docid {docid}) has no text, nor a corpus with it"
            )
        yield docid, str(text)


def _browsecomp_meta(row: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """A query row without its document lists, which become their docids."""
    meta: dict[str, Any] = {k: v for k, v in row.items() if k not in _DOC_LISTS.values()}
    for field in _DOC_LISTS.values():
        if isinstance(row.get(field), list):
            meta[f"{field[:-5]}_docids"] = [
                str(d.get("docid")) for d in row[field] if isinstance(d, dict)
            ]
    meta["docs"] = "+".join(parts)
    return meta
