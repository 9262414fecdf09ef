"""rtpengine's *ng* control protocol, both sides of it: the SIP edge sends, the relay serves.

Sans-IO, standard library only; the sockets, timers and cookie choice belong to each
side's adapter.

- :mod:`contracts.ng.bencode`: the strict, bounded bencode codec the protocol is written in.
- :mod:`contracts.ng.control`: framing, the commands (ping, offer, answer, delete, query),
  the replies, and the client's reading of a reply.
- :mod:`contracts.ng.replycache`: the server's cache that answers a retransmitted request
  with the very reply it got before.
"""
