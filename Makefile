# The two set-up commands from the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test check lint docs bench soak fuzz dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m ckptmigrate.demo

lint: install
	$(PY) -m ruff check ckptmigrate tests benchmarks docs
	$(PY) -m ruff format --check ckptmigrate tests benchmarks docs
	$(PY) -m mypy
	$(PY) -m vulture ckptmigrate --min-confidence 80

# The whole suite (what CI runs).
test: lint
	$(PY) -m pytest -n 2 -q

# The edit-run loop, under a minute: lint and the tests that need no TensorFlow and are not
# marked slow (fault trials, browser runs). TensorFlow is made unimportable: a test that
# reaches for it is reported as skipped.
check: lint
	$(PY) -m pytest -n 2 -q --without-tensorflow -m "not slow"

# The long runs of the differential oracles (tests/test_verdict_oracle.py: 10,000 graph, 5,000
# optimizer and 2,500 Keras pairs), of
# the behaviour oracles (tests/test_behaviour_oracle.py: 60 random migrations), of Keras 3's
# load_weights on each backend installed (tests/test_keras_backends.py: 500 pairs each) and
# of the upload fault trials (tests/test_interrupted.py: 60 cut connections, 60 SIGTERMs).
soak: install
	CKPTMIGRATE_ORACLE_PAIRS=10000 $(PY) -m pytest -n 2 -q -p no:cacheprovider tests/test_verdict_oracle.py
	CKPTMIGRATE_BEHAVIOUR_CASES=60 $(PY) -m pytest -n 2 -q -p no:cacheprovider tests/test_behaviour_oracle.py
	CKPTMIGRATE_KERAS_BACKEND_CASES=500 $(PY) -m pytest -n 2 -q -p no:cacheprovider tests/test_keras_backends.py -k load_weights
	CKPTMIGRATE_FAULT_TRIALS=60 $(PY) -m pytest -q -p no:cacheprovider -s tests/test_interrupted.py -k all_or_nothing
	CKPTMIGRATE_FUZZ_CASES=145000 $(PY) tests/fuzzing.py --workers 2

# Fuzz every kind of input (index, data shard, state file, object graph, map, spec) through
# the public entry points: CKPTMIGRATE_FUZZ_CASES per target (default 2,000) in
# CKPTMIGRATE_FUZZ_WORKERS processes; prints a table, fails on any crash, hang (> 5 s) or
# blow-up (> 1 GiB) and saves those inputs under tests/fuzz_regressions/ for make test.
fuzz: install
	$(PY) tests/fuzzing.py --save-regressions

# The API reference (pdoc, from the docstrings) into build/docs/; any pdoc warning fails it.
docs: install
	$(PY) docs/build_api.py build/docs

bench: install
	$(PY) benchmarks/run.py
	$(PY) benchmarks/remote.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Build the sdist and wheel, check their metadata, install the wheel (without TensorFlow)
# into a fresh venv and run the CLI from it; the sdist's tests must all collect.
dist: install
	rm -rf dist build/dist-check
	$(PY) -m build --outdir dist
	$(PY) -m twine check --strict dist/*
	$(PYTHON) -m venv build/dist-check/venv
	build/dist-check/venv/bin/pip install --quiet dist/*.whl
	build/dist-check/venv/bin/ckptmigrate --version
	build/dist-check/venv/bin/ckptmigrate maps
	mkdir -p build/dist-check/sdist && tar -xzf dist/*.tar.gz -C build/dist-check/sdist
	cd build/dist-check/sdist/* && $(CURDIR)/$(PY) -m pytest --collect-only -q -p no:cacheprovider tests | tail -1
