#!/usr/bin/env bash
# Load benchmark (not a test): requests per second and p99 latency of the main pages, on SQLite
# and PostgreSQL, measured with wrk on loopback like ../shared/research/perf-anchors.md
# (2 threads, 32 connections, a warm-up before each scenario).
#
#   bash bench/run.sh                      # both databases, 100 000 seeded users, 10 s runs
#   BACKENDS=sqlite DURATION=12 RUNS=3 bash bench/run.sh
#   OIDC_ONLY=1 USERS=1000 bash bench/run.sh   # the OpenID Connect scenarios only
#   SCENARIOS="landing list search" bash bench/run.sh   # some scenarios only (signin landing
#       list search create api oidc)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
RUNS=${RUNS:-1}
CONNS=${CONNS:-32}
USERS=${USERS:-100000}
BACKENDS=${BACKENDS:-"sqlite postgres"}
OIDC_ONLY=${OIDC_ONLY:-0}   # 1: only the OpenID Connect scenarios
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
PORT=${PORT:-18080}
BASE="http://127.0.0.1:$PORT"
PASSWORD="bench pass phrase for vestibule"

command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; }
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release --bin vestibule --example seed --example oidc_bench --example rsa_sign
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${BIN:-$TARGET/release/vestibule}   # BIN=... measures another build (e.g. the one before a change)
SEED=$TARGET/release/examples/seed
OIDC_BENCH=$TARGET/release/examples/oidc_bench

CLK_TCK=$(getconf CLK_TCK)
# CPU time (clock ticks, user + system) of the server, and of the PostgreSQL backends serving
# the benchmark database (its pool keeps the same connections, so the same processes).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
db_ticks() {
    [ "$BACKEND" = postgres ] || { echo 0; return; }
    local total=0 pid
    for pid in $(psql -qtA "$PG_ADMIN" -c "select pid from pg_stat_activity where datname = 'vestibule_bench'"); do
        total=$((total + $(cpu_ticks "$pid")))
    done
    echo "$total"
}

# want KEY: whether the scenario KEY is selected (SCENARIOS="landing search ...", empty = all).
want() { [ -z "${SCENARIOS:-}" ] || [[ " $SCENARIOS " == *" $1 "* ]]; }

