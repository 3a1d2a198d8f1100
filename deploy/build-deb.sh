#!/usr/bin/env bash
# Builds target/debian/pve-network-migration_<version>_<arch>.deb:
# release binaries, the systemd unit, the logrotate snippet, example
# configuration, the docs and the binaries' --help texts. Needs cargo-deb
# (installed here when missing) and dpkg-deb.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release --locked -p pve-network-migration --bins

help=target/release/help
mkdir -p "$help"
./target/release/pve-network-migration --help > "$help/pve-network-migration.txt"
./target/release/pve-network-migration serve --help > "$help/pve-network-migration-serve.txt"
./target/release/migration-ctl --help > "$help/migration-ctl.txt"
for cmd in health phase trip evidence diagnostics; do
  ./target/release/migration-ctl "$cmd" --help > "$help/migration-ctl-$cmd.txt"
done
./target/release/contract-test --help > "$help/contract-test.txt"

cargo deb --no-build --strip -p pve-network-migration
deb=$(ls -t target/debian/pve-network-migration_*.deb | head -n 1)

# The package must hold what an operator installs.
listing=$(dpkg-deb -c "$deb")
for want in ./usr/bin/pve-network-migration ./usr/bin/migration-ctl ./usr/bin/contract-test \
            ./lib/systemd/system/pve-network-migration.service \
            ./lib/systemd/system/pve-network-migration.socket \
            ./usr/share/doc/pve-network-migration/examples/socket-listen.conf.example \
            ./etc/logrotate.d/pve-network-migration \
            ./usr/share/doc/pve-network-migration/examples/migration.toml \
            ./usr/share/doc/pve-network-migration/help/migration-ctl.txt; do
  grep -q " $want\$" <<< "$listing" || { echo "build-deb: $want missing from $deb" >&2; exit 1; }
done

# The unit must be accepted by systemd where systemd-analyze exists; the
# binary path is checked against the built binary.
if command -v systemd-analyze >/dev/null; then
  tmp=$(mktemp -d)
  sed "s#/usr/bin/pve-network-migration#$PWD/target/release/pve-network-migration#" \
    deploy/pve-network-migration.service > "$tmp/pve-network-migration.service"
  # the socket unit loads only with its node-local drop-in: verify it with
  # the example's addresses
  cat deploy/pve-network-migration.socket > "$tmp/pve-network-migration.socket"
  grep '^ListenStream=' deploy/pve-network-migration.socket.d/listen.conf.example \
    | sed '1i [Socket]' >> "$tmp/pve-network-migration.socket"
  systemd-analyze verify "$tmp/pve-network-migration.service" "$tmp/pve-network-migration.socket"
  rm -rf "$tmp"
fi
echo "$deb"
