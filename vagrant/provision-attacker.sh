#!/bin/bash
# Vagrant provisioner of the `attacker` VM (runs as root, from the Vagrantfile).
#   usage: provision-attacker.sh SENTRY_IP
set -euo pipefail
SENTRY_IP=${1:?usage: provision-attacker.sh SENTRY_IP}
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in nmap hping3 netcat-openbsd; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "installed ${missing[*]}"
fi
echo "ready; try: sudo nmap -sS -p 1-100 $SENTRY_IP"
