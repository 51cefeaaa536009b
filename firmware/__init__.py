"""The C firmware's sources and build scripts, shipped in the wheel as package data.

No Python lives here: :mod:`twinpass.firmware_sim.c_firmware` finds this folder (or
``TWINPASS_FIRMWARE_DIR``) and builds the firmware from it into a user cache folder, so that
``twinpass hil --firmware c|qemu`` works after ``pip install twinpass`` too.
"""
