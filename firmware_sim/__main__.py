"""``python -m twinpass.firmware_sim``: run the firmware simulator on a pseudo-terminal."""

from __future__ import annotations

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
