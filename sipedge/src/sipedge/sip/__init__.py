"""The sans-IO SIP core (RFC 3261 and friends).

Bytes and ``now`` go in; messages, events, bytes to send and the next timer deadline
come out. Nothing here opens a socket, reads a clock or imports a store: the
import-linter contracts in ``pyproject.toml`` check that.
"""
