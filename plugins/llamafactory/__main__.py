"""One rank of a distributed ``bastion llamafactory train`` (started by torchrun; not for direct use)."""

from __future__ import annotations

import sys

from bastion.cli.main import main

if __name__ == "__main__":
    main(["llamafactory", "train", "--no-torchrun", *sys.argv[1:]])
