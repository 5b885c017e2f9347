# siolua: a Socket.IO v4 server in C with Lua handlers.
#   make run    install what is missing, build, serve examples/chat
#   make test   the same set-up, then every test (unit + integration, normal and ASan/UBSan builds)

CC      ?= cc
PREFIX  ?= /usr/local
PORT    ?= 3000

LLHTTP_DIR := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

# Warnings: `make`, `make run` show them and go on; every compile keeps what the compiler said in
# OBJECT.warn, and `make test` fails while any object of either build has a warning (also one
# compiled earlier by a plain `make`, which -Werror on `make test` alone would not see). CI=true
# adds -Werror: the first warning stops the build.
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings
ifeq ($(CI),true)
WARN    += -Werror
endif
# $(call cc_keep,COMMAND): runs a compile, prints its diagnostics and keeps them in $@.warn
cc_keep = $(1) 2> $@.warn; st=$$?; cat $@.warn >&2; exit $$st
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) $(EXTRA_CFLAGS)
CPPFLAGS += -Isrc -Ibuild/gen -I/usr/include/lua5.4 -I/usr/include/postgresql -I$(LLHTTP_INC)
LDLIBS  := -lcrypt -luv -lwslay -llua5.4 -llua5.4-cjson -lyajl -lssl -lcrypto -lm -lhiredis -lmsgpackc -lz -lcurl -lsqlite3 -lpq -lpthread

