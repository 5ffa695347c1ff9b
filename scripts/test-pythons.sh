#!/usr/bin/env bash
# Install the package into a fresh venv per supported CPython and run what proves it
# works there: import, `aiolwm2m --help`, DTLS absent (coap:// only), the DTLS unit
# suite and a coaps:// PSK registration against the testbed server.
# Interpreters: $PYTHONS (space-separated), default the pyenv ones of this machine type;
# a missing interpreter is reported and skipped, never silently passed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONS=${PYTHONS:-"/root/.pyenv/versions/3.12.1/bin/python /root/.pyenv/versions/3.13.0/bin/python"}
TESTS=(
  tests/integration/test_dtls_absent.py
  tests/unit/dtls
  "tests/integration/test_dtls_client.py::test_psk_registration_and_server_read_observe_over_the_session"
)
ran=0
for py in $PYTHONS; do
  if [ ! -x "$py" ]; then
    echo "== $py: not installed here, skipped"
    continue
  fi
  version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  venv=".venv-py$version"
  echo "== Python $version ($py) in $venv"
  test -x "$venv/bin/python" || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q . pytest pytest-asyncio pytest-timeout hypothesis
  "$venv/bin/python" -c 'import aiolwm2m, OpenSSL; print("import ok, pyOpenSSL", OpenSSL.__version__)'
  "$venv/bin/aiolwm2m" --help > /dev/null && echo "aiolwm2m --help ok"
  # Run from a temporary directory so the installed package (not src/) is tested.
  "$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$PWD" -c "$PWD/pyproject.toml" \
    "${TESTS[@]/#/$PWD/}"
  ran=$((ran + 1))
done
echo "test-pythons: $ran interpreter(s) tested"
