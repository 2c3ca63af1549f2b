#!/bin/bash
# Vagrant provisioner of the `sentry` VM (runs as root, from the Vagrantfile):
# `make install` from the synced tree (/vagrant), which enables and starts
# scanwatch.service; the vagrant user joins the scanwatch group.
#   usage: provision-sentry.sh ATTACKER_IP
set -euo pipefail
ATTACKER_IP=${1:?usage: provision-sentry.sh ATTACKER_IP}
export DEBIAN_FRONTEND=noninteractive

if ! command -v make >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends make >/dev/null
fi
make -C /vagrant install

# `scanwatch status` without sudo (next login)
usermod -aG scanwatch vagrant

echo "scanwatch.service is $(systemctl is-active scanwatch.service)"
echo "the attacker ($ATTACKER_IP) is not in the ignore list; scan me from it"
