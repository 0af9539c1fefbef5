# popfetch — see README.md.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 30s
# Go minimizes each new interesting input for up to a minute by default,
# fuzzing nothing meanwhile: a minute-long run then spent most of its time
# there (FuzzParse: 10,341 executions in 25 s; with 2 s, 515,563).
FUZZMINIMIZE ?= 2s
SHELL    := /bin/bash

# Where make install puts things: PREFIX for the paths the files are used
# at, DESTDIR in front of them for staging (packaging).
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
# bash-completion loads completions/NAME on demand; zsh's site-functions
# (Debian packages use /usr/share/zsh/vendor-completions); fish's vendor
# directory (read where XDG_DATA_DIRS names $(PREFIX)/share).
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
# The units are user units (systemctl --user): the daemon runs as you.
SYSTEMDUSERUNITDIR ?= $(PREFIX)/lib/systemd/user
# BIN is the binary make install installs.
BIN      ?= bin/popfetch
UNITS    = popfetch.service popfetch-oneshot.service popfetch.timer
# make splits its lists at whitespace: with a space in one of these
# directories, install would create and uninstall remove other paths than
# the ones meant ("/opt/my apps" is "/opt/my" and "apps/..."). DESTDIR may
# hold spaces: it is only ever quoted.
INSTALLDIRS = BINDIR MANDIR BASHCOMPDIR ZSHCOMPDIR FISHCOMPDIR SYSTEMDUSERUNITDIR
check-install-dirs = $(foreach v,$(INSTALLDIRS),$(if $(word 2,$($(v))),$(error $(v) "$($(v))" holds whitespace, \
	which make install and uninstall cannot handle: choose a PREFIX without (DESTDIR may hold spaces))))
INSTALLED = $(BINDIR)/popfetch $(MANDIR)/man1/popfetch.1 $(BASHCOMPDIR)/popfetch $(ZSHCOMPDIR)/_popfetch \
	$(FISHCOMPDIR)/popfetch.fish $(addprefix $(SYSTEMDUSERUNITDIR)/,$(UNITS))

.PHONY: all build docs install uninstall test test-unit test-faults test-short vet fuzz demo measure bench bench-tmpfs bench-daemon bench-daemon-quick gobench soak clean

all: build

## build: compile bin/popfetch, static (CGO_ENABLED=0: no libc mapped, 1.9 MiB less resident
## memory per run; the Go resolver and /etc/passwd serve what popfetch looks up), without
## urfave/cli's Markdown and man-page writers (urfave_cli_no_docs: popfetch writes its own
## manual page; their Markdown parser cost 1.7 ms and 64 page faults at every start)
build:
	CGO_ENABLED=0 $(GO) build -tags urfave_cli_no_docs -ldflags "$(LDFLAGS)" -o bin/popfetch ./cmd/popfetch

## docs: the manual page and the shell completions, made from the command-line definition
docs: build
	bin/popfetch man > docs/popfetch.1
	mkdir -p docs/completion
	bin/popfetch completion bash > docs/completion/popfetch.bash
	bin/popfetch completion zsh > docs/completion/_popfetch
	bin/popfetch completion fish > docs/completion/popfetch.fish

## install: the binary, the manual page, the bash, zsh and fish completions and the systemd user
## units, under PREFIX (/usr/local) or DESTDIR/PREFIX; the units' ExecStart names BINDIR/popfetch
install: build
	$(check-install-dirs)
	@set -e; for d in $(dir $(INSTALLED)); do install -d "$(DESTDIR)$$d"; done
	install -m 755 "$(BIN)" "$(DESTDIR)$(BINDIR)/popfetch"
	install -m 644 docs/popfetch.1 "$(DESTDIR)$(MANDIR)/man1/popfetch.1"
	install -m 644 docs/completion/popfetch.bash "$(DESTDIR)$(BASHCOMPDIR)/popfetch"
	install -m 644 docs/completion/_popfetch "$(DESTDIR)$(ZSHCOMPDIR)/_popfetch"
	install -m 644 docs/completion/popfetch.fish "$(DESTDIR)$(FISHCOMPDIR)/popfetch.fish"
	@set -e; for u in $(UNITS); do \
	  f="$(DESTDIR)$(SYSTEMDUSERUNITDIR)/$$u"; \
	  sed 's|/usr/local/bin/popfetch|$(BINDIR)/popfetch|g' "docs/systemd/$$u" > "$$f.tmp"; \
	  chmod 644 "$$f.tmp"; mv "$$f.tmp" "$$f"; echo "install $$f"; \
	done

## uninstall: remove what make install put (the same PREFIX and DESTDIR), and nothing else
uninstall:
	$(check-install-dirs)
	@set -e; for f in $(INSTALLED); do rm -f "$(DESTDIR)$$f"; echo "rm -f $(DESTDIR)$$f"; done

## test: vet, then every test (the Dovecot end-to-end tests too), with the race detector: the
## unit and end-to-end tests, then the fault-injection suite
test: vet test-unit test-faults

## test-unit: every test but the fault-injection suite
test-unit:
	$(GO) test -race -count=1 -timeout 30m -skip '^TestFault' ./...