# scenario NAME URL [wrk options...] [-- script args...]: a warm-up, then RUNS counted runs;
# prints the median req/s, p99, the server's CPU time per request (and PostgreSQL's), and the
# load average before -> after.
scenario() {
    local name=$1 url=$2; shift 2
    local opts=() script_args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
    [ $# -gt 0 ] && { shift; script_args=(-- "$@"); }
    wrk -t2 -c"$CONNS" -d2s "${opts[@]}" "$url" "${script_args[@]}" >/dev/null
    local rates=() p99s=() cpus=() dbcpus=() errors=0 load_before
    load_before=$(cut -d' ' -f1 /proc/loadavg)
    for _ in $(seq 1 "$RUNS"); do
        local out s0 s1 d0 d1 n
        s0=$(cpu_ticks "$SERVER"); d0=$(db_ticks)
        out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency "${opts[@]}" "$url" "${script_args[@]}")
        sleep 0.3 # let the requests still in flight finish, so their CPU counts in this run
        s1=$(cpu_ticks "$SERVER"); d1=$(db_ticks)
        n=$(echo "$out" | awk '/requests in/ {print $1}')
        rates+=("$(echo "$out" | awk '/Requests\/sec/ {print $2}')")
        p99s+=("$(echo "$out" | awk '$1 == "99%" {print $2}')")
        cpus+=("$(awk -v t=$((s1 - s0)) -v n="$n" -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", t * 1000 / hz / n}')")
        dbcpus+=("$(awk -v t=$((d1 - d0)) -v n="$n" -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", t * 1000 / hz / n}')")
        errors=$((errors + $(echo "$out" | awk '/Non-2xx or 3xx/ {n=$5} END {print n+0}')))
    done
    local rate p99 cpu dbcpu
    median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    rate=$(median "${rates[@]}")
    p99=$(printf '%s\n' "${p99s[@]}" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    cpu=$(median "${cpus[@]}")
    dbcpu=$(median "${dbcpus[@]}")
    [ "$BACKEND" = postgres ] || dbcpu="-"
    printf '| %-8s | %-46s | %10s | %9s | %8s | %8s | %6s | %s |\n' "$BACKEND" "$name" "$rate" "$p99" "$cpu" "$dbcpu" \
        "$errors" "$load_before -> $(cut -d' ' -f1 /proc/loadavg)"
}

count_invitations() {
    if [ "$BACKEND" = sqlite ]; then
        python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from invitations').fetchone()[0])" "$WORK/bench.db"
    else
        psql -qtA "$DB" -c 'select count(*) from invitations'
    fi
}

echo "| database | scenario | req/s | p99 | server CPU ms/req | PostgreSQL CPU ms/req | non-2xx/3xx | load1 |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
for BACKEND in $BACKENDS; do
    WORK=$(mktemp -d)
    if [ "$BACKEND" = sqlite ]; then
        DB="sqlite://$WORK/bench.db"
    else
        psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS vestibule_bench WITH (FORCE)" >/dev/null
        psql -q "$PG_ADMIN" -c "CREATE DATABASE vestibule_bench" >/dev/null
        DB="${PG_ADMIN%/*}/vestibule_bench"
    fi
    export VESTIBULE_DATABASE_URL=$DB VESTIBULE_DATA_DIR=$WORK/data VESTIBULE_BIND=127.0.0.1:$PORT \
        VESTIBULE_PUBLIC_URL=$BASE VESTIBULE_THROTTLE=off VESTIBULE_LOG=warn
    echo "$PASSWORD" | "$BIN" org create --name "Bench Org" --slug bench --admin-email admin@bench.test \
        --admin-name "Bench Admin" --admin-password-stdin >/dev/null
    "$SEED" bench "$USERS" "$WORK/tokens.txt" >/dev/null
    if curl -fs "$BASE/healthz" >/dev/null 2>&1; then
        echo "port $PORT is already in use; stop the other server or set PORT" >&2
        exit 1
    fi
    "$BIN" serve >"$WORK/server.log" 2>&1 &
    SERVER=$!
    trap 'kill $SERVER 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do curl -fs "$BASE/healthz" >/dev/null && break; sleep 0.1; done

    JAR=$WORK/jar
    token() { grep -o 'name="csrf_token" value="[^"]*"' | head -n1 | sed 's/.*value="//; s/"$//'; }
    CSRF=$(curl -s -c "$JAR" -b "$JAR" "$BASE/signin" | token)
    curl -s -c "$JAR" -b "$JAR" -o /dev/null --data-urlencode "email=admin@bench.test" \
        --data-urlencode "password=$PASSWORD" -d "csrf_token=$CSRF&next=/" "$BASE/signin"
    # The CSRF token is bound to the session, which signing in renews: take the signed-in one.
    CSRF=$(curl -s -c "$JAR" -b "$JAR" "$BASE/o/bench/admin/invite" | token)
    COOKIE=$(awk '!/^#/ || /^#HttpOnly_/ {sub(/^#HttpOnly_/, ""); if (NF >= 7) printf "%s=%s; ", $6, $7}' "$JAR")
    LINK=$(curl -s -c "$JAR" -b "$JAR" -d "csrf_token=$CSRF&email=landing%40partner.test&user_type=Guest" \
        "$BASE/o/bench/admin/invite" | grep -o "$BASE/redeem/[A-Za-z0-9_-]*" | head -n1 || true)
    [ -n "$LINK" ] || { echo "could not create the landing invitation" >&2; exit 1; }
    if [ "$OIDC_ONLY" != 1 ]; then
    # Check that each page is the real one before measuring it.
    curl -s -H "Cookie: $COOKIE" "$BASE/o/bench/admin/users" | grep -q 'Next page' || { echo "admin list check failed"; exit 1; }
    curl -s -H "Cookie: $COOKIE" "$BASE/o/bench/admin/users?q=user054321%40" | grep -q 'user054321@bench.test' || { echo "search check failed"; exit 1; }
    curl -s "$LINK" | grep -q 'invited you to join' || { echo "redeem check failed"; exit 1; }

    # (The page is read whole first: grep -q closing the pipe early would fail curl under pipefail.)
    page=$(curl -s -H "Cookie: $COOKIE" "$BASE/o/bench/admin/users?q=user0543")
    grep -q 'user054399@bench.test' <<<"$page" || { echo "prefix search check failed"; exit 1; }
    page=$(curl -s "$BASE/redeem/$(head -n1 "$WORK/tokens.txt")")
    grep -q 'invited you to join' <<<"$page" || { echo "random landing check failed"; exit 1; }

    want signin && scenario "sign-in page" "$BASE/signin"
    want landing && scenario "redemption landing page (one link)" "$LINK"
    want landing && scenario "redemption landing, random tokens" "$BASE" -s bench/landing.lua -- "$WORK/tokens.txt"
    want list && scenario "admin users list, first page of $USERS" "$BASE/o/bench/admin/users" -H "Cookie: $COOKIE"
    want search && scenario "admin users search, address user054321@" "$BASE/o/bench/admin/users?q=user054321%40" -H "Cookie: $COOKIE"
    want search && scenario "admin users search, prefix user0543 (no @)" "$BASE/o/bench/admin/users?q=user0543" -H "Cookie: $COOKIE"
    want search && scenario "admin users search, name prefix" "$BASE/o/bench/admin/users?q=Bench+User+0543" -H "Cookie: $COOKIE"
    if want create; then
    before=$(count_invitations)
    scenario "invitation creation (POST, mail queued)" "$BASE/o/bench/admin/invite" \
        -s bench/create.lua -- /o/bench/admin/invite "$COOKIE" "$CSRF"
    after=$(count_invitations)
    echo "|          | invitations created during that scenario: $((after - before)) |  |  |  |  |  |  |"
    fi

    # The Graph-compatible API: an allow-listed landing URL, a key from the CLI.
    curl -s -o /dev/null -c "$JAR" -b "$JAR" -d "csrf_token=$CSRF" --data-urlencode "name=Bench Org" \
        -d "default_language=en&invite_lifetime_days=14&invite_policy=adminsGuestInvitersAndAllMembers" \
        -d "domain_mode=none&invites_per_hour=50" --data-urlencode "redirect_allowlist=https://app.partner.test" \
        "$BASE/o/bench/admin/settings"
    KEY=$("$BIN" api-key create --org bench --name bench 2>/dev/null | grep -o 'vst_[A-Za-z0-9_-]*' | head -n1)
    if want api; then
    before=$(count_invitations)
    scenario "API: POST /api/v1.0/invitations (mail queued)" "$BASE/api/v1.0/invitations" -s bench/api.lua -- "$KEY"
    after=$(count_invitations)
    echo "|          | invitations created during that scenario: $((after - before)) |  |  |  |  |  |  |"
    fi
    fi
    [ "$OIDC_ONLY" = 1 ] || want oidc || { kill -TERM "$SERVER"; wait "$SERVER" || true; rm -rf "$WORK"; continue; }

    # OpenID Connect: an app with a client, given to the admin. Discovery and JWKS (from memory),
    # userinfo with wrk; the authorization request and the code exchange with bench/oidc.rs.
    OUT=$("$BIN" app create --org bench --name "Bench App" --url https://app.bench.test \
        --redirect-uri https://app.bench.test/cb 2>/dev/null)
    CLIENT_ID=$(echo "$OUT" | awk '/^client_id:/ {print $2}')
    CLIENT_SECRET=$(echo "$OUT" | awk '/^client_secret:/ {print $2}')
    APP_ID=$(curl -s -H "Cookie: $COOKIE" "$BASE/o/bench/admin/apps" | grep -o '/o/bench/admin/apps/[0-9a-f-]\{36\}' \
        | head -n1 | sed 's#.*/##')
    curl -s -o /dev/null -c "$JAR" -b "$JAR" -d "csrf_token=$CSRF&email=admin%40bench.test" \
        "$BASE/o/bench/admin/apps/$APP_ID/assign"
    VERIFIER=vestibule-benchmark-pkce-verifier-0123456789abcdef
    CHALLENGE=$(python3 -c "import base64,hashlib,sys; print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).decode().rstrip('='))" "$VERIFIER")
    AUTHZ="$BASE/o/bench/oidc/authorize?response_type=code&client_id=$CLIENT_ID&scope=openid%20email&state=s&code_challenge=$CHALLENGE&code_challenge_method=S256&redirect_uri=https%3A%2F%2Fapp.bench.test%2Fcb"
    CODE=$(curl -s -o /dev/null -w '%{redirect_url}' -H "Cookie: $COOKIE" "$AUTHZ" | grep -o 'code=[^&]*' | cut -d= -f2)
    ACCESS=$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=authorization_code -d "code=$CODE" \
        -d redirect_uri=https://app.bench.test/cb -d "code_verifier=$VERIFIER" "$BASE/o/bench/oidc/token" \
        | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")
    [ -n "$ACCESS" ] || { echo "OIDC check failed" >&2; exit 1; }
    scenario "OIDC discovery document" "$BASE/o/bench/.well-known/openid-configuration"
    scenario "OIDC JWKS" "$BASE/o/bench/oidc/jwks"
    scenario "OIDC userinfo (Bearer)" "$BASE/o/bench/oidc/userinfo" -H "Authorization: Bearer $ACCESS"
    SERVER_PID=$SERVER "$OIDC_BENCH" "$BASE" "$COOKIE" "$CLIENT_ID" "$CLIENT_SECRET" https://app.bench.test/cb \
        "${OIDC_CODES:-10000}" "$CONNS" | sed "s/^| /| $BACKEND | /"

    kill -TERM "$SERVER"
    wait "$SERVER" || true
    rm -rf "$WORK"
done
