"""What crosses a process boundary in cloudpbx.

The compiled tenant snapshot the operator publishes and the edge reads, the relay
control messages, and the configuration handed to pods: frozen dataclasses with a
strict codec, standard library only. Filled in by the edge, trunk and operator work.

:mod:`contracts.sdp` is the SDP codec both the SIP edge (offer/answer) and the relay
(rewriting SDP in an ng ``offer``/``answer``) read and write; :mod:`contracts.ng` is
rtpengine's ng control protocol the edge drives the relay with.
"""