## test-faults: the fault-injection suite (docs/reliability.md): nothing lost, nothing twice;
## prints the kill loops' figures (POPFETCH_KILL_ITERATIONS, default 50 each)
test-faults:
	@set -o pipefail; $(GO) test -race -count=1 -timeout 30m -run '^TestFault' -v ./... 2>&1 | \
	  { grep -E '^(ok|FAIL|panic|--- FAIL)|^ +--- FAIL|KILL LOOP|_test\.go:[0-9]+: ' || true; }

## test-short: the tests that need neither Dovecot nor root
test-short:
	$(GO) test -count=1 -short ./...

## vet: go vet, a gofmt check, go.mod tidy, and a build for each system popfetch runs on
PLATFORMS = linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/arm64
vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) mod tidy -diff
	@for p in $(PLATFORMS); do \
	  echo "build $$p"; GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -o /dev/null ./... || exit 1; \
	done

## fuzz: run every fuzz target for FUZZTIME each
FUZZ = $(GO) test -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE)
fuzz:
	$(FUZZ) ./fetch/pop3 -fuzz '^FuzzDotReader$$'
	$(FUZZ) ./fetch/pop3 -fuzz '^FuzzStatusLine$$'
	$(FUZZ) ./fetch/pop3 -fuzz '^FuzzListings$$'
	$(FUZZ) ./fetch/pop3 -fuzz '^FuzzCapa$$'
	$(FUZZ) ./fetch/pop3 -fuzz '^FuzzSASLChallenge$$'
	$(FUZZ) ./fetch/pop3 -fuzz '^FuzzCanonicalUID$$'
	$(FUZZ) ./fetch/pop3 -fuzz '^FuzzGreeting$$'
	$(FUZZ) ./deliver -fuzz '^FuzzEnvelopeSender$$'
	$(FUZZ) ./deliver -fuzz '^FuzzMboxrd$$'
	$(FUZZ) ./deliver -fuzz '^FuzzIMAPTrace$$'
	$(FUZZ) ./fetch -fuzz '^FuzzHeaderFields$$'
	$(FUZZ) ./fetch/termsafe -fuzz '^FuzzString$$'
	$(FUZZ) ./config -fuzz '^FuzzNetrc$$'
	$(FUZZ) ./config -fuzz '^FuzzParse$$'
	$(FUZZ) ./config -fuzz '^FuzzNameRules$$'
	$(FUZZ) ./config/migrate -fuzz '^FuzzFetchmailrc$$'
	$(FUZZ) ./uidstore -fuzz '^FuzzDecodeSummary$$'

## demo: start a private Dovecot, fill a mailbox, fetch it with popfetch into ./demo/Mail
demo: build
	bash .ci/install-deps
	$(GO) run ./cmd/popdemo -popfetch bin/popfetch -dir demo

## measure: time fetching 2000 x 4 KiB messages (median of 3) and peak RSS for one 100 MiB message
measure: build
	bash .ci/install-deps
	$(GO) run ./cmd/popdemo -popfetch bin/popfetch -dir demo/measure -tls none -messages 2000 -size 4KiB -runs 3
	$(GO) run ./cmd/popdemo -popfetch bin/popfetch -dir demo/measure -tls none -messages 1 -size 100MiB -runs 1

## bench: popfetch side by side with mpop and fetchmail (installed when missing); see docs/performance.md.
## Every case through the delay line (it counts round trips), then the cases without added delay
## again straight to Dovecot (-direct: through the line, the line acknowledges Dovecot's data, not
## the tool, which hides a tool's own delayed ACKs)
DIRECTCASES = 4k,mix,huge,nonew
bench: build
	bash .ci/install-deps --bench
	$(GO) run ./cmd/popbench -popfetch bin/popfetch
	$(GO) run ./cmd/popbench -popfetch bin/popfetch -direct -cases $(DIRECTCASES)

## bench-tmpfs: the same with the Maildirs on /dev/shm too: the disk out of the way, what is left is
## each tool's own CPU and memory
bench-tmpfs: build
	bash .ci/install-deps --bench
	$(GO) run ./cmd/popbench -popfetch bin/popfetch -tmpfs
	$(GO) run ./cmd/popbench -popfetch bin/popfetch -tmpfs -direct -cases $(DIRECTCASES)

## soak: the daemon polling 200 accounts 1000 times each; its RSS and goroutines as the polls add up
soak: build
	$(GO) run ./cmd/popsoak -popfetch bin/popfetch -accounts 200 -polls 1000

## bench-daemon: the daemon polling 10,000 accounts every 5 minutes on a private Dovecot (about 16
## minutes: a warm-up interval, then two measured): CPU per poll, RSS per account, polls/s, lateness;
## see docs/daemon.md
bench-daemon: build
	bash .ci/install-deps
	$(GO) run ./cmd/popbench-daemon -popfetch bin/popfetch $(BENCHFLAGS)

## bench-daemon-quick: the same poll rate in about 3 minutes: 2,000 accounts every 60 seconds
bench-daemon-quick: build
	bash .ci/install-deps
	$(GO) run ./cmd/popbench-daemon -popfetch bin/popfetch -quick $(BENCHFLAGS)

## gobench: the Go benchmarks of the hot parsing paths, with allocations
gobench:
	$(GO) test ./fetch/pop3 -run '^$$' -bench . -benchmem

clean:
	rm -rf bin demo
