"""The relay's I/O: sockets for media, the STUN listener and the *ng* control endpoint."""
