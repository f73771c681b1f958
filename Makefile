# The README's two commands. Each creates .venv when missing and installs what it needs.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
# Everything the test suite exercises: remote SDKs, OpenTelemetry, and both embedded models
# (~1.6 GB of downloads the first time; pip's cache makes later installs quick).
TEST_EXTRAS ?= dev,local,local-small,e2b,modal,daytona
DEMO_EXTRAS ?= local
# Installs are locked: exact versions of everything (pip included) from requirements.lock, so
# the README's two commands build the same environment on every fresh machine and an upstream
# release cannot turn the build red overnight. `make lock` re-resolves the newest releases
# within pyproject.toml's ranges; `make test-latest` runs the suite on them without the lock.
LOCK   ?= requirements.lock
PIN    ?= -c $(LOCK)
# After installing from the lock, fail if anything installed is not pinned at that version
# (a dependency added to pyproject.toml without `make lock`). Off for test-latest.
LOCKCHECK ?= $(PY) scripts/lockcheck.py $(LOCK)

.PHONY: test demo install install-demo system-deps lint fmt bench eval eval-small table bench-batch clean lock test-latest

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(PIN) --upgrade pip

# Reinstall whenever the dependency list or the lock changes.
$(VENV)/.installed-test: pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install --quiet $(PIN) -e ".[$(TEST_EXTRAS)]"
	$(LOCKCHECK)
	touch $@

$(VENV)/.installed-demo: pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install --quiet $(PIN) -e ".[$(DEMO_EXTRAS)]"
	$(LOCKCHECK)
	touch $@

# Re-resolve: a throwaway venv gets the newest releases pyproject.toml allows (with every
# extra the tests use), and its exact versions become the lock. Review the diff, then `make test`.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e ".[$(TEST_EXTRAS)]"
	{ echo "# Exact versions for make test / make demo (pip install -c). Made by make lock: do not edit."; \
	  echo "# Resolved on $$(date -u +%Y-%m-%d) for CPython $$(.venv-lock/bin/python -c 'import platform; print(platform.python_version(), platform.machine())') on Linux."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -iv '^recursor[= @]'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .venv-lock

# The whole of make test on the newest releases, in a venv of its own: drift shows here first.
test-latest:
	rm -f .venv-latest/.installed-test
	$(MAKE) test VENV=.venv-latest PIN="--upgrade --upgrade-strategy eager" LOCKCHECK=true

# Debian packages the tests drive: chromium renders the trace viewer headless; bubblewrap runs
# the bwrap sandbox (contract and escape suites); runsc (gVisor) where Debian has it.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: install Debian's chromium (as root) to run the browser test"; \
	  fi; }
	@command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-driver >/dev/null; \
	  else \
	    echo "note: install Debian's chromium-driver (as root) to run the serve page's browser test"; \
	  fi; }
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else \
	    echo "note: install Debian's bubblewrap (as root) to run the bwrap sandbox tests"; \
	  fi; }
	@command -v runsc >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc || { apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc; }; } >/dev/null 2>&1 || \
	      echo "note: Debian's runsc (gVisor) did not install; the gvisor sandbox stays unavailable"; \
	  fi; }

install: $(VENV)/.installed-test system-deps

install-demo: $(VENV)/.installed-demo

lint: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -q

demo: install-demo
	$(PY) -m recursor.demo

fmt: install
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

bench: install
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/trace_size.py

# The quality matrix of the README, on the embedded models (about an hour on 2 cores; resumes).
eval: install
	$(PY) -m recursor.cli bench --families sniah,oolong --methods direct,summarize,bm25,rlm-d0,rlm-d1,oracle \
	  --model local:qwen2.5-coder-1.5b --sub-model local:qwen2.5-coder-0.5b --n 2 \
	  --lengths 1000,4000,16000 --window 2048 --timeout 240 --max-iterations 6 --concurrency 1 \
	  --out benchmarks/results/bench-embedded

