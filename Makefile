# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# The venv is (re)built only when the dependency files' content changes; a second call is a no-op.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
DEMO_DIR ?= quickstart-project
LAB_ROOT ?= $(DEMO_DIR)

.PHONY: demo test lint export-check nbtest pytest tutorials bench clean lab lab-ext team-setup

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	# a reinstall would write the wheel's install.json through lab-ext's link into the build (a second copy in wheels)
	if [ -L $(VENV)/share/jupyter/labextensions/aiworkbench-lab ]; then rm $(VENV)/share/jupyter/labextensions/aiworkbench-lab; fi
	SKIP_JUPYTER_BUILDER=1 $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/aiwb quickstart $(DEMO_DIR) --force

test: $(STAMP) lab-ext lint export-check nbtest pytest

# Debian chromium if missing, npm ci, the extension built and linked into the venv with the server config
lab-ext: $(STAMP)
	bash scripts/setup_lab.sh $(VENV)

# JupyterLab with the Workbench panel on a project (the quickstart's, made first if needed)
lab: lab-ext
	test -f $(LAB_ROOT)/settings.ini || $(BIN)/aiwb quickstart $(LAB_ROOT)
	$(BIN)/jupyter lab --allow-root --no-browser --ip=127.0.0.1 --ServerApp.root_dir=$(abspath $(LAB_ROOT))

lint: $(STAMP)
	$(BIN)/ruff check nbs tests bench
	$(BIN)/ruff format --check nbs tests bench
	# the exported package too: an import that only a notebook's test cell uses is dead code there
	$(BIN)/ruff check --select F,E9 aiworkbench

# nbs/ is the source: exporting must reproduce aiworkbench/ exactly, and library notebooks carry no outputs.
export-check: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	@if [ -n "$$(git status --porcelain -- aiworkbench nbs)" ]; then \
	  echo "nbdev-export/nbdev-clean changed files: commit the result of exporting nbs/"; \
	  git status --porcelain -- aiworkbench nbs; git --no-pager diff --stat -- aiworkbench nbs; exit 1; fi

nbtest: $(STAMP)
	$(BIN)/nbdev-test --skip-folder-re '^(tutorials|[_.].*)$$' --flags slow

# Debian PostgreSQL if missing (what `aiwb team up` runs; tests/test_team.py starts it)
team-setup:
	bash scripts/setup_team.sh

# a module's tests stay in one process (its fixtures start servers once); modules run TEST_WORKERS at a time
# (3 on 2 cores: the tests wait on servers and subprocesses about a third of the time)
# the tutorials (nbval, each notebook one kernel) run in the same pool, beside the test modules
TEST_WORKERS ?= 3
pytest: $(STAMP) team-setup
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 -p no:cacheprovider --nbval-lax tests nbs/tutorials

# the tutorials alone (`make pytest` runs them with the tests)
tutorials: $(STAMP)
	$(BIN)/pytest -q --nbval-lax -p no:cacheprovider nbs/tutorials

# every benchmark, each side by side with its reference (bench/team.py includes bench/claims.py's rows)
bench: $(STAMP) lab-ext team-setup
	$(BIN)/python bench/contracts.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/panel.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/team.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/features.py
	$(BIN)/python bench/monitoring.py
	$(BIN)/python bench/ci.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .aiwb
