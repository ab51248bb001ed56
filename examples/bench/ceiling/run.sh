#!/usr/bin/env bash
# The ceiling on PostgreSQL: what the server itself allows for the store's append statement,
# measured with pgbench (a C client, so none of the framework's client-side work counts), next
# to the bench's raw single-insert baseline, in the same run. See BENCHMARKS.md.
#
#   examples/bench/ceiling/run.sh        # EVENTSOURCERY_POSTGRES_URL, default as the bench
#
# Each case is a statement and a number of clients (statements in flight). With 8 writers the
# store's group commit keeps at most 2 statements in flight, so groups hold about 4 commits:
# store_4 with 2 clients is where 8 command tasks run; store_8 with 1 client is the same
# writers with one slot; store_1 with 8 clients is one statement per append.
set -euo pipefail

url=${EVENTSOURCERY_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
seconds=${CEILING_SECONDS:-10}
here=$(cd "$(dirname "$0")" && pwd)
migrations=$here/../../../eventsourcery/migrations/postgres
db=es_ceiling_$$
target=${url%/*}/$db

psql "$url" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db"
trap 'psql "$url" -qAtX -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT
for migration in "$migrations"/0*.sql; do
    psql "$target" -qX -v ON_ERROR_STOP=1 -f "$migration" >/dev/null
done
psql "$target" -qX -v ON_ERROR_STOP=1 -c "CREATE TABLE raw_events (
    position BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL UNIQUE, stream_id TEXT NOT NULL,
    stream_version BIGINT NOT NULL, event_name TEXT NOT NULL, schema_version BIGINT NOT NULL,
    payload JSONB NOT NULL, metadata JSONB NOT NULL, recorded_at_ns BIGINT NOT NULL,
    UNIQUE (stream_id, stream_version))"

# Rows per second of script $1 with $2 clients, $3 rows per statement.
rows() {
    local tps
    tps=$(pgbench -n -M prepared -c "$2" -j 2 -T "$seconds" -f "$here/$1" "$target" 2>/dev/null |
        awk '/^tps/ { print $3 }')
    awk -v tps="$tps" -v rows="$3" 'BEGIN { printf "%.0f", tps * rows }'
}

first=$(rows raw.sql 8 1)
results=()
IFS=, read -r -a cases <<<"${CEILING_CASES:-store_1.sql 8 1,store_4.sql 2 4,store_8.sql 1 8,lean_4.sql 2 4}"
for case in "${cases[@]}"; do
    read -r script clients per <<<"$case"
    results+=("${script%.sql}_${clients}_clients $(rows "$script" "$clients" "$per")")
done
last=$(rows raw.sql 8 1)
raw=$(( (first + last) / 2 ))

echo "ceiling_raw_insert_8_clients=$raw"
for result in "${results[@]}"; do
    read -r name value <<<"$result"
    echo "ceiling_$name=$value"
    awk -v name="$name" -v value="$value" -v raw="$raw" \
        'BEGIN { printf "ceiling_%s_ratio_to_raw=%.2f\n", name, value / raw }'
done
