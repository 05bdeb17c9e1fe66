# Lanner: `make run` starts the agent with the default rules, `make test` runs every test.
# Both call `make setup`, which is idempotent and installs everything a fresh machine needs.
VENV   := .venv
PY     := $(VENV)/bin/python
LANNER := $(VENV)/bin/lanner

.PHONY: setup run test lint bench clean image

setup:
	bash scripts/setup.sh

# The agent with Lanner's default rules, alerts on stdout, metrics on 127.0.0.1:8765 (root).
run: setup
	$(LANNER) run

test: setup
	$(VENV)/bin/ruff check lanner tests
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

bench: setup
	$(LANNER) bench engine
	$(LANNER) bench sensor

# The container image (agent and admission webhook) with buildah, and an OCI archive of it in
# build/image/ to import on nodes or push to a registry (docs/deploy.md; root).
image: setup
	bash scripts/build-image.sh --oci-archive build/image/lanner-image.oci.tar

clean:
	rm -rf $(VENV) build *.egg-info
