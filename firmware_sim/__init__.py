"""The simulated microcontroller firmware: the hardware-in-the-loop simulator (docs/design.md §8).

- :mod:`.fixed_point`: the on-device network and ANP learner in integer fixed point;
- :mod:`.fast`: the same step as compiled scalar loops (speed; the C port's shape);
- :mod:`.tanh_table`: the tanh table both read;
- :mod:`.ram`: the RAM budget a model is checked against;
- :mod:`.flash`: a file-backed flash with two model slots and crash-safe metadata;
- :mod:`.firmware`: the protocol's request handling (frames in, replies out);
- :mod:`.server`: the process serving it on a pseudo-terminal
  (``python -m twinpass.firmware_sim`` or ``twinpass firmware-sim``).

The protocol and the arithmetic are specified in ``docs/protocol.md``; the wire format
(frames, messages, Q formats, the model image) is ``twinpass.protocol``. This package
imports that and the ground floor (``twinpass.core``) only: neither the devices nor the
kernels.
"""
