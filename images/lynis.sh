#!/usr/bin/env bash
# A lynis audit of a root file system, run inside it (lynis --rootdir would read the build host's kernel, processes
# and firewall). The host's lynis is copied in for the audit and removed after.
#   images/lynis.sh ROOTFS OUTDIR     writes OUTDIR/lynis-report.dat and lynis.log, prints the index and suggestions
set -euo pipefail
R=$1 OUT=$2
mkdir -p "$R/opt/lynis" "$R/etc/lynis"
cp -a /usr/share/lynis/. "$R/opt/lynis/"; cp /usr/sbin/lynis "$R/opt/lynis/lynis"; cp -a /etc/lynis/. "$R/etc/lynis/"
unshare -m bash -c '
  R=$1
  mount -t proc proc "$R/proc"
  chroot "$R" /bin/sh -c "cd /opt/lynis && ./lynis audit system --quick --no-colors --log-file /tmp/lynis.log --report-file /tmp/lynis-report.dat" >/dev/null
' _ "$R"
cp "$R/tmp/lynis-report.dat" "$R/tmp/lynis.log" "$OUT/"
rm -rf "$R/opt/lynis" "$R/etc/lynis" "$R/tmp/lynis-report.dat" "$R/tmp/lynis.log"
grep -E '^(suggestion|warning)\[\]=' "$OUT/lynis-report.dat" | sed -E 's/^(suggestion|warning)\[\]=/  \1: /' || true
echo "lynis hardening index: $(awk -F= '/^hardening_index=/ {print $2}' "$OUT/lynis-report.dat")"
