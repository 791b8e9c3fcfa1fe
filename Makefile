# stream: Kafka-style streams for PostgreSQL (PGXS build)
EXTENSION = stream
EXTVERSION = $(shell grep default_version $(EXTENSION).control | sed -E "s/.*'(.*)'.*/\1/")

MODULE_big = stream
OBJS = src/stream.o src/lso.o src/partitioner.o src/topic.o src/storage.o \
       src/publish.o src/read.o src/roller.o \
       src/consumer.o src/offsets.o src/retention.o src/trigger.o \
       src/privileges.o \
       src/kafka_wire.o src/kafka_listener.o src/kafka_records.o src/kafka_data.o src/kafka_group.o

# sql/stream.sql is the install script of the current version; the install scripts of
# older versions (the start of the upgrade chain) and every upgrade script are committed.
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql))

REGRESS = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --outputdir=test --load-extension=$(EXTENSION)

PG_CPPFLAGS = -Wall -Werror -Wno-declaration-after-statement
# zlib decodes gzip-compressed Kafka record batches
SHLIB_LINK += -lz
PG_CONFIG ?= pg_config

EXTRA_CLEAN = sql/$(EXTENSION)--$(EXTVERSION).sql test/results test/regression.diffs test/regression.out

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION).sql $(EXTENSION).control
	cp $< $@

# PGXS does not track header dependencies: rebuild everything when a header changes.
$(OBJS): $(wildcard src/*.h)

# Long and special targets (see README, Contributing); not part of installcheck.
# sanitize: the suites against a stream.so built with ASan and UBSan.
sanitize:
	bash scripts/sanitize.sh
# crash-cycles: kill publishers, consumers and the server CYCLES times (default 20).
crash-cycles:
	bash test/long/crash_cycles.sh $(CYCLES)
.PHONY: sanitize crash-cycles
