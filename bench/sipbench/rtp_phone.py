"""A minimal RTP phone for the NAT lab: sends a PCMU tone, records what it hears.

Run as a script inside a lab namespace (standard library only)::

    python rtp_phone.py --bind IP:PORT --to IP:PORT --tone HZ --seconds S \\
        [--delay S] --out FILE.json

After ``--delay`` seconds of only listening, every 20 ms it sends one RTP packet (PT 0,
160 samples of a sine at ``--tone`` Hz, G.711 µ-law) to ``--to`` from ``--bind``, and
reads whatever arrives on ``--bind``. At the end it
writes JSON: packets sent and received, the sources they came from, and the tone it heard
(the strongest of 300-3,400 Hz by the Goertzel algorithm over the decoded samples), so a
test checks that what arrived is the far end's audio, not just that packets moved.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import select
import socket
import struct
import time

RATE = 8000
SAMPLES = 160  # 20 ms


def linear_to_ulaw(sample: int) -> int:
    """ITU-T G.711 µ-law encoding of a 16-bit linear sample."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    sample = min(abs(sample), clip) + bias
    exponent = max(0, (sample.bit_length() - 8))
    exponent = min(exponent, 7)
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    sample = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -sample if sign else sample


def tone_payloads(hz: float) -> list[bytes]:
    """One second of 20 ms payloads of a sine at ``hz`` (the tone repeats every second)."""
    samples = [int(12000 * math.sin(2 * math.pi * hz * n / RATE)) for n in range(RATE)]
    encoded = bytes(linear_to_ulaw(s) for s in samples)
    return [encoded[i : i + SAMPLES] for i in range(0, RATE, SAMPLES)]


def goertzel_power(samples: list[int], hz: float) -> float:
    coefficient = 2 * math.cos(2 * math.pi * hz / RATE)
    s1 = s2 = 0.0
    for sample in samples:
        s1, s2 = sample + coefficient * s1 - s2, s1
    return s2 * s2 + s1 * s1 - coefficient * s1 * s2


def loudest_tone(samples: list[int]) -> float | None:
    """The frequency (10 Hz steps, 300-3,400 Hz) with the most power, None without audio."""
    if len(samples) < RATE // 10:
        return None
    window = samples[: RATE * 2]
    return float(max(range(300, 3410, 10), key=lambda hz: goertzel_power(window, hz)))


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", type=address, required=True)
    parser.add_argument("--to", type=address, required=True)
    parser.add_argument("--tone", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--ssrc", type=int, default=0x1234)
    parser.add_argument("--delay", type=float, default=0.0, help="listen only, this long first")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(args.bind)
    sock.setblocking(False)
    payloads = tone_payloads(args.tone)
    sent = received = 0
    sources: dict[str, int] = {}
    heard: list[int] = []
    next_send = time.monotonic() + args.delay
    end = next_send + args.seconds
    while (now := time.monotonic()) < end + 0.5:
        if now >= next_send and now < end:
            header = struct.pack("!BBHII", 0x80, 0, sent & 0xFFFF, sent * SAMPLES, args.ssrc)
            # No route (a private address): the packet is simply lost, as on a real phone.
            with contextlib.suppress(OSError):
                sock.sendto(header + payloads[sent % len(payloads)], args.to)
            sent += 1
            next_send += SAMPLES / RATE
        ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send, end + 0.5) - now))
        while ready:
            try:
                data, source = sock.recvfrom(2048)
            except BlockingIOError:
                break
            if len(data) >= 12 and data[0] & 0xC0 == 0x80:
                received += 1
                key = f"{source[0]}:{source[1]}"
                sources[key] = sources.get(key, 0) + 1
                heard.extend(ulaw_to_linear(b) for b in data[12:])
    with open(args.out, "w") as out:
        json.dump(
            {"sent": sent, "received": received, "sources": sources, "tone": loudest_tone(heard)},
            out,
        )


if __name__ == "__main__":
    main()
