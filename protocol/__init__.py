"""The wire format: one place for what the host and every firmware exchange.

Imported downward by the serial backend (``twinpass.devices``), the firmware simulator
(``twinpass.firmware_sim``), the command line and the benchmarks; it imports nothing of
the project but the ground floor (``twinpass.core``). Its modules mirror the C firmware's
``firmware/proto/`` and the sections of ``docs/protocol.md``:

- :mod:`.frame`: frames on the wire, ``COBS(header | payload | CRC32) 0x00`` (§1);
- :mod:`.messages`: message types, error codes, msgpack payloads, packed arrays (§3-§4);
- :mod:`.qformat`: the fixed-point formats and the host's conversions to them (§6.1);
- :mod:`.hyper`: the rule's fixed-point hyperparameters, and their conversion from a
  resolved rule (§6.6);
- :mod:`.model_image`: the deployed model image (§7).
"""
