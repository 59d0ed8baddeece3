#!/usr/bin/env bash
# Create the Axolotl framework venv: tools/envs/axolotl.sh VENV_DIR [PYTHON]
# Python 3.11 (Axolotl 0.19.0 is the newest release for it; torch 2.13.0 CPU lies on this disk for cp311).
# Prints the install time.
set -euo pipefail
venv="${1:?usage: tools/envs/axolotl.sh VENV_DIR [PYTHON]}"
python="${2:-python3.11}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
start=$SECONDS
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
# 1. Axolotl's pinned stack for the text path, torch pinned in the same command (no other torch).
"${pip[@]}" -r "$here/axolotl.txt"
# 2. Axolotl itself without its declared extras (see axolotl.txt for what is left out and why).
"${pip[@]}" --no-deps -r "$here/axolotl-nodeps.txt"
# 3. Bastion (editable; its runtime deps listed so pip cannot touch torch) and the test tools.
#    pyopenssl: model-signing 1.1.1 imports OpenSSL without declaring it.
"${pip[@]}" --no-deps -e "$root"
"${pip[@]}" torch==2.13.0 pydantic==2.12.5 rfc8785 pyyaml click rich "sigstore>=4.0,<5" "model-signing>=1.1.1,<2" \
    cryptography pyopenssl phonenumbers python-stdnum "detect-secrets>=1.5,<2" pytest pytest-timeout hypothesis
# Fail now, not in the first test, if the stack does not import together.
HF_HUB_OFFLINE=1 "$venv/bin/python" -c "import axolotl.cli.train, axolotl.train, bastion.plugins.axolotl.plugin, bastion.provenance.signing"
echo "axolotl venv ready in $venv ($((SECONDS - start)) s)"
