# pgrelocate build.  `make` builds the binary; `make test` installs what is
# missing, builds, and runs unit tests (ASan+UBSan), format and cppcheck checks,
# and the end-to-end TAP suite on real PostgreSQL servers (two scripts of it
# again against an ASan/UBSan build).

CC      ?= cc
CLANG   ?= clang-14
PKGS     = libpq jansson libmicrohttpd
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wstrict-prototypes
CPPFLAGS_ALL = -D_GNU_SOURCE -Isrc $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS     = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
VERSION  = $(shell cat VERSION 2>/dev/null || echo 0.0.0)

SRC  = $(wildcard src/*.c)
OBJ  = $(SRC:src/%.c=build/obj/%.o)
UNIT = $(patsubst tests/unit/test_%.c,build/unit/test_%,$(wildcard tests/unit/test_*.c))

# Extra modules a unit test links besides src/<module>.c (keep these short:
# a unit test links only the module it tests and what that module needs).
UNIT_EXTRA_cli      = src/size.c
UNIT_EXTRA_conninfo = src/strbuf.c
UNIT_EXTRA_copyplan = src/strbuf.c
UNIT_EXTRA_tablefilter = src/strbuf.c
UNIT_EXTRA_size     =
UNIT_EXTRA_lsn      =
UNIT_EXTRA_strbuf   =
UNIT_EXTRA_pgoutput = src/lsn.c
UNIT_EXTRA_names    = src/strbuf.c
UNIT_EXTRA_walmsg   = src/lsn.c
UNIT_EXTRA_progress = src/log.c src/size.c src/strbuf.c
UNIT_EXTRA_digest   = src/names.c src/strbuf.c
UNIT_EXTRA_bouncerconf = src/strbuf.c
UNIT_LIBS_conninfo  = $(shell pkg-config --libs libpq 2>/dev/null)
SAN  = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

.PHONY: all deps test unit e2e e2e-asan format format-check cppcheck bench demo fuzz clean

all: pgrelocate

pgrelocate: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(LIBS)

build/obj/%.o: src/%.c | build/obj
	$(CC) $(CPPFLAGS_ALL) -DPGRELOCATE_VERSION='"$(VERSION)"' $(CFLAGS) $(WARN) -MMD -MP -c -o $@ $<

build/obj build/unit build/fuzz build/asan:
	mkdir -p $@

-include $(OBJ:.o=.d)

deps:
	@scripts/install-deps.sh

.SECONDEXPANSION:
build/unit/test_%: tests/unit/test_%.c src/%.c $$(UNIT_EXTRA_$$*) | build/unit
	$(CC) $(CPPFLAGS_ALL) -g -O1 $(WARN) $(SAN) -o $@ $^ -lcmocka $(UNIT_LIBS_$*) -lpthread -lm

unit: $(UNIT)
	@set -e; for t in $(UNIT); do echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; done

format:
	clang-format -i src/*.[ch] tests/unit/*.c tests/fuzz/*.c

format-check:
	clang-format --dry-run --Werror src/*.[ch] tests/unit/*.c tests/fuzz/*.c

cppcheck:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
	  --inline-suppr --suppress=missingIncludeSystem -D_GNU_SOURCE -Isrc src tests/unit tests/fuzz

e2e: pgrelocate
	@scripts/run-e2e.sh

# The same binary built with ASan+UBSan (LeakSanitizer included), for the
# end-to-end tests: any sanitizer report fails the run (E2E_TESTS picks
# scripts, as for e2e).  `make test` runs the follow and cutover scripts so.
E2E_ASAN_TESTS = t/020_start_follow_pgbench.pl t/050_cutover_pgbench.pl
ASAN_OBJ = $(SRC:src/%.c=build/asan/%.o)

build/asan/pgrelocate: $(ASAN_OBJ)
	$(CC) -g -O1 $(SAN) -o $@ $(ASAN_OBJ) $(LIBS)

build/asan/%.o: src/%.c | build/asan
	$(CC) $(CPPFLAGS_ALL) -DPGRELOCATE_VERSION='"$(VERSION)"' -g -O1 $(WARN) $(SAN) -MMD -MP -c -o $@ $<

-include $(ASAN_OBJ:.o=.d)

e2e-asan: build/asan/pgrelocate
	@E2E_BINARY=build/asan/pgrelocate E2E_SANITIZED=1 scripts/run-e2e.sh

test: deps
	$(MAKE) pgrelocate
	$(MAKE) format-check
	$(MAKE) cppcheck
	$(MAKE) unit
	$(MAKE) e2e
	E2E_TESTS="$(E2E_ASAN_TESTS)" $(MAKE) e2e-asan

FUZZ_SECONDS ?= 600
fuzz: | build/fuzz
	mkdir -p build/fuzz/corpus
	$(CLANG) -g -O1 -Isrc -fsanitize=fuzzer,address,undefined -o build/fuzz/fuzz_pgoutput \
	  tests/fuzz/fuzz_pgoutput.c src/pgoutput.c src/walmsg.c src/lsn.c
	build/fuzz/fuzz_pgoutput -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz/corpus tests/fuzz/seeds 2>&1 | tail -n 20

bench: deps pgrelocate
	@bench/run-bench.sh

demo: deps pgrelocate
	@scripts/demo.sh

clean:
	rm -rf build pgrelocate
