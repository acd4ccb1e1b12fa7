# llmasos: the two commands of the README, and a few more.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test test-fast install bench clean

run: install ## install, then open the shell on the embedded default model
	$(VENV)/bin/llmasos shell

test: install ## install, then run the whole test suite (the few real-model tests included)
	$(PY) -m pytest -q

test-fast: install ## everything but the tests marked slow (the real default model)
	$(PY) -m pytest -q -m "not slow"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install.sh
	./scripts/install.sh
	touch $@

bench: install ## the benchmarks (quick variants)
	$(PY) bench/syscall_overhead.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .cache
