# The two commands of the README: `make run` (the service) and `make test` (the whole suite, on two worker processes:
# pytest-xdist, one test file per worker at a time, so module and session fixtures stay within a worker).
# Each creates its own virtual environment from the project's files; nothing else needs to be installed by hand
# beyond Python 3.11, Node.js 20+ (for the test FHIR server) and, for the browser, PostgreSQL, Redis and
# multi-replica tests, Debian's chromium, postgresql, redis-server and haproxy packages (`make system-deps` installs
# them with apt-get).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv system-deps bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/cds-onnx keys generate --dir var/keys --if-missing
	$(BIN)/cds-onnx serve --dev --config config/development.toml

test: $(STAMP)
	bash tests/fhir_server/setup.sh
	bash tests/kserve_server/setup.sh
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

system-deps:
	apt-get update && apt-get install -y --no-install-recommends postgresql chromium redis-server haproxy default-jre-headless

# The serving benchmark's HealthChain peer pins its own FastAPI/fhir.resources/httpx, so it gets its own venv
# (the `bench` dependency group of pyproject.toml); without it the benchmark skips the peer and says so.
PEER_VENV := benchmarks/results/peer-venv
$(PEER_VENV)/.installed: pyproject.toml
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	if $(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"]))' \
		| xargs $(PEER_VENV)/bin/python -m pip install --quiet; then touch $@; \
		else echo "HealthChain peer not installed: the serving benchmark will skip it"; fi

bench: $(STAMP)
	-$(MAKE) --no-print-directory $(PEER_VENV)/.installed
	$(BIN)/python benchmarks/mapping_benchmark.py
	$(BIN)/python benchmarks/serving_benchmark.py --write-doc
	-$(BIN)/python benchmarks/workers_benchmark.py --write-doc  # needs Debian's wrk; says so and skips without it

clean:
	rm -rf $(VENV) var .pytest_cache
