#!/usr/bin/env bash
# Load benchmark (not a test): requests per second and p99 latency of the main pages, on SQLite
# and PostgreSQL, measured with wrk on loopback like ../shared/research/perf-anchors.md
# (2 threads, 32 connections, a warm-up before each scenario).
#
#   bash bench/run.sh                      # both databases, 100 000 seeded users, 10 s runs
#   BACKENDS=sqlite DURATION=12 RUNS=3 bash bench/run.sh
#   OIDC_ONLY=1 USERS=1000 bash bench/run.sh   # the OpenID Connect scenarios only
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
cargo build --release --bin vestibule --example seed --example oidc_bench --example rsa_sign
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$TARGET/release/vestibule
SEED=$TARGET/release/examples/seed
OIDC_BENCH=$TARGET/release/examples/oidc_bench

# scenario NAME URL [wrk options...] [-- script args...]: a warm-up, then RUNS counted runs;
# prints the median req/s and p99.
scenario() {
    local name=$1 url=$2; shift 2
    local opts=() script_args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
    [ $# -gt 0 ] && { shift; script_args=(-- "$@"); }
    wrk -t2 -c"$CONNS" -d2s "${opts[@]}" "$url" "${script_args[@]}" >/dev/null
    local rates=() p99s=() errors=0
    for _ in $(seq 1 "$RUNS"); do
        local out
        out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency "${opts[@]}" "$url" "${script_args[@]}")
        rates+=("$(echo "$out" | awk '/Requests\/sec/ {print $2}')")
        p99s+=("$(echo "$out" | awk '$1 == "99%" {print $2}')")
        errors=$((errors + $(echo "$out" | awk '/Non-2xx or 3xx/ {n=$5} END {print n+0}')))
    done
    local rate p99
    rate=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    p99=$(printf '%s\n' "${p99s[@]}" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '| %-8s | %-42s | %10s | %9s | %6s |\n' "$BACKEND" "$name" "$rate" "$p99" "$errors"
}

count_invitations() {
    if [ "$BACKEND" = sqlite ]; then
        python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from invitations').fetchone()[0])" "$WORK/bench.db"
    else
        psql -qtA "$DB" -c 'select count(*) from invitations'
    fi
}

echo "| database | scenario | req/s | p99 | non-2xx/3xx |"
echo "|---|---|---:|---:|---:|"
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
    "$SEED" bench "$USERS" >/dev/null
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

    scenario "sign-in page" "$BASE/signin"
    scenario "redemption landing page" "$LINK"
    scenario "admin users list, first page of $USERS" "$BASE/o/bench/admin/users" -H "Cookie: $COOKIE"
    scenario "admin users list, email search" "$BASE/o/bench/admin/users?q=user054321%40" -H "Cookie: $COOKIE"
    before=$(count_invitations)
    scenario "invitation creation (POST, mail queued)" "$BASE/o/bench/admin/invite" \
        -s bench/create.lua -- /o/bench/admin/invite "$COOKIE" "$CSRF"
    after=$(count_invitations)
    echo "|          | invitations created during that scenario: $((after - before)) |  |  |  |"

    # The Graph-compatible API: an allow-listed landing URL, a key from the CLI.
    curl -s -o /dev/null -c "$JAR" -b "$JAR" -d "csrf_token=$CSRF" --data-urlencode "name=Bench Org" \
        -d "default_language=en&invite_lifetime_days=14&invite_policy=adminsGuestInvitersAndAllMembers" \
        -d "domain_mode=none&invites_per_hour=50" --data-urlencode "redirect_allowlist=https://app.partner.test" \
        "$BASE/o/bench/admin/settings"
    KEY=$("$BIN" api-key create --org bench --name bench 2>/dev/null | grep -o 'vst_[A-Za-z0-9_-]*' | head -n1)
    before=$(count_invitations)
    scenario "API: POST /api/v1.0/invitations (mail queued)" "$BASE/api/v1.0/invitations" -s bench/api.lua -- "$KEY"
    after=$(count_invitations)
    echo "|          | invitations created during that scenario: $((after - before)) |  |  |  |"
    fi

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
