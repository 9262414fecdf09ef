"""The media plane: RTP/RTCP relay with latching, STUN, TURN and media applications."""
