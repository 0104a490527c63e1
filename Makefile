# Two commands for a fresh machine with Python 3.11+ and make:
#   make run    venv + install, init the DuckDB file, load the sample data, run the pipeline,
#               start the dashboard
#   make test   venv + install, lint, the whole test suite
PYTHON ?= python3
VENV ?= .venv
DMP_HOME ?= $(CURDIR)/.dmp
export DMP_HOME
# The sample logs' synthetic sites and their categories (see sample_data/).
export DMP_INTERESTS__CATEGORY_RULES ?= $(CURDIR)/sample_data/categories.toml
DMP = $(VENV)/bin/dmp

.PHONY: run test lint bench sample clean

run: $(VENV)/.installed
	$(DMP) init
	$(DMP) ingest sample_data/logs/*
	$(DMP) run all
	$(DMP) segments apply sample_data/segments
	@# A demo agency's seed list and its lookalike (made once).
	$(DMP) seeds upload sample_data/seeds/car_site_visitors_cookie.csv --name car-site-visitors \
	    --agency demo --id-type cookie --replace
	@$(DMP) lookalike list --agency demo --json | grep -q '"car-lookalike"' || \
	    $(DMP) lookalike create car-lookalike --seed car-site-visitors --agency demo --reach 5%
	$(DMP) segments list
	$(DMP) status
	@# A first dashboard user on a fresh instance, with a random password shown once.
	@if [ "$$($(DMP) users list --json)" = "[]" ]; then \
	    pw=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(12))'); \
	    echo "$$pw" | $(DMP) users add admin --role admin --password-stdin >/dev/null; \
	    echo; echo "Dashboard log-in: admin / $$pw  (shown once; add users with dmp users add)"; \
	fi
	@echo "Dashboard at http://127.0.0.1:8080/ (it holds the database; Ctrl-C stops it)"
	$(DMP) serve

test: $(VENV)/.installed lint
	$(VENV)/bin/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/ingest.py

sample: $(VENV)/.installed
	$(VENV)/bin/python sample_data/build.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .dmp bench/out
