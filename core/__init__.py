"""The ground floor: what every layer of twinpass shares, importing nothing else of it.

- :mod:`.errors`: the exception tree (users import it from ``twinpass`` or
  ``twinpass.runtime``).

Every other package (kernels, devices, the protocol, the firmware simulator, the runtime,
the command line) may import it; it imports none of them.
"""
