# Two commands: `make run` serves Docker Hub's default, `make test` installs and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# System packages the tests drive for real (a real upstream registry and a real client).
# Real upstream registry, real clients (skopeo, dockerd, containerd, podman), real Prometheus,
# a real terminal (tmux) for what `mirror warm` draws on one, Apache's htpasswd to write the
# pull users' bcrypt file as operators do, and mmdebstrap to make the Debian base the Dockerfile is
# built on (tests/test_container_image.py: no base image can be pulled), and nginx as the hashing
# balancer in front of several replicas (tests/real/test_s3_routing.py).
SYSTEM_PACKAGES := docker-registry skopeo docker.io containerd podman prometheus iproute2 tmux apache2-utils mmdebstrap nginx-light
SYSTEM_BINARIES := docker-registry skopeo dockerd containerd ctr podman prometheus promtool ip tmux htpasswd mmdebstrap nginx

.PHONY: run test lint pytest system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/mirror serve

system-deps:
	@missing=""; for b in $(SYSTEM_BINARIES); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing"; \
			if [ -z "$$(ls /var/lib/apt/lists/*_Packages* 2>/dev/null)" ]; then apt-get update -q; fi; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES); }; \
		else echo "missing$$missing (not root: tests that need them are skipped outside CI)"; fi; \
	fi

lint: $(VENV)/.installed
	$(BIN)/ruff check mirror tests bench
	$(BIN)/ruff format --check mirror tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	MYPYPATH=tests $(BIN)/mypy --strict tests/fakes tests/support tests/real tests/clients tests/auth tests/unit tests/s3 tests/*.py
	MYPYPATH=tests $(BIN)/mypy --strict bench

pytest: $(VENV)/.installed system-deps
	$(BIN)/pytest

test: lint pytest

clean:
	rm -rf $(VENV) build *.egg-info
