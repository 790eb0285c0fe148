#!/usr/bin/env bash
# Install the Debian packages whose real servers the tests and benchmarks run
# (PostgreSQL, OpenDKIM's tools, Postfix's smtp-sink, Dovecot, Knot, Chromium).
# `sysdeps.sh demo` installs only what the demo uses (Dovecot, for the lab's IMAP).
# Only what is missing is installed; without root, missing packages are listed
# and the tests that need them skip (or fail under CI=true).
set -euo pipefail
what=${1:-test}
declare -A bin_pkg=(
  [/usr/sbin/dovecot]=dovecot-imapd
)
if [[ $what != demo ]]; then
  bin_pkg[/usr/lib/postgresql]=postgresql
  bin_pkg[/usr/sbin/opendkim-testmsg]=opendkim-tools
  bin_pkg[/usr/sbin/smtp-sink]=postfix
  bin_pkg[/usr/bin/unshare]=util-linux
  bin_pkg[/usr/sbin/runuser]=util-linux
fi
if [[ $what == bench ]]; then
  bin_pkg[/usr/sbin/opendkim]=opendkim
  bin_pkg[/usr/sbin/knotd]=knot
  bin_pkg[/usr/bin/kdig]=knot-dnsutils
  bin_pkg[/usr/bin/ss]=iproute2
fi
missing=()
for path in "${!bin_pkg[@]}"; do
  [[ -e $path ]] || missing+=("${bin_pkg[$path]}")
done
# one package may provide several programs
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')
(( ${#missing[@]} == 0 )) && exit 0
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # postfix asks how to configure the system MTA; we only use its tools
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
else
  echo "missing Debian packages (install them as root): ${missing[*]}" >&2
fi
