#!/usr/bin/env bash
# demo.sh - what `make demo` runs (after building).
#
# Today Keel's foundation is in place: the Istio resource model and
# `keel validate`. This demo validates the bundled bookinfo example (valid),
# then a folder of real-world mistakes, showing how each is reported. The
# local mesh (`keel run examples/bookinfo`) arrives with the data plane.
#   ARGS=--once    exit non-zero if an outcome is not the expected one
set -uo pipefail
cd "$(dirname "$0")/.."
KEEL=${KEEL:-build/debug/keel}
status=0

echo "== keel validate examples/bookinfo (expected: valid)"
if "$KEEL" validate examples/bookinfo 2>&1; then
  echo "-> valid"
else
  echo "-> UNEXPECTED: bookinfo should be valid"; status=1
fi
echo
echo "== keel validate examples/mistakes (expected: one error per file)"
"$KEEL" validate examples/mistakes 2>&1
rc=$?
if [ $rc -eq 1 ]; then
  echo "-> invalid, as expected (exit status 1)"
else
  echo "-> UNEXPECTED exit status $rc"; status=1
fi
echo
echo "Try it on your own files:  $KEEL validate path/to/folder   (or -o json)"
exit $status