SRC     := $(filter-out src/main.c,$(wildcard src/*.c))
# the prelude files, embedded; the order they run in is lapp.c's
LUA_SRC := $(sort $(wildcard lua/*.lua))

# Build variants: build/ (normal) and build/asan/ (AddressSanitizer + UndefinedBehaviorSanitizer).
OUT      ?= build
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

OBJ        := $(patsubst src/%.c,$(OUT)/obj/%.o,$(SRC))
LLHTTP_OBJ := $(patsubst $(LLHTTP_DIR)/%.c,$(OUT)/obj/llhttp_%.o,$(wildcard $(LLHTTP_DIR)/*.c))
GEN_OBJ    := $(OUT)/obj/gen_prelude.o $(OUT)/obj/gen_client.o $(OUT)/obj/gen_client_z.o $(OUT)/obj/gen_adminui.o
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(UNIT_SRC))

CLIENT_DIST := node_modules/socket.io-client/dist
CLIENT_FILES := $(CLIENT_DIST)/socket.io.js $(CLIENT_DIST)/socket.io.min.js $(CLIENT_DIST)/socket.io.js.map \
                $(CLIENT_DIST)/socket.io.min.js.map $(CLIENT_DIST)/socket.io.msgpack.min.js \
                $(CLIENT_DIST)/socket.io.msgpack.min.js.map

.PHONY: all setup run test unit integration asan clean format fuzz bench valgrind soak warnings layers

all: siolua

# ./siolua is a copy of build/siolua (renamed into place: a running ./siolua is not disturbed)
siolua: $(OUT)/siolua
	@if [ "$(OUT)" = build ]; then cp $(OUT)/siolua siolua.tmp && mv -f siolua.tmp siolua; fi

$(OUT)/siolua: $(OUT)/obj/main.o $(OBJ) $(LLHTTP_OBJ) $(GEN_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# (Makefile is a prerequisite: new flags rebuild every object, and its warnings record)
$(OUT)/obj/%.o: src/%.c $(wildcard src/*.h) Makefile | $(OUT)/obj
	@echo "$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<"
	@$(call cc_keep,$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<)

# llhttp's C sources come from Debian's node-llhttp package, compiled in as they are.
$(OUT)/obj/llhttp_%.o: $(LLHTTP_DIR)/%.c | $(OUT)/obj
	$(CC) -I$(LLHTTP_INC) -O2 -g $(filter -fsanitize% -fno-%,$(CFLAGS)) -w -c -o $@ $<

# The Lua prelude (lua/*.lua) and the socket.io client bundle are embedded as C arrays.
$(OUT)/gen/prelude.c: $(LUA_SRC) scripts/embed.sh | $(OUT)/gen
	sh scripts/embed.sh prelude $(LUA_SRC) > $@
# (Makefile: CLIENT_FILES is listed there; a build directory made before a file joined the list
# would serve the old set)
$(OUT)/gen/client.c: scripts/embed.sh Makefile | $(OUT)/gen
	@[ -f $(CLIENT_DIST)/socket.io.min.js ] || { echo "socket.io-client is not installed: run 'make setup'"; exit 1; }
	sh scripts/embed.sh client $(CLIENT_FILES) > $@
# ... and its br / gzip / deflate forms, compressed once here by a host tool (scripts/precompress.c)
$(OUT)/gen/client_z.c: scripts/embed.sh scripts/precompress.c $(OUT)/gen/client.c | $(OUT)/gen
	mkdir -p $(OUT)/gen/z
	@echo "$(CC) -O2 -std=c11 $(WARN) -o $(OUT)/gen/precompress scripts/precompress.c -lz -lbrotlienc"
	@$(call cc_keep,$(CC) -O2 -std=c11 $(WARN) -o $(OUT)/gen/precompress scripts/precompress.c -lz -lbrotlienc)
	for f in $(CLIENT_FILES); do $(OUT)/gen/precompress $$f $(OUT)/gen/z || exit 1; done
	sh scripts/embed.sh client_z $(foreach f,$(CLIENT_FILES),$(addprefix $(OUT)/gen/z/$(notdir $(f)),.br .gz .zz)) > $@
# The Admin UI's page (npm's @socket.io/admin-ui, the official UI: see README, Operating siolua),
# without its source maps; an empty list when the package is not installed (the path answers 404).
ADMINUI_DIST := node_modules/@socket.io/admin-ui/ui/dist
ADMINUI_FILES := $(sort $(filter-out %.map,$(shell find $(ADMINUI_DIST) -type f 2>/dev/null)))
$(OUT)/gen/adminui.c: scripts/embed.sh Makefile $(ADMINUI_FILES) | $(OUT)/gen
	EMBED_ROOT=$(ADMINUI_DIST) sh scripts/embed.sh adminui $(ADMINUI_FILES) > $@
$(OUT)/obj/gen_%.o: $(OUT)/gen/%.c Makefile | $(OUT)/obj
	@echo "$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes -c -o $@ $<"
	@$(call cc_keep,$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes -c -o $@ $<)

$(OUT)/obj $(OUT)/gen $(OUT)/tests:
	mkdir -p $@

# Unit tests: one executable per tests/unit/test_*.c, linked with every module but main.c and with
# the loopback harness (tests/unit/loopback.h) that the network tests share.
UNIT_LIB := $(OUT)/tests/loopback.o
$(OUT)/tests/loopback.o: tests/unit/loopback.c tests/unit/loopback.h $(wildcard src/*.h) Makefile | $(OUT)/tests
	@echo "$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) -c -o $@ $<"
	@$(call cc_keep,$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) -c -o $@ $<)
$(OUT)/tests/%: tests/unit/%.c tests/unit/test.h tests/unit/loopback.h $(UNIT_LIB) $(OBJ) $(LLHTTP_OBJ) $(GEN_OBJ) | $(OUT)/tests
	@echo "$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) -Wno-missing-prototypes -o $@ $< ..."
	@$(call cc_keep,$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) -Wno-missing-prototypes -o $@ $< $(UNIT_LIB) $(OBJ) $(LLHTTP_OBJ) $(GEN_OBJ) $(LDLIBS))

# Fails, listing them, while an object or unit test of build/ or build/asan/ has a warning on record.
WARN_FILES = $(foreach o,build build/asan,$(patsubst src/%.c,$(o)/obj/%.o.warn,$(SRC) src/main.c) \
               $(o)/obj/gen_prelude.o.warn $(o)/obj/gen_client.o.warn $(o)/obj/gen_client_z.o.warn $(o)/obj/gen_adminui.o.warn \
               $(o)/gen/client_z.c.warn $(o)/tests/loopback.o.warn \
               $(patsubst tests/unit/%.c,$(o)/tests/%.warn,$(UNIT_SRC)))
warnings:
	@found=0; for f in $(WARN_FILES); do \
	  if [ -s "$$f" ]; then found=1; echo "warning on record in $$f:"; sed 's/^/  /' "$$f"; fi; \
	done; \
	if [ $$found = 1 ]; then echo "make test fails on any compiler warning: fix them (or 'make clean')"; exit 1; fi

setup:
	@sh scripts/setup.sh

unit: $(UNIT_BIN)
	@sh scripts/run-unit.sh $(UNIT_BIN)

# The layering check: no #include and no call from a lower layer's module to a higher one's.
layers: siolua
	@sh scripts/layers.sh $(OUT)/obj

asan:
	$(MAKE) OUT=build/asan EXTRA_CFLAGS="$(SANFLAGS)" LDFLAGS="$(SANFLAGS)" build/asan/siolua unit

integration: siolua
	@sh tests/integration/run.sh

run: setup
	$(MAKE) siolua
	./siolua examples/chat/app.lua --port $(PORT)

test: setup
	$(MAKE) -j2 siolua unit layers
	$(MAKE) -j2 asan
	$(MAKE) warnings
	SIOLUA_BIN=./build/asan/siolua sh tests/integration/run.sh
	SIOLUA_BIN=./build/asan/siolua sh tests/hostile/run.sh
	$(MAKE) -j2 fuzz FUZZ_TIME=10

# On demand: a soak run (minutes of clients connecting, chatting and leaving; RSS and fds flat).
soak: setup
	$(MAKE) siolua
	sh bench/soak.sh $(SOAK_SECS)

# On demand: the integration suite against the normal build under valgrind's memcheck.
valgrind: setup
	$(MAKE) siolua
	SIOLUA_BIN=./scripts/valgrind-siolua.sh sh tests/integration/run.sh

# Benchmarks (not part of make test): siolua side by side with the Node reference.
bench: setup
	$(MAKE) siolua
	sh bench/run.sh

format:
	clang-format -i src/*.c src/*.h tests/unit/*.c tests/unit/*.h

clean:
	rm -rf build siolua

# ---------------------------------------------------------------- fuzzing (tests/fuzz/README.md)
# `make fuzz` runs each libFuzzer harness for FUZZ_TIME seconds (60), `make fuzz-ci` for 20. clang
# (Debian's clang, installed by scripts/setup.sh) builds them with ASan and UBSan.
FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -Isrc -I/usr/include/lua5.4 -I/usr/include/postgresql -I$(LLHTTP_INC) -g -O1 \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_NAMES := eio_payload sio_packet sio_msgpack lvalue http ws msgpack tls pmd rstore
LLHTTP_C   := $(wildcard $(LLHTTP_DIR)/*.c)
# (log.c writes JSON lines with yajl's generator: -lyajl, and repairs UTF-8 with utf8.c)
NET_C      := src/net.c src/tls.c src/tq.c src/buf.c src/log.c src/utf8.c

build/fuzz/fuzz_eio_payload: tests/fuzz/fuzz_eio_payload.c src/eio_packet.c src/utf8.c src/buf.c | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lcrypto
build/fuzz/fuzz_sio_packet: tests/fuzz/fuzz_sio_packet.c src/sio_packet.c src/buf.c | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lmsgpackc -lm
build/fuzz/fuzz_sio_msgpack: tests/fuzz/fuzz_sio_msgpack.c src/sio_packet.c src/lvalue.c src/lvalue_msgpack.c src/lvalue_json.c src/jsnum.c src/utf8.c src/buf.c | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -llua5.4 -lyajl -lmsgpackc -lm
build/fuzz/fuzz_lvalue: tests/fuzz/fuzz_lvalue.c src/lvalue.c src/lvalue_json.c src/jsnum.c src/utf8.c src/buf.c | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -llua5.4 -lyajl -lm
build/fuzz/fuzz_http: tests/fuzz/fuzz_http.c src/http.c $(NET_C) $(LLHTTP_C) | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -luv -lssl -lcrypto -lyajl
build/fuzz/fuzz_ws: tests/fuzz/fuzz_ws.c src/ws.c src/pmd.c src/zip.c src/jsnum.c src/http.c $(NET_C) $(LLHTTP_C) | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -luv -lwslay -lssl -lcrypto -lz -lm -lyajl
build/fuzz/fuzz_pmd: tests/fuzz/fuzz_pmd.c src/pmd.c src/zip.c src/jsnum.c src/buf.c | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lz -lm
build/fuzz/fuzz_msgpack: tests/fuzz/fuzz_msgpack.c src/lvalue_msgpack.c src/sio_packet.c src/lvalue.c src/lvalue_json.c src/jsnum.c src/utf8.c src/buf.c | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -llua5.4 -lyajl -lmsgpackc -lm
build/fuzz/fuzz_tls: tests/fuzz/fuzz_tls.c src/tls.c src/buf.c | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lssl -lcrypto
build/fuzz/fuzz_rstore: tests/fuzz/fuzz_rstore.c src/rstore.c src/buf.c | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lz
build/fuzz:
	mkdir -p $@

.PHONY: fuzz fuzz-ci
fuzz: $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_NAMES))
	@sh tests/fuzz/run.sh $(FUZZ_TIME) $(FUZZ_NAMES)
fuzz-ci:
	$(MAKE) fuzz FUZZ_TIME=20
