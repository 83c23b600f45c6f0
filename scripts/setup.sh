#!/usr/bin/env bash
# Installs what building and testing ticketgate needs on Debian. Idempotent:
# installs only what is missing. Run as root (or with sudo available).
set -euo pipefail

need=()
want_pkgs=(libclang-dev clang pkg-config)
if [[ "${1:-}" == "--test" ]]; then
    # postfix brings smtp-source and smtp-sink; swaks drives the e2e tests;
    # tests/postfix/run.sh also uses python3 and ss (iproute2); prometheus
    # brings promtool, which checks the shipped alert rules.
    want_pkgs+=(postfix swaks python3 iproute2 prometheus)
fi
for p in "${want_pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix asks how to configure itself; we only want its tools, and our
    # tests run private instances, so no system mail is set up.
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
