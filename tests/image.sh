#!/usr/bin/env bash
# The hardened image, end to end (tests/run.sh --long): build it with images/build.sh from a bundle and certificates
# made for the test (the build reports the lynis index of its chroot audit), then boot a copy under QEMU (TCG) with a
# probe unit added, which reports on the serial console every vbank unit's state, `vbank status`, the /usr mount and
# a lynis audit of the running system, and powers off. The lynis goal applies to that audit.
#   VBANK_BIN=… VBANK_SFRAME_WASM=… tests/image.sh
# VBANK_IMAGE_OUT=DIR keeps the built image there, and a later run boots it again without building (iterating on
# the boot checks).
set -euo pipefail
cd "$(dirname "$0")/.."
LYNIS_GOAL=${LYNIS_GOAL:-80}
WORK=$(mktemp -d /var/tmp/vbank-image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
bash tests/install-fixtures.sh "$WORK/fixtures"
cat > "$WORK/vars.yml" <<YAML
vbank_bundle: $WORK/fixtures/vbank-0.0.0-test.tar.gz
vbank_release_key: $WORK/fixtures/release.pem
vbank_tls_dir: $WORK/fixtures/tls
vbank_public_url: https://vbank.test
vbank_media_advertise: 10.0.2.15:10000
vbank_hsm_pin: "1234"
vbank_hsm_so_pin: "87654321"
vbank_kyc_token_key: 0123456789abcdef0123456789abcdef
vbank_kyc_identity: nciic
vbank_kyc_vendors:
  nciic: {host: nciic.test, sbm: SBM-TEST, license: "credential:nciic-license"}
vbank_kyc_credentials:
  nciic-license: test-licence
vbank_ssh_from: [10.0.2.0/24]
YAML

OUT=${VBANK_IMAGE_OUT:-$WORK/out}
if [[ -s "$OUT/disk.raw" && -n "${VBANK_IMAGE_OUT:-}" ]]; then
  echo "--- reusing the image in $OUT"
else
  echo "--- build"
  bash images/build.sh --vars "$WORK/vars.yml" --out "$OUT" > "$WORK/build.log" 2>&1 || { tail -n 80 "$WORK/build.log"; exit 1; }
  grep -E '^(---|image:|lynis hardening index)' "$WORK/build.log"
fi
failed=0

echo "--- boot under QEMU (TCG)"
# The probe reports on a second serial port (the first one is the console, where getty may hang up other writers);
# it goes into a copy of the disk only (debugfs writes into the file system image; the shipped disk stays as built).
cp --sparse=always "$OUT/disk.raw" "$WORK/boot.raw"
cat > "$WORK/probe.sh" <<'SH'
#!/bin/sh
units="vbank-keyd vbank-gateway vbank-recorder vbank-kyc"
for i in $(seq 1 90); do
  all=1; for u in $units; do systemctl is-active -q "$u" || all=0; done
  [ "$all" = 1 ] && break; sleep 2
done
for u in $units; do
  echo "PROBE unit $u $(systemctl show -p ActiveState --value "$u") restarts=$(systemctl show -p NRestarts --value "$u")"
done
# Under emulation kyc takes minutes to load its models: wait until all but the gateway (no key ceremony) are ready.
for i in $(seq 1 150); do
  status=$(vbank --json status)
  echo "$status" | python3 -c 'import json,sys; s=json.load(sys.stdin)["services"]; sys.exit(not all(x["ready"] for x in s if x["service"] != "gateway"))' && break
  sleep 2
done
echo "PROBE status $status"
echo "PROBE usr $(findmnt -no OPTIONS /usr)"
# lynis from the second disk, audited on the running system (its kernel parameters, services and firewall).
mkdir -p /run/lynis && mount -o ro /dev/vdb /run/lynis
(cd /run/lynis && ./lynis audit system --quick --no-colors --profile /run/lynis/default.prf \
  --log-file /run/lynis.log --report-file /run/lynis-report.dat >/run/lynis.out 2>&1) || tail -n 20 /run/lynis.out | sed 's/^/PROBE log lynis: /'
echo "PROBE lynis $(grep '^hardening_index=' /run/lynis-report.dat)"
grep -E '^(suggestion|warning)\[\]=' /run/lynis-report.dat | sed 's/^/PROBE lynis-finding /'
echo "PROBE failed-units $(systemctl list-units --failed --plain --no-legend --no-pager | awk '{print $1}' | tr '\n' ' ')"
for u in $units usbguard; do journalctl -b -u "$u" --no-pager -o cat | tail -n 12 | sed "s/^/PROBE log $u: /"; done
SH
cat > "$WORK/probe.service" <<'UNIT'
[Unit]
Description=vbank image test probe
After=vbank-keyd.service vbank-gateway.service vbank-recorder.service vbank-kyc.service
[Service]
Type=oneshot
ExecStart=/bin/sh /etc/vbank-probe.sh
ExecStopPost=/bin/systemctl --no-block poweroff
StandardOutput=tty
TTYPath=/dev/ttyS1
Environment=SYSTEMD_PAGER=cat
UNIT
debugfs -w "$WORK/boot.raw" -f - >/dev/null 2>&1 <<DBG
write $WORK/probe.sh /etc/vbank-probe.sh
write $WORK/probe.service /etc/systemd/system/vbank-probe.service
symlink /etc/systemd/system/multi-user.target.wants/vbank-probe.service /etc/systemd/system/vbank-probe.service
DBG
# lynis for the audit on the running system, on a second disk.
mkdir -p "$WORK/lynis"
cp -a /usr/share/lynis/. /etc/lynis/. "$WORK/lynis/"; cp /usr/sbin/lynis "$WORK/lynis/"
mkfs.ext4 -q -F -L lynis -d "$WORK/lynis" "$WORK/lynis.img" 64M
kernel=$(ls "$OUT"/boot/vmlinuz-* | head -1); initrd=$(ls "$OUT"/boot/initrd.img-* | head -1)
start=$(date +%s)
timeout 1500 qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 2048 -smp 2 -display none -monitor none -no-reboot \
  -kernel "$kernel" -initrd "$initrd" -append 'root=/dev/vda rw console=ttyS0' \
  -drive file="$WORK/boot.raw",format=raw,if=virtio -drive file="$WORK/lynis.img",format=raw,if=virtio,readonly=on \
  -serial file:"$WORK/serial.log" -serial file:"$WORK/probe.out" \
  -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,romfile= > "$WORK/qemu.log" 2>&1 || true
echo "booted, probed and powered off in $(( $(date +%s) - start )) s"
grep -a '^PROBE ' "$WORK/probe.out" | tr -d '\r' | tee "$WORK/probe.log" | grep -v '^PROBE log' || true
for u in keyd gateway recorder kyc; do
  if grep -q "^PROBE unit vbank-$u active restarts=0$" "$WORK/probe.log"; then echo "ok: vbank-$u active"
  else echo "FAILED: vbank-$u is not active"; failed=1; fi
done
# Before the key ceremony every service but the gateway is ready; the gateway waits only for its call-token key.
if sed -n 's/^PROBE status //p' "$WORK/probe.log" | python3 -c '
import json, sys
s = {x["service"]: x for x in json.load(sys.stdin)["services"]}
for name in ("keyd", "recorder", "kyc"):
    assert s[name]["ready"], name + ": " + json.dumps(s[name]["detail"])
checks = s["gateway"]["detail"]["checks"]
waiting = sorted(k for k, v in checks.items() if v["state"] != "ok")
assert waiting == ["token_keys"], f"gateway: {checks}"
'; then echo "ok: vbank status: keyd, recorder and kyc ready; the gateway waits only for the key ceremony"
else echo "FAILED: vbank status"; failed=1; fi
if grep -qx 'PROBE failed-units *' "$WORK/probe.log"; then echo "ok: no failed unit"
else echo "FAILED: $(grep '^PROBE failed-units' "$WORK/probe.log")"; failed=1; fi
if grep -q '^PROBE usr ro,' "$WORK/probe.log"; then echo "ok: /usr is read-only"
else echo "FAILED: /usr is not read-only"; failed=1; fi
# The build's audit ran in a chroot, where lynis reads the build host's kernel parameters and running kernel; the
# goal applies to the audit of the booted image.
index=$(sed -n 's/^PROBE lynis hardening_index=\([0-9]*\).*/\1/p' "$WORK/probe.log")
if [[ -n "$index" ]] && ((index >= LYNIS_GOAL)); then echo "ok: lynis hardening index of the booted image $index (goal $LYNIS_GOAL)"
else echo "FAILED: lynis hardening index of the booted image '${index}', goal $LYNIS_GOAL"; failed=1; fi
grep '^PROBE lynis-finding' "$WORK/probe.log" | sed 's/^PROBE lynis-finding /  lynis: /' || true
if ((failed)); then
  grep '^PROBE log' "$WORK/probe.log" || tail -n 60 "$WORK/serial.log"
  exit 1
fi
