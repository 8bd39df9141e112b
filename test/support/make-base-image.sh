#!/usr/bin/env bash
# Builds a local Debian base image with debootstrap + docker import, for machines
# that cannot pull from a registry. Usage: make-base-image.sh [IMAGE_NAME]
set -euo pipefail

image="${1:-${PARA_TEST_BASE_IMAGE:-para-test-base:bookworm}}"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image already present" >&2
  exit 0
fi

# The mirror comes from this machine's apt sources (deb822 first, then one-line form).
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)"
fi
if [ -z "$mirror" ]; then
  echo "no Debian mirror found in /etc/apt/sources.list{,.d}: cannot debootstrap" >&2
  exit 1
fi
suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
echo "debootstrap $suite into $root" >&2
debootstrap --variant=minbase --include=git,ca-certificates "$suite" "$root" "$mirror" >&2
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$image" >&2
echo "built base image $image" >&2
