# para: Claude Code sessions in parallel, one git worktree and one authenticated container each.
# Variables given on the command line (make image TOKEN_FILE=...) reach the scripts through the
# environment; the recipes quote them in the shell, so prompts may hold any character.
SHELL := /bin/bash
TSX := node --import tsx
# Values given on the command line are taken literally: make must not expand $(shell ...) or $5
# in a prompt or a message. Each becomes a simple variable holding the text as typed, exported.
LITERAL_VARS := PROMPT MSG NAME IMAGE REPO NETWORK EGRESS ALLOW EGRESS_NETWORK VERIFY ONLINE FILES CONTEXT MEMORY CPUS PIDS_LIMIT TAG TOKEN_FILE API_KEY_FILE BASE_IMAGE CLAUDE_BINARY CLAUDE_VERSION
$(foreach v,$(LITERAL_VARS),$(if $(filter command line,$(origin $(v))),$(eval override $(v) := $$(value $(v)))$(eval export $(v))))
# Session targets work on the repository in REPO (default: this folder).
# The session scripts run from a prebuilt bundle (dist/*.mjs): node starts it in ~0.2 s
# where tsx needs ~0.8 s to compile. `npx tsx scripts/<name>.ts` runs the same code.
SOURCES := $(wildcard scripts/*.ts scripts/lib/*.ts scripts/lib/*/*.ts)
BUNDLES := $(patsubst scripts/%.ts,dist/%.mjs,$(wildcard scripts/*.ts))

.PHONY: help install build image login doctor test check typecheck lint format bench bench-remote bench-doctor base-image \
        start list logs sync diff log mcp-install finish cancel clean-sessions

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

node_modules: package.json package-lock.json
	npm ci
	@touch node_modules

install: node_modules ## install the dependencies (npm ci)

dist/%.mjs: scripts/%.ts $(SOURCES) node_modules
	@mkdir -p dist
	npx esbuild $< --bundle --platform=node --format=esm --target=node20 --log-level=warning \
	  --banner:js="import { createRequire as __paraRequire } from 'node:module'; const require = __paraRequire(import.meta.url);" \
	  --outfile=$@

build: $(BUNDLES) ## bundle the scripts into dist/ (done on demand by the targets below)

image: node_modules ## build para-authenticated:latest from your Claude login (TOKEN_FILE, API_KEY_FILE, BASE_IMAGE, CLAUDE_VERSION, CLAUDE_BINARY, TAG, REBUILD_BASE=1, VERIFY=online, EGRESS_NETWORK, CONTEXT)
	$(TSX) scripts/build-image.ts \
	  $${TAG:+--tag "$$TAG"} \
	  $${BASE_IMAGE:+--base-image "$$BASE_IMAGE"} \
	  $${CLAUDE_BINARY:+--claude-binary "$$CLAUDE_BINARY"} \
	  $${CLAUDE_VERSION:+--claude-version "$$CLAUDE_VERSION"} \
	  $${TOKEN_FILE:+--token-file "$$TOKEN_FILE"} \
	  $${API_KEY_FILE:+--api-key-file "$$API_KEY_FILE"} \
	  $${REBUILD_BASE:+--rebuild-base} $${VERIFY:+--verify "$$VERIFY"} $${EGRESS_NETWORK:+--egress-network "$$EGRESS_NETWORK"} \
	  $${CONTEXT:+--context "$$CONTEXT"}

login: node_modules ## log in inside a throwaway container and commit it as para-authenticated:latest (TAG)
	$(TSX) scripts/login.ts $${TAG:+--tag "$$TAG"}

doctor: dist/doctor.mjs ## say why a container cannot authenticate (IMAGE, ONLINE=1 for one real request, EGRESS_NETWORK)
	node dist/doctor.mjs $${IMAGE:+--image "$$IMAGE"} $${ONLINE:+--online} $${EGRESS_NETWORK:+--egress-network "$$EGRESS_NETWORK"}

start: dist/start.mjs ## start a session: NAME=... and/or PROMPT="..." (REPO, IMAGE, DETACH=1, CONTEXT, RUNTIME, EGRESS, ALLOW="h1 h2", EGRESS_NETWORK, NETWORK, MEMORY, CPUS, PIDS_LIMIT)
	cd "$${REPO:-.}" && node "$(CURDIR)/dist/start.mjs" $${NAME:+"$$NAME"} --container \
	  $${PROMPT:+--prompt "$$PROMPT"} $${IMAGE:+--image "$$IMAGE"} $${DETACH:+--detach} \
	  $${CONTEXT:+--context "$$CONTEXT"} $${RUNTIME:+--runtime "$$RUNTIME"} $${EGRESS:+--egress "$$EGRESS"} $${ALLOW:+--allow "$$ALLOW"} $${EGRESS_NETWORK:+--egress-network "$$EGRESS_NETWORK"} \
	  $${NETWORK:+--network "$$NETWORK"} $${MEMORY:+--memory "$$MEMORY"} $${CPUS:+--cpus "$$CPUS"} $${PIDS_LIMIT:+--pids-limit "$$PIDS_LIMIT"}

list: dist/list.mjs ## list this repository's sessions
	cd "$${REPO:-.}" && node "$(CURDIR)/dist/list.mjs"

logs: dist/logs.mjs ## show a detached session's output: NAME=... (FOLLOW=1)
	cd "$${REPO:-.}" && node "$(CURDIR)/dist/logs.mjs" "$$NAME" $${FOLLOW:+--follow}

sync: dist/sync.mjs ## bring a session's commits to para/NAME: NAME=... (FILES=1: a remote session's uncommitted files too)
	cd "$${REPO:-.}" && node "$(CURDIR)/dist/sync.mjs" "$$NAME" $${FILES:+--files}

finish: dist/finish.mjs ## commit, stop and keep the branch: NAME=... MSG="..."
	cd "$${REPO:-.}" && node "$(CURDIR)/dist/finish.mjs" "$$NAME" $${MSG:+-m "$$MSG"}

cancel: dist/cancel.mjs ## archive the branch and remove the session: NAME=... (FORCE=1)
	cd "$${REPO:-.}" && node "$(CURDIR)/dist/cancel.mjs" "$$NAME" $${FORCE:+--force}

diff: dist/diff.mjs ## what a session changed since it started, uncommitted files included: NAME=... (STAT=1)
	cd "$${REPO:-.}" && node "$(CURDIR)/dist/diff.mjs" "$$NAME" $${STAT:+--stat}

log: dist/log.mjs ## a session's commits since it started: NAME=...
	cd "$${REPO:-.}" && node "$(CURDIR)/dist/log.mjs" "$$NAME"

mcp-install: dist/para.mjs ## add para's MCP server to the repository's .mcp.json (REPO)
	cd "$${REPO:-.}" && node "$(CURDIR)/dist/para.mjs" mcp install

clean-sessions: dist/clean.mjs ## remove this repository's orphaned containers and worktree records (DRY_RUN=1)
	cd "$${REPO:-.}" && node "$(CURDIR)/dist/clean.mjs" $${DRY_RUN:+--dry-run}

typecheck: node_modules ## type-check the TypeScript
	npx tsc --noEmit -p .

lint: node_modules ## lint and check formatting (biome)
	npx biome check .

format: node_modules ## format the code and apply safe lint fixes (biome)
	npx biome check --write .

base-image: ## build the local Debian base image the tests use (needs debootstrap, root)
	test/support/make-base-image.sh

test: node_modules ## run the unit and integration tests (needs Docker and the base image)
	$(TSX) test/run.ts $${TEST:+"$$TEST"}

check: typecheck lint test ## type-check, lint, then run the tests

bench: node_modules dist/start.mjs dist/para.mjs ## time start.ts against the raw git + docker commands it wraps, list with 1 and 12 sessions, a start through para mcp, and the credential broker's cost
	$(TSX) bench/start.bench.ts
	$(TSX) bench/list.bench.ts
	$(TSX) bench/mcp.bench.ts
	$(TSX) bench/broker.bench.ts

bench-remote: node_modules dist/start.mjs ## time a session start on another engine, first and second session (CONTEXT, IMAGE, RUNS)
	$(TSX) bench/remote.bench.ts --context "$$CONTEXT" --image "$${IMAGE:-para-authenticated:latest}" $${RUNS:+--rounds "$$RUNS"}

bench-doctor: node_modules dist/doctor.mjs ## time make doctor, healthy and with the daemon unreachable (IMAGE, RUNS)
	$(TSX) bench/doctor.bench.ts $${IMAGE:+--image "$$IMAGE"} $${RUNS:+--runs "$$RUNS"}
