#!/usr/bin/env bash
# Create the LLaMA-Factory framework venv: tools/envs/llamafactory.sh VENV_DIR [PYTHON]
# Python 3.11 only (torch 2.14.1 lies on this machine's disk for cp311). Prints the install time.
set -euo pipefail
venv="${1:?usage: tools/envs/llamafactory.sh VENV_DIR [PYTHON]}"
python="${2:-python3.11}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
start=$SECONDS
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
# 1. LLaMA-Factory's real text-path requirements, torch pinned in the same command (no other torch).
"${pip[@]}" -r "$here/llamafactory.txt"
# 2. llamafactory itself and torchaudio without their declared extras (see llamafactory-nodeps.txt).
"${pip[@]}" --no-deps -r "$here/llamafactory-nodeps.txt"
# 3. Bastion (editable, its runtime deps listed explicitly so pip cannot touch torch) and the test tools.
#    pyopenssl: model-signing 1.1.1 imports OpenSSL without declaring it.
"${pip[@]}" --no-deps -e "$root"
"${pip[@]}" torch==2.14.1 rfc8785 pydantic pyyaml click rich "sigstore>=4.0,<5" "model-signing>=1.1.1,<2" \
    cryptography pyopenssl phonenumbers python-stdnum "detect-secrets>=1.5,<2" pytest pytest-timeout
# Fail now, not in the first test, if the stack does not import together.
"$venv/bin/python" -c "import torchaudio, llamafactory.train.tuner, bastion.plugins.hf.callback"
echo "llamafactory venv ready in $venv ($((SECONDS - start)) s)"
