#!/usr/bin/env bash
# Idempotent setup for gamebed on a fresh Debian machine of this kind:
# system packages (clang for the BPF programs, iproute2 for namespaces and tc,
# chromium for the report test, the tools that build gamebed's user-mode Linux
# kernel, QEMU/libvirt and the Debian cloud kernel for VMs),
# then a virtualenv in .venv with gamebed and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v clang >/dev/null || need_apt+=(clang)
command -v llc >/dev/null || need_apt+=(llvm)
[ -e /usr/include/bpf/bpf_helpers.h ] || need_apt+=(libbpf-dev)
command -v tc >/dev/null || need_apt+=(iproute2)
command -v ethtool >/dev/null || need_apt+=(ethtool)
[ -e /usr/include/x86_64-linux-gnu/asm/types.h ] || need_apt+=(linux-libc-dev)
# the report test opens report.html in a real headless browser
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
# captures (`gamebed run --capture`) are checked by opening them with tshark
command -v tshark >/dev/null || need_apt+=(tshark)
# real VMs (--backend libvirt, tests/vm): QEMU, libvirt, the guest image's tools, and
# Debian's cloud kernel with its headers and source for the patched modules
command -v qemu-system-x86_64 >/dev/null || need_apt+=(qemu-system-x86)
command -v qemu-img >/dev/null || need_apt+=(qemu-utils)
command -v libvirtd >/dev/null || need_apt+=(libvirt-daemon-system)
[ -e /usr/include/libvirt/libvirt.h ] || need_apt+=(libvirt-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
[ -e /bin/busybox ] || need_apt+=(busybox-static)
command -v cpio >/dev/null || need_apt+=(cpio)
command -v mkfs.ext4 >/dev/null || need_apt+=(e2fsprogs)
compgen -G "/boot/vmlinuz-*-cloud-amd64" >/dev/null || need_apt+=(linux-image-cloud-amd64)
compgen -G "/usr/src/linux-headers-*-cloud-amd64" >/dev/null || need_apt+=(linux-headers-cloud-amd64)
[ -e /usr/src/linux-source-6.1.tar.xz ] || need_apt+=(linux-source-6.1)
command -v make >/dev/null || need_apt+=(make)
# user-mode Linux guests (--backend uml, the default where it runs) run gamebed's own UML
# kernel (vm/uml_kernel.py), built from a Debian kernel source on first use (about 3 min)
# and cached in /var/cache/gamebed; these build it (linux-source-6.1 above is its fallback)
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)
# the client's compiled core (fpsmodel/fastclient.c: AES-GCM from OpenSSL's libcrypto),
# built on first use; without it the client plays by its Python loop
[ -e /usr/include/openssl/evp.h ] || need_apt+=(libssl-dev)
# players on other machines (--players-on): the tests' namespaced player machines each
# run their own sshd (started by the tests, never as a service), and the client
# namespace NATs the players to the client address (iptables)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v flex >/dev/null || need_apt+=(flex)
command -v bison >/dev/null || need_apt+=(bison)
command -v bc >/dev/null || need_apt+=(bc)
command -v patch >/dev/null || need_apt+=(patch)
command -v xz >/dev/null || need_apt+=(xz-utils)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need_apt+=(debian-archive-keyring)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to apt-get install ${need_apt[*]} (or install them yourself)" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]} from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # openssh-server is for the tests' own sshd only: its system service must not start
  # (nor stay enabled) because of this script; a policy-rc.d of the host's own stays
  ssh_guard=""
  if [[ " ${need_apt[*]} " == *" openssh-server "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n[ "$1" = ssh ] && exit 101\nexit 0\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    ssh_guard=1
  fi
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [ -n "$ssh_guard" ]; then
    rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null; then
      systemctl disable ssh.service ssh.socket >/dev/null 2>&1 || true
    fi
  fi
fi

# libvirt without systemd: start its daemons where none runs (they stay up, like a
# system service; stop them with `pkill libvirtd virtlogd`)
if [ "$(id -u)" -eq 0 ] && command -v libvirtd >/dev/null && ! pgrep -x libvirtd >/dev/null; then
  echo "setup: starting virtlogd -d and libvirtd -d (no systemd here)" >&2
  pgrep -x virtlogd >/dev/null || virtlogd -d
  libvirtd -d
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv
fi
stamp=.venv/.gamebed-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: pip install -e .[dev,libvirt]" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,libvirt]'
  touch "$stamp"
fi
