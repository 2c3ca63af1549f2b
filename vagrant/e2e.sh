#!/bin/bash
# End-to-end check of the Vagrant VMs, run from the host after `vagrant up`:
# for each nmap scan type the attacker scans the sentry; the sentry must then list the
# attacker as blocked with that scan type (`scanwatch status --json`), in the nftables
# set (table inet scanwatch, set blocked4) and in /etc/hosts.deny, and the attacker
# must no longer reach the sentry's SSH port. The attacker is unblocked
# (`scanwatch unblock`) before each scan and at the end.
#
#   vagrant/e2e.sh            # every scan type: -sS -sT -sF -sN -sX -sU
#   vagrant/e2e.sh -sX -sU    # only these
#
# Prints a pass/fail table; the exit status is the number of failed checks (0: all
# passed). Reads SCANWATCH_NET like the Vagrantfile (sentry .10, attacker .20).
#
# E2E_SENTRY / E2E_ATTACKER replace `vagrant ssh NAME -c`: a command prefix that runs
# a shell command string on that machine (tests/system/test_install.py points them at
# network namespaces to run this script without VMs). E2E_PORT is the sentry's port
# the attacker connects to (default 22, sshd).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 100

NET=${SCANWATCH_NET:-192.168.56}
SENTRY_IP=${E2E_SENTRY_IP:-$NET.10}
ATTACKER_IP=${E2E_ATTACKER_IP:-$NET.20}
PORT=${E2E_PORT:-22}
SCAN_PORTS=1-30           # holds tripwires of both lists (TCP 1, 11, 15, 79; UDP 1, 7, 9, 69)

declare -A TYPE=([-sS]=SYN/Normal [-sT]=SYN/Normal [-sF]=FIN [-sN]=NULL [-sX]=XMAS [-sU]=UDP)
if [ $# -gt 0 ]; then
    SCANS=("$@")
else
    SCANS=(-sS -sT -sF -sN -sX -sU)
fi
for s in "${SCANS[@]}"; do
    [ -n "${TYPE[$s]:-}" ] || { echo "e2e: unknown scan type $s (one of: ${!TYPE[*]})" >&2; exit 100; }
done

# on MACHINE COMMAND-STRING [< stdin]: run a shell command on the sentry or attacker
on() {
    local machine=$1 cmd=$2 prefix=()
    case $machine in
        sentry) [ -n "${E2E_SENTRY:-}" ] && read -ra prefix <<<"$E2E_SENTRY" ;;
        attacker) [ -n "${E2E_ATTACKER:-}" ] && read -ra prefix <<<"$E2E_ATTACKER" ;;
    esac
    if [ ${#prefix[@]} -gt 0 ]; then
        "${prefix[@]}" bash -c "$cmd"
    else
        vagrant ssh "$machine" --no-tty -c "$cmd" -- -q -o LogLevel=ERROR
    fi
}

# the attacker opens a TCP connection to the sentry's PORT within 2 s
reaches() {
    on attacker "timeout 2 bash -c 'exec 3<>/dev/tcp/$SENTRY_IP/$PORT'" </dev/null >/dev/null 2>&1
}

unblock() {
    on sentry "sudo -n scanwatch unblock $ATTACKER_IP" </dev/null >/dev/null 2>&1
}

FAILS=0
ROWS=()
FMT='%-5s %-11s %-6s %-6s %-7s %-6s %-11s %s\n'

echo "e2e: sentry $SENTRY_IP, attacker $ATTACKER_IP, scans ${SCANS[*]}"
if ! on sentry "sudo -n scanwatch status -c /etc/scanwatch/scanwatch.conf" </dev/null >/dev/null 2>&1; then
    echo "e2e: scanwatch is not running on the sentry (vagrant ssh sentry -c 'systemctl status scanwatch')" >&2
    exit 100
fi

for scan in "${SCANS[@]}"; do
    type=${TYPE[$scan]}
    unblock
    before=FAIL scanned=FAIL cut=FAIL st=FAIL nft=FAIL deny=FAIL
    reaches && before=ok
    out=$(on attacker "sudo -n nmap -n -Pn -T5 --max-retries 0 $scan -p $SCAN_PORTS $SENTRY_IP" \
          </dev/null 2>&1) && scanned=ok
    # sentry-check.sh is piped in: the sentry needs no up-to-date copy of it
    checks=$(on sentry "sudo -n bash -s -- $ATTACKER_IP '$type'" <vagrant/sentry-check.sh 2>&1 | tail -n 1)
    [[ $checks == *status=ok* ]] && st=ok
    [[ $checks == *nft=ok* ]] && nft=ok
    [[ $checks == *hosts.deny=ok* ]] && deny=ok
    reaches || cut=ok
    row=("$scan" "$type" "$before" "$scanned" "$st" "$nft" "$deny" "$cut")
    for c in "${row[@]:2}"; do [ "$c" = ok ] || FAILS=$((FAILS + 1)); done
    # shellcheck disable=SC2059  # FMT is ours
    ROWS+=("$(printf "$FMT" "${row[@]}")")
    if [ "$scanned" != ok ]; then
        echo "e2e: nmap $scan failed:" >&2
        echo "$out" | tail -n 5 >&2
    fi
    if [[ $checks != *"status=ok nft=ok hosts.deny=ok"* ]]; then
        echo "e2e: after nmap $scan the sentry reports: $checks" >&2
    fi
done
unblock

echo
# shellcheck disable=SC2059
printf "$FMT" SCAN TYPE REACH NMAP STATUS NFT HOSTS.DENY CUT-OFF
printf '%s\n' "${ROWS[@]}"
echo "REACH: the attacker connected to port $PORT before the scan; NMAP: the scan ran;"
echo "STATUS/NFT/HOSTS.DENY: the sentry blocks it there; CUT-OFF: it cannot connect after."
echo
if [ "$FAILS" -eq 0 ]; then
    echo "e2e: PASS (${#SCANS[@]} scans, every check ok)"
else
    echo "e2e: FAIL ($FAILS failed checks)"
fi
exit $((FAILS > 99 ? 99 : FAILS))
