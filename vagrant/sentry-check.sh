#!/bin/bash
# Runs on the sentry (as root), called by vagrant/e2e.sh after a scan:
# is ADDR blocked, as a TYPE scan, everywhere scanwatch blocks?
#   usage: sentry-check.sh ADDR TYPE
# Prints one line, "status=ok nft=ok hosts.deny=ok" (FAIL instead of ok where ADDR is
# missing), and exits with the number of FAILs. Waits up to 10 s for the block.
set -uo pipefail
ADDR=${1:?usage: sentry-check.sh ADDR TYPE}
TYPE=${2:?usage: sentry-check.sh ADDR TYPE}
CONF=/etc/scanwatch/scanwatch.conf

# `scanwatch status --json` lists ADDR as blocked, with scan type TYPE
status_ok() {
    scanwatch status --json -c "$CONF" 2>/dev/null | python3 -c '
import json, sys
addr, kind = sys.argv[1], sys.argv[2]
rows = [b for b in json.load(sys.stdin)["blocked"] if b["addr"] == addr]
sys.exit(0 if rows and rows[0]["scan_type"] == kind else 1)' "$ADDR" "$TYPE"
}

# ADDR is an element of the nftables set (listed as "ADDR timeout ... expires ...").
# Not `nft ... | grep -q`: grep -q may exit before nft has written everything, and
# with pipefail nft's SIGPIPE would fail the check.
nft_ok() {
    local set
    set=$(nft list set inet scanwatch blocked4 2>/dev/null) || return 1
    grep -Eq "(^|[^0-9.])${ADDR//./\\.}([^0-9.]|$)" <<<"$set"
}

hosts_deny_ok() {
    grep -qxF "ALL: $ADDR" /etc/hosts.deny 2>/dev/null
}

for _ in $(seq 1 50); do
    status_ok && nft_ok && hosts_deny_ok && break
    sleep 0.2
done

fails=0
line=""
for check in status nft hosts.deny; do
    if "${check//./_}_ok"; then
        line+="$check=ok "
    else
        line+="$check=FAIL "
        fails=$((fails + 1))
    fi
done
echo "${line% }"
exit "$fails"
