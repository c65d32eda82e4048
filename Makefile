# The two commands README.rst promises:
#   make demo   -- install what is needed, start a throwaway Prosody with two
#                  accounts and two daemons, pipe data through a link, verify.
#   make test   -- install what is needed, run the whole test suite.
PYTHON ?= python3

.PHONY: bootstrap demo test unit bench

bootstrap:
	bash scripts/bootstrap

demo: bootstrap
	$(PYTHON) demo/run.py

test: bootstrap
	$(PYTHON) -m pytest -q -p no:cacheprovider

unit:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/unit tests/memory

bench: bootstrap
	$(PYTHON) bench/ibb
	$(PYTHON) bench/s5b
