# langchain-rag-async: `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_INDEX ?= .rag-index-demo

.PHONY: demo test test-fast chaos chaos-report lint type docs bench eval clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: offline, index the project's docs and README (twice: the second run skips
## everything), show the best chunks for a question, then stream a cited answer
demo: $(STAMP)
	$(BIN)/rag-async index . --index-dir $(DEMO_INDEX) --include 'README.md' --include 'docs/**/*.md'
	$(BIN)/rag-async index . --index-dir $(DEMO_INDEX) --include 'README.md' --include 'docs/**/*.md'
	$(BIN)/rag-async query "how does incremental indexing skip unchanged files?" --index-dir $(DEMO_INDEX) -k 3
	$(BIN)/rag-async ask "How does incremental indexing skip unchanged files?" --index-dir $(DEMO_INDEX)

## test: the whole suite (unit + end to end + the chaos suite's fast subset), offline, no keys
test: $(STAMP)
	$(BIN)/pytest -q -m "not chaos"

## chaos: the whole chaos suite (tests/reliability, many trials; tens of minutes)
chaos: $(STAMP)
	$(BIN)/pytest -q tests/reliability

## chaos-report: every scenario with the published trial counts; writes docs/reliability.md
chaos-report: $(STAMP)
	$(BIN)/python scripts/chaos.py

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not e2e and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

type: $(STAMP)
	$(BIN)/mypy

## docs: the documentation site with the API reference (mkdocs, warnings as errors) in site/
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

## bench: indexing throughput against LangChain (benchmarks/indexing.py; a few minutes)
bench: $(STAMP)
	$(BIN)/python scripts/bench_async.py

## eval: retrieval quality and latency on BEIR SciFact (benchmarks/retrieval.py)
eval: $(STAMP)
	$(BIN)/python scripts/eval_retrieval.py

clean:
	rm -rf $(VENV) $(DEMO_INDEX) site .rag-index .pytest_cache .mypy_cache .ruff_cache
