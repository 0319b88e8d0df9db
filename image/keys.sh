#!/bin/sh
# Development RAUC signing keys (ECDSA P-256 X.509; RAUC's CMS signing cannot use Ed25519).
#   image/keys.sh DIR   -> DIR/dev.{key,cert}.pem   (signs bundles; cert = image keyring)
#                          DIR/rogue.{key,cert}.pem (a key the image does not trust; tests)
# Created once and kept: an image only accepts bundles signed by the key it was built with.
# Production keys never live in the repository or the build tree; see docs/image.md.
set -eu
dir=${1:?usage: keys.sh DIR}
mkdir -p "$dir"
for k in dev rogue; do
  [ -s "$dir/$k.cert.pem" ] && [ -s "$dir/$k.key.pem" ] && continue
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/$k.key.pem" -out "$dir/$k.cert.pem" -days 3650 \
    -subj "/O=Macula OS development/CN=macula-$k-bundle-signing" 2>/dev/null
  chmod 0600 "$dir/$k.key.pem"
  echo "keys.sh: created $dir/$k.key.pem (development only)"
done
