#!/usr/bin/env bash
# The ceiling on PostgreSQL: what the server itself allows for the store's append statement,
# measured with pgbench (a C client, so none of the framework's client-side work counts), next
# to the bench's raw single-insert baseline, in the same run. See BENCHMARKS.md.
#
#   examples/bench/ceiling/run.sh        # EVENTSOURCERY_POSTGRES_URL, default as the bench
#
# Each case is a statement template (store or lean), a group size (commits per statement) and
# a number of clients (statements in flight); CEILING_CASES="store 4 2,lean 4 2" picks others.
# With 8 writers the store's group commit keeps at most 2 statements in flight, so groups hold
# about 4 commits: store 4 2 is where 8 command tasks run; store 8 1 is the same writers with
# one slot; store 1 8 is one statement per append.
set -euo pipefail
shopt -s inherit_errexit

url=${EVENTSOURCERY_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
seconds=${CEILING_SECONDS:-10}
here=$(cd "$(dirname "$0")" && pwd)
migrations=$here/../../../eventsourcery/migrations/postgres
db=es_ceiling_$$
# The same server and options, another database.
base=${url%%\?*}
query=${url#"$base"}
target=${base%/*}/$db$query

scripts=$(mktemp -d)
trap 'rm -rf "$scripts"; psql "$url" -qAtX -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT
psql "$url" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db"

for migration in "$migrations"/0*.sql; do
    psql "$target" -qX -v ON_ERROR_STOP=1 -f "$migration" >/dev/null
done
psql "$target" -qX -v ON_ERROR_STOP=1 -c "CREATE TABLE raw_events (
    position BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL UNIQUE, stream_id TEXT NOT NULL,
    stream_version BIGINT NOT NULL, event_name TEXT NOT NULL, schema_version BIGINT NOT NULL,
    payload JSONB NOT NULL, metadata JSONB NOT NULL, recorded_at_ns BIGINT NOT NULL,
    UNIQUE (stream_id, stream_version))"

# Writes template $1.sql.in out for groups of $2 commits as $scripts/$1_$2.sql: @G@ is the
# group size, @SETS@ draws a random stream number per commit, @STREAMS@ lists their stream ids
# and @REPEAT(x)@ lists x once per commit.
script() {
    local sets="" streams="" i
    for ((i = 0; i < $2; i++)); do
        sets+="\\set n$i random(1, 1000000000000)"$'\n'
        streams+="${streams:+, }'c-' || :n$i"
    done
    G=$2 SETS=${sets%$'\n'} STREAMS=$streams perl -pe '
        s/\@SETS\@/$ENV{SETS}/g;
        s/\@STREAMS\@/$ENV{STREAMS}/g;
        s/\@G\@/$ENV{G}/g;
        s/\@REPEAT\((.*?)\)\@/join(", ", ($1) x $ENV{G})/ge;
    ' "$here/$1.sql.in" >"$scripts/$1_$2.sql"
}

# Rows per second of script $1 with $2 clients, $3 rows per statement.
rows() {
    local tps
    tps=$(pgbench -n -M prepared -c "$2" -j 2 -T "$seconds" -f "$1" "$target" 2>>"$scripts/log" |
        awk '/^tps/ && !/including/ { print $3; exit }')
    if [[ -z $tps ]]; then
        echo "pgbench failed on $1:" >&2
        cat "$scripts/log" >&2
        exit 1
    fi
    awk -v tps="$tps" -v rows="$3" 'BEGIN { printf "%.0f", tps * rows }'
}

first=$(rows "$here/raw.sql" 8 1)
results=()
IFS=, read -r -a cases <<<"${CEILING_CASES:-store 1 8,store 4 2,store 8 1,lean 4 2}"
for case in "${cases[@]}"; do
    read -r template group clients <<<"$case"
    script "$template" "$group"
    results+=("${template}_${group}_${clients}_clients $(rows "$scripts/${template}_$group.sql" "$clients" "$group")")
done
last=$(rows "$here/raw.sql" 8 1)
raw=$(( (first + last) / 2 ))

echo "ceiling_raw_insert_8_clients=$raw"
for result in "${results[@]}"; do
    read -r name value <<<"$result"
    echo "ceiling_$name=$value"
    awk -v name="$name" -v value="$value" -v raw="$raw" \
        'BEGIN { printf "ceiling_%s_ratio_to_raw=%.2f\n", name, value / raw }'
done