# The side-by-side table (issue 16): recursor (rlm-d0, rlm-d1) against the official rlms, direct
# and bm25 on the embedded models, n per cell, three lengths. Hundreds of runs (hours on 2
# cores): every finished job is kept in $(TABLE_OUT)/records.jsonl, so re-running the same
# command resumes where it stopped. rlms reaches the embedded models through a loopback
# OpenAI-compatible bridge (recursor.bench.peers). A smoke of one cell per method:
#   make table TABLE_FAMILIES=sniah TABLE_LENGTHS=1000 TABLE_N=1 TABLE_OUT=benchmarks/results/table-smoke
# (kept apart: runs that time out are results, not crashes, and a resumed table keeps them, so
# a smoke taken on a loaded machine must not seed the real table).
TABLE_FAMILIES ?= sniah,multihop,oolong
TABLE_METHODS  ?= rlm-d0,rlm-d1,rlms,direct,bm25
TABLE_LENGTHS  ?= 1000,4000,16000
TABLE_N        ?= 5
TABLE_OUT      ?= benchmarks/results/table-embedded
table: install
	nice -n 10 $(PY) -m recursor.cli bench --families $(TABLE_FAMILIES) --methods $(TABLE_METHODS) \
	  --model local:qwen2.5-coder-1.5b --sub-model local:qwen2.5-coder-0.5b --n $(TABLE_N) \
	  --lengths $(TABLE_LENGTHS) --window 2048 --timeout 240 --max-iterations 6 --concurrency 1 \
	  --out $(TABLE_OUT) --traces $(TABLE_OUT)/traces
	$(PY) benchmarks/side_by_side.py $(TABLE_OUT)

# Batch throughput: process executor and Ray (1 and 2 local nodes) on the 500 ms stub.
bench-batch: install
	$(PY) benchmarks/batch.py
# Issue 17's matrix on the embedded models: prompts v2 against v1 on sniah (32K tokens),
# multihop (8K) and oolong (4K), then the same on held-out seeds and wordings. It runs in
# passes of growing n (EVAL_SMALL_PASSES: 2 tasks a cell first, so a run cut short has every
# cell started, then 10); in each pass the tuning split runs first, v2 before v1. Every step resumes from its records
# (re-run to continue), and the table at the end reads whatever has finished. It is CPU heavy:
# 60-900 s a task on 2 shared cores, so it runs niced. A bench that exits badly does not stop the
# loop: its finished records are on disk already (the process has been seen to segfault at exit,
# in the embedded model's teardown, after writing its report).
EVAL_SMALL_OUT ?= benchmarks/results/eval-small
EVAL_SMALL_PASSES ?= 2 10
EVAL_SMALL_SETS ?= sniah:32000 multihop:8000 oolong:4000
EVAL_SMALL_RUN = nice -n 10 $(PY) -m recursor.cli bench --model local:qwen2.5-coder-1.5b \
	  --sub-model local:qwen2.5-coder-0.5b --window 2048 --timeout 900 --max-iterations 8 \
	  --concurrency 1
eval-small: install
	for n in $(EVAL_SMALL_PASSES); do \
	  for split in tuning heldout; do \
	    for methods in rlm-d1-v2 rlm-d1-v2,rlm-d1-v1; do \
	      for set in $(EVAL_SMALL_SETS); do \
	        fam=$${set%%:*}; len=$${set##*:}; \
	        if [ $$split = heldout ]; then extra="--seed 1000 --heldout"; else extra="--seed 0"; fi; \
	        $(EVAL_SMALL_RUN) --n $$n --families $$fam --lengths $$len --methods $$methods \
	          $$extra --out $(EVAL_SMALL_OUT)/$$split-$$fam \
	          --traces $(EVAL_SMALL_OUT)/$$split-$$fam/traces || echo "bench exited with $$?"; \
	      done; \
	    done; \
	  done; \
	  $(PY) benchmarks/eval_small.py $(EVAL_SMALL_OUT); \
	done

clean:
	rm -rf $(VENV) .venv-latest .venv-lock build dist src/*.egg-info
