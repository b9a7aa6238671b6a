#!/usr/bin/env bash
# The hardened appliance image: Debian 12 from images/base.sh, the Ansible roles of a server install through the chroot
# connection (ansible/image.yml, vbank_image_build=true), a lynis audit inside the finished root, then an ext4 file
# system written straight from the directory (mkfs.ext4 -d, no loop devices) as a raw disk and a qcow2.
#   images/build.sh --vars VARS.yml --out DIR [--size 3G]
# VARS.yml holds the inventory variables of ansible/README.md (the signed bundle, the pinned release key, the bank
# CA's certificates, the HSM profile and PIN, …). DIR receives disk.raw, disk.qcow2, boot/ (the kernel and initrd
# for direct kernel boot), lynis-report.dat and SHA256SUMS. Run as root; it mounts only inside its own namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
VARS="" OUT="" SIZE=3G
while (($#)); do
  case "$1" in
    --vars) VARS=$(realpath "$2"); shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    *) echo "usage: images/build.sh --vars VARS.yml --out DIR [--size 3G]" >&2; exit 2 ;;
  esac
done
[[ -n "$VARS" && -n "$OUT" ]] || { echo "usage: images/build.sh --vars VARS.yml --out DIR [--size 3G]" >&2; exit 2; }
for tool in mmdebstrap mkfs.ext4 qemu-img lynis; do
  command -v "$tool" >/dev/null || { echo "images/build.sh: $tool is missing (tests/setup.sh --long installs it)" >&2; exit 1; }
done
mkdir -p "$OUT"; OUT=$(realpath "$OUT")
VENV="${VBANK_CACHE:-$HOME/.cache/vbank}/ansible-venv"
[[ -x "$VENV/bin/ansible-playbook" ]] || { echo "images/build.sh: no Ansible venv (tests/ansible.sh makes it)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
mkdir "$ROOTFS"
echo "--- base system"
tar -C "$ROOTFS" --numeric-owner -xpf "$(bash images/base.sh)"

echo "--- the Ansible roles (chroot connection)"
cat > "$WORK/inventory.yml" <<YAML
all:
  children:
    vbank_nodes:
      hosts:
        image:
          ansible_host: $ROOTFS
          ansible_connection: community.general.chroot
          ansible_python_interpreter: /usr/bin/python3
YAML
# Inside a private mount namespace: /proc for the packages' scripts, the host's resolver for apt (the image's own
# resolv.conf is systemd-resolved's link, put back after), and no service started by a package script.
unshare -m bash -euo pipefail -c '
  R=$1 INV=$2 VARS=$3 VENV=$4
  mount -t proc proc "$R/proc"
  mv "$R/etc/resolv.conf" "$R/etc/resolv.conf.image" 2>/dev/null || true
  cp /etc/resolv.conf "$R/etc/resolv.conf"
  printf "#!/bin/sh\nexit 101\n" > "$R/usr/sbin/policy-rc.d"; chmod 755 "$R/usr/sbin/policy-rc.d"
  (cd ansible && ANSIBLE_ROLES_PATH=roles "$VENV/bin/ansible-playbook" -i "$INV" image.yml -e @"$VARS" \
     -e vbank_image_build=true)
  rm -f "$R/usr/sbin/policy-rc.d" "$R/etc/resolv.conf"
  if [[ -e "$R/etc/resolv.conf.image" || -L "$R/etc/resolv.conf.image" ]]; then mv "$R/etc/resolv.conf.image" "$R/etc/resolv.conf"; fi
  rm -rf "$R/root/.ansible"
  umount "$R/proc"
' _ "$ROOTFS" "$WORK/inventory.yml" "$VARS" "$VENV"

echo "--- lynis audit (inside the finished root)"
bash images/lynis.sh "$ROOTFS" "$OUT"

echo "--- disks"
mkdir -p "$OUT/boot"
cp -L "$ROOTFS"/boot/vmlinuz-* "$ROOTFS"/boot/initrd.img-* "$OUT/boot/"
rm -f "$OUT/disk.raw" "$OUT/disk.qcow2"
mkfs.ext4 -q -F -L root -d "$ROOTFS" "$OUT/disk.raw" "$SIZE"
qemu-img convert -O qcow2 "$OUT/disk.raw" "$OUT/disk.qcow2"
(cd "$OUT" && sha256sum disk.raw disk.qcow2 boot/* > SHA256SUMS)
echo "image: $OUT/disk.qcow2 ($(du -h --apparent-size "$OUT/disk.qcow2" | cut -f1)), lynis hardening index $(awk -F= '/^hardening_index=/ {print $2}' "$OUT/lynis-report.dat")"
