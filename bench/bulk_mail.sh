#!/usr/bin/env bash
# Bulk import rows/s and mail delivery rate (not a test), on SQLite and PostgreSQL.
#
#   bash bench/bulk_mail.sh                       # both databases, 10 000 rows
#   ROWS=5000 BACKENDS=postgres bash bench/bulk_mail.sh
#
# For each database: creates an organization, imports a CSV of ROWS guests with sendEmail true
# through the CLI (`vestibule invite --csv`, the server not running, so the mails wait in the
# outbox) and times it; then starts a local SMTP sink (bench/smtp_sink.rs) and the server
# pointed at it, and times until every queued mail is marked sent. For reference it also
# measures what the sink takes from 4 plain SMTP clients (Python smtplib, one connection each,
# messages of the same size).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-10000}
BACKENDS=${BACKENDS:-"sqlite postgres"}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
PORT=${PORT:-18081}
SINK_PORT=${SINK_PORT:-12525}
BASE="http://127.0.0.1:$PORT"
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release --bin vestibule --example smtp_sink
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${BIN:-$TARGET/release/vestibule}
SINK=$TARGET/release/examples/smtp_sink
CLK_TCK=$(getconf CLK_TCK)

count_outbox() { # STATUS
    if [ "$BACKEND" = sqlite ]; then
        python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from outbox where status = ?', (sys.argv[2],)).fetchone()[0])" "$WORK/bench.db" "$1"
    else
        psql -qtA "$DB" -c "select count(*) from outbox where status = '$1'"
    fi
}

echo "| database | measurement | rows or mails | seconds | per second | CPU (process) | load1 |"
echo "|---|---|---:|---:|---:|---:|---|"
for BACKEND in $BACKENDS; do
    WORK=$(mktemp -d)
    if [ "$BACKEND" = sqlite ]; then
        DB="sqlite://$WORK/bench.db"
    else
        psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS vestibule_bench_bulk WITH (FORCE)" >/dev/null
        psql -q "$PG_ADMIN" -c "CREATE DATABASE vestibule_bench_bulk" >/dev/null
        DB="${PG_ADMIN%/*}/vestibule_bench_bulk"
    fi
    export VESTIBULE_DATABASE_URL=$DB VESTIBULE_DATA_DIR=$WORK/data VESTIBULE_BIND=127.0.0.1:$PORT \
        VESTIBULE_PUBLIC_URL=$BASE VESTIBULE_THROTTLE=off VESTIBULE_LOG=warn
    unset VESTIBULE_SMTP_URL
    echo "bench pass phrase for vestibule" | "$BIN" org create --name "Bench Org" --slug bench \
        --admin-email admin@bench.test --admin-name "Bench Admin" --admin-password-stdin >/dev/null
    python3 - "$WORK/guests.csv" "$ROWS" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("version:v1.0\n")
    f.write("Email address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,"
            "Send invitation message (true or false) [sendEmail],Customized invitation message [customizedMessageBody],"
            "Display name [displayName]\n")
    for i in range(n):
        f.write(f"guest{i:06}@partner.test,,true,Welcome to the project.,Bulk Guest {i:06}\n")
PY
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$WORK/time" "$BIN" invite --org bench --csv "$WORK/guests.csv" >/dev/null
    end=$(date +%s.%N)
    read -r user sys <"$WORK/time"
    invited=$(count_outbox queued)
    awk -v b="$BACKEND" -v n="$invited" -v s="$start" -v e="$end" -v u="$user" -v y="$sys" -v l="$load -> $(cut -d' ' -f1 /proc/loadavg)" \
        'BEGIN {printf "| %s | bulk CSV import (`vestibule invite --csv`, sendEmail true) | %d | %.1f | %.0f rows/s | %.3f ms/row | %s |\n", b, n, e - s, n / (e - s), (u + y) * 1000 / n, l}'

    "$SINK" "$SINK_PORT" >"$WORK/sink.log" 2>&1 &
    SINK_PID=$!
    sleep 0.3
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    VESTIBULE_SMTP_URL="smtp://127.0.0.1:$SINK_PORT" "$BIN" serve >"$WORK/server.log" 2>&1 &
    SERVER=$!
    trap 'kill $SERVER $SINK_PID 2>/dev/null || true' EXIT
    while [ "$(count_outbox sent)" -lt "$invited" ]; do sleep 0.2; done
    end=$(date +%s.%N)
    ticks=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
    awk -v b="$BACKEND" -v n="$invited" -v s="$start" -v e="$end" -v t="$ticks" -v hz="$CLK_TCK" -v l="$load -> $(cut -d' ' -f1 /proc/loadavg)" \
        'BEGIN {printf "| %s | queued invitation mails delivered to the local sink (server start included) | %d | %.1f | %.0f mails/s | %.3f ms/mail | %s |\n", b, n, e - s, n / (e - s), t * 1000 / hz / n, l}'
    kill -TERM "$SERVER"; wait "$SERVER" || true

    # Reference: the same sink fed by 4 plain clients, one connection each.
    python3 - "$SINK_PORT" "$((ROWS < 4000 ? ROWS : 4000))" "$BACKEND" <<'PY'
import smtplib, sys, threading, time
from email.message import EmailMessage
port, n, backend = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
msg = EmailMessage()
msg["From"], msg["To"], msg["Subject"] = "Bench Admin via Bench Org <noreply@bench.test>", "guest@partner.test", "You are invited"
msg.set_content("Hello,\n\n" + "Bench Admin invited you to join Bench Org.\n" * 20)
msg.add_alternative("<html><body>" + "<p>Bench Admin invited you to join Bench Org.</p>" * 40 + "</body></html>", subtype="html")
def client(k):
    s = smtplib.SMTP("127.0.0.1", port)
    for _ in range(k):
        s.send_message(msg)
    s.quit()
start = time.time()
ts = [threading.Thread(target=client, args=(n // 4,)) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
took = time.time() - start
print(f"| {backend} | reference: the sink fed by 4 plain smtplib clients | {n // 4 * 4} | {took:.1f} | {n // 4 * 4 / took:.0f} mails/s | | |")
PY
    kill "$SINK_PID"; wait "$SINK_PID" 2>/dev/null || true
    trap - EXIT
    rm -rf "$WORK"
    [ "$BACKEND" = postgres ] && psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS vestibule_bench_bulk WITH (FORCE)" >/dev/null
done
