"""Drive headless baresip softphones (and a Kamailio stand-in registrar) from Python.

A :class:`Phone` writes its own baresip config folder, starts ``baresip -f <dir>``, and talks to
it over the ``ctrl_tcp`` module (netstring-framed JSON): commands go out with a token and the
matching response is awaited; events (``CALL_INCOMING``, ``CALL_ESTABLISHED``, ...) are queued
by a reader thread, so an event that arrived before :meth:`Phone.wait_event` is called is not
lost. Nothing here sleeps to wait: every wait is a deadline on a condition or a poll.

Facts about baresip 1.0.0 (Debian 12 ``baresip-core``) this module relies on:

- ``net_interface 127.0.0.1`` (the name ``lo`` does not work); ``sip_listen`` also takes TCP on
  the same port and TLS on port + 1, so phones need SIP ports at least 2 apart.
- There must be an audio player or a call closes at once: ``aubridge`` is the null player.
- ``aufile`` needs the WAV's rate/channels in ``ausrc_srate``/``ausrc_channels`` and hangs the
  call up when the file ends; ``ausine`` needs 48000 Hz, 2 channels.
- ``sndfile`` writes ``dump-<time>-enc.wav`` (what was sent) and ``dump-<time>-dec.wav`` (what
  was heard) into ``snd_path``; the WAV header is only complete after the call ends.
- ``ctrl_tcp`` sends events only to clients already connected, so registration is learnt by
  polling ``reginfo``. The ``menu`` module provides ``dial``/``accept``/``hangup``/``reginfo``.
- A clean ``quit`` can hang ~30 s when the registrar is gone; a second SIGTERM ends it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
import wave
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

BARESIP_BIN = "baresip"
MODULE_PATH = "/usr/lib/baresip/modules"
KAMAILIO_BIN = "kamailio"
LOOPBACK = "127.0.0.1"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class BaresipError(RuntimeError):
    """baresip refused a command, died, or could not be reached."""


class BaresipTimeout(BaresipError, TimeoutError):
    """A deadline passed before the awaited state or event."""


# --------------------------------------------------------------------------------------------
# Ports


def _bindable(port: int, *, udp: bool, tcp: bool) -> bool:
    kinds = ([socket.SOCK_DGRAM] if udp else []) + ([socket.SOCK_STREAM] if tcp else [])
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_port_block(
    count: int,
    *,
    udp: bool = True,
    tcp: bool = True,
    low: int = 20000,
    high: int = 32000,
    attempts: int = 200,
) -> int:
    """Return a base port such that ``base .. base+count-1`` are all bindable on 127.0.0.1.

    The default range sits below Linux's ephemeral range (32768+), so ports the kernel hands
    out to other sockets do not collide with a block once chosen. There is an inherent race
    between checking and binding; the random base keeps parallel runs apart.
    """
    rng = random.SystemRandom()
    for _ in range(attempts):
        base = rng.randrange(low, high - count)
        if all(_bindable(base + i, udp=udp, tcp=tcp) for i in range(count)):
            return base
    raise BaresipError(f"no block of {count} free ports in {low}-{high}")


@dataclass(frozen=True)
class PhonePorts:
    """The ports one phone uses: SIP (UDP+TCP, and TLS on +1), ctrl_tcp, and an RTP range."""

    sip_port: int
    ctrl_port: int
    rtp_port_range: tuple[int, int]


def allocate_phone_ports(count: int, *, rtp_ports_per_phone: int = 16) -> list[PhonePorts]:
    """Ports for ``count`` phones from one free block: per phone SIP, SIP+1 (TLS), ctrl, RTP."""
    stride = 4 + rtp_ports_per_phone
    base = free_port_block(count * stride)
    plan = []
    for i in range(count):
        start = base + i * stride
        rtp_low = start + 4
        plan.append(
            PhonePorts(
                sip_port=start,
                ctrl_port=start + 2,
                rtp_port_range=(rtp_low, rtp_low + rtp_ports_per_phone - 1),
            )
        )
    return plan


# --------------------------------------------------------------------------------------------
# Tones: write a sine WAV, find a frequency's share of a recording's energy (Goertzel)


def write_tone_wav(
    path: Path | str,
    freq_hz: float,
    seconds: float,
    *,
    sample_rate: int = 8000,
    amplitude: float = 0.4,
) -> Path:
    """Write a mono 16-bit PCM WAV of a sine (8 kHz by default: what ``aufile`` plays as PCMU)."""
    out = Path(path)
    frames = int(seconds * sample_rate)
    peak = int(32767 * amplitude)
    step = 2.0 * math.pi * freq_hz / sample_rate
    data = struct.pack(f"<{frames}h", *(int(peak * math.sin(step * n)) for n in range(frames)))
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(data)
    return out


@dataclass(frozen=True)
class WavAudio:
    """Mono 16-bit samples (channels averaged) and their rate."""

    samples: list[float]
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


def read_wav(path: Path | str) -> WavAudio:
    """Read a 16-bit PCM WAV (any rate, any channel count) as mono float samples."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM is supported")
        channels = wav.getnchannels()
        rate = wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    values = struct.unpack(f"<{len(raw) // 2}h", raw[: len(raw) // 2 * 2])
    if channels == 1:
        return WavAudio([float(v) for v in values], rate)
    mono = [
        sum(values[i : i + channels]) / channels
        for i in range(0, len(values) - channels + 1, channels)
    ]
    return WavAudio(mono, rate)


def goertzel_power(samples: Sequence[float], sample_rate: int, freq_hz: float) -> float:
    """Squared magnitude of the DFT of ``samples`` at ``freq_hz`` (Goertzel, no FFT)."""
    coeff = 2.0 * math.cos(2.0 * math.pi * freq_hz / sample_rate)
    s_prev = 0.0
    s_prev2 = 0.0
    for x in samples:
        s = x + coeff * s_prev - s_prev2
        s_prev2 = s_prev
        s_prev = s
    return s_prev2 * s_prev2 + s_prev * s_prev - coeff * s_prev * s_prev2


def tone_share(samples: Sequence[float], sample_rate: int, freq_hz: float) -> float:
    """Fraction (0..1) of the block's energy that sits at ``freq_hz``.

    For a pure sine with a whole number of periods in the block this is 1.0; for a frequency
    that is absent it is near 0. Silence gives 0.
    """
    n = len(samples)
    energy = sum(x * x for x in samples)
    if n == 0 or energy <= 0.0:
        return 0.0
    return min(1.0, 2.0 * goertzel_power(samples, sample_rate, freq_hz) / (n * energy))


@dataclass(frozen=True)
class ToneReport:
    """How much of a recording is a given tone, block by block."""

    freq_hz: float
    seconds: float
    blocks: int
    loud_blocks: int
    median_share: float
    best_share: float

    def present(self, *, min_share: float = 0.5, min_loud_blocks: int = 5) -> bool:
        return self.loud_blocks >= min_loud_blocks and self.median_share >= min_share


def analyse_tone(
    path: Path | str,
    freq_hz: float,
    *,
    block_seconds: float = 0.1,
    silence_rms: float = 100.0,
) -> ToneReport:
    """Measure ``freq_hz`` in a WAV: Goertzel per block, over the blocks louder than silence.

    100 ms blocks give 10 Hz bins, so test tones on multiples of 10 Hz do not leak into each
    other's bins.
    """
    audio = read_wav(path)
    size = max(1, int(audio.sample_rate * block_seconds))
    shares: list[float] = []
    blocks = 0
    for start in range(0, len(audio.samples) - size + 1, size):
        block = audio.samples[start : start + size]
        blocks += 1
        rms = math.sqrt(sum(x * x for x in block) / size)
        if rms >= silence_rms:
            shares.append(tone_share(block, audio.sample_rate, freq_hz))
    shares.sort()
    median = shares[len(shares) // 2] if shares else 0.0
    return ToneReport(
        freq_hz=freq_hz,
        seconds=audio.seconds,
        blocks=blocks,
        loud_blocks=len(shares),
        median_share=median,
        best_share=shares[-1] if shares else 0.0,
    )


# --------------------------------------------------------------------------------------------
# Processes


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group we created for ``proc`` (start_new_session), else the process."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _emergency_stop(proc: subprocess.Popen[bytes]) -> None:
    """At interpreter exit (a test run that crashed before close()): leave no process behind."""
    _kill_group(proc)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2.0)


def _stop_process(
    proc: subprocess.Popen[bytes],
    *,
    grace: float,
    first_term_grace: float = 1.0,
    second_term_grace: float = 3.0,
) -> int | None:
    """Wait ``grace``, SIGTERM, wait, a second SIGTERM, wait, then SIGKILL the group.

    baresip: ``quit`` or the first SIGTERM unregisters, which hangs ~30 s when the registrar
    is gone; the second SIGTERM forces the exit. Returns the exit code (None if unkillable).
    """
    steps = (
        (None, grace),
        (signal.SIGTERM, first_term_grace),
        (signal.SIGTERM, second_term_grace),
    )
    for sig, wait in steps:
        if sig is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    _kill_group(proc)
    try:
        return proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        return None


# --------------------------------------------------------------------------------------------
# The phone


@dataclass(frozen=True)
class Event:
    """One ctrl_tcp event, e.g. ``type="CALL_ESTABLISHED"``, ``data["peeruri"]``."""

    type: str
    data: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)

    @property
    def call_id(self) -> str | None:
        value = self.data.get("id")
        return value if isinstance(value, str) else None

    @property
    def peer_uri(self) -> str | None:
        value = self.data.get("peeruri")
        return value if isinstance(value, str) else None


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class Phone:
    """One headless baresip softphone, controlled over ctrl_tcp.

    ``Phone(...)`` writes the config, starts baresip and connects; use it as a context manager
    (or call :meth:`close`) so the process always ends::

        with Phone(tmp / "a", "1001", "pw", "lab.test", "127.0.0.1", 5060, 22000, (22010, 22029),
                   ctrl_port=22002) as phone:
            phone.wait_registered(10)
            phone.dial("sip:1002@lab.test")
            phone.wait_event("CALL_ESTABLISHED", 10)

    Audio source: ``audio_wav`` (played by ``aufile``; the call hangs up when it ends), else a
    sine of ``tone_hz`` (``ausine``), else an idle ``aubridge`` source (sends little or no
    RTP). ``record=True`` loads ``sndfile``; :meth:`recordings` lists what the phone heard.

    ``host`` is the address SIP and RTP use (loopback by default; a namespace's own address
    in the NAT lab); ``ctrl_tcp`` always listens on 127.0.0.1 (of the phone's namespace).

    With ``auto_answer=True`` baresip 1.0.0 emits no ``CALL_INCOMING``: wait for
    ``CALL_ESTABLISHED`` instead.
    """

    def __init__(
        self,
        workdir: Path | str,
        user: str,
        password: str,
        domain: str,
        registrar_host: str,
        registrar_port: int,
        sip_port: int,
        rtp_port_range: tuple[int, int],
        auto_answer: bool = False,
        audio_wav: Path | str | None = None,
        *,
        ctrl_port: int | None = None,
        tone_hz: int | None = None,
        record: bool = False,
        regint: int = 60,
        display_name: str | None = None,
        extra_config: Sequence[str] = (),
        start_timeout: float = 10.0,
        baresip_bin: str = BARESIP_BIN,
        host: str = LOOPBACK,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.user = user
        self.password = password
        self.domain = domain
        self.aor = f"sip:{user}@{domain}"
        self.registrar_host = registrar_host
        self.registrar_port = registrar_port
        self.host = host
        self.sip_port = sip_port
        self.rtp_port_range = rtp_port_range
        self.auto_answer = auto_answer
        self.audio_wav = Path(audio_wav).resolve() if audio_wav is not None else None
        self.ctrl_port = ctrl_port if ctrl_port is not None else free_port_block(1, udp=False)
        self.tone_hz = tone_hz
        self.regint = regint
        self.display_name = display_name
        self.extra_config = tuple(extra_config)
        self.config_dir = self.workdir / "baresip"
        self.snd_path: Path | None = self.workdir / "recordings" if record else None
        self.log_path = self.workdir / "baresip.log"

        self._lock = threading.Condition()
        self._events: list[Event] = []
        self._taken: set[int] = set()  # indexes of events wait_event already returned
        self._responses: dict[str, dict[str, Any]] = {}
        self._tokens = itertools.count(1)
        self._reader_error: BaseException | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: io.FileIO | None = None
        self._closed = False
        self._quit_sent = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.exit_code: int | None = None

        self._write_config()
        try:
            self._start(baresip_bin, start_timeout)
        except BaseException:
            self.close(quit_timeout=0.0)
            raise

    # -- setup ---------------------------------------------------------------------------

    def _audio_source_lines(self) -> list[str]:
        if self.audio_wav is not None:
            with wave.open(str(self.audio_wav), "rb") as wav:
                if wav.getsampwidth() != 2:
                    raise ValueError(f"{self.audio_wav}: aufile needs 16-bit PCM")
                rate, channels = wav.getframerate(), wav.getnchannels()
            return [
                "module\t\t\taufile.so",
                f"audio_source\t\taufile,{self.audio_wav}",
                f"ausrc_srate\t\t{rate}",
                f"ausrc_channels\t\t{channels}",
            ]
        if self.tone_hz is not None:
            return [
                "module\t\t\tausine.so",
                f"audio_source\t\tausine,{int(self.tone_hz)}",
                "ausrc_srate\t\t48000",
                "ausrc_channels\t\t2",
            ]
        # aubridge as a source with no matching player: silence.
        return [f"audio_source\t\taubridge,silence-{self.user}-{self.sip_port}"]

    def _write_config(self) -> None:
        for label, value in (("user", self.user), ("password", self.password)):
            if any(ch in value for ch in ';<>"\r\n') or not value:
                raise ValueError(f"{label} {value!r} cannot go into a baresip account line")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        low, high = self.rtp_port_range
        if high - low < 3:
            raise ValueError("rtp_port_range needs at least 4 ports (RTP and RTCP pairs)")
        null_player = f"aubridge,null-{self.user}-{self.sip_port}"
        lines = [
            "# written by sipbench.baresip.Phone",
            "poll_method\t\tepoll",
            f"module_path\t\t{MODULE_PATH}",
            f"sip_listen\t\t{self.host}:{self.sip_port}",
            f"net_interface\t\t{self.host}",
            # Keep any DNS query baresip might make on loopback.
            f"dns_server\t\t{LOOPBACK}:53",
            f"rtp_ports\t\t{low}-{high}",
            "rtcp_mux\t\tno",
            "rtp_timeout\t\t0",
            "call_local_timeout\t60",
            "call_max_calls\t\t4",
            f"audio_player\t\t{null_player}",
            f"audio_alert\t\t{null_player}",
            "audio_level\t\tno",
            "ausrc_format\t\ts16",
            "auplay_format\t\ts16",
            "auenc_format\t\ts16",
            "audec_format\t\ts16",
            "ringback_disabled\tyes",
            "menu_bell\t\tno",
            "statmode_default\toff",
            "module\t\t\tg711.so",
            "module\t\t\taubridge.so",
            *self._audio_source_lines(),
        ]
        if self.snd_path is not None:
            self.snd_path.mkdir(parents=True, exist_ok=True)
            lines += ["module\t\t\tsndfile.so", f"snd_path\t\t{self.snd_path}"]
        lines += [
            "module_tmp\t\tuuid.so",
            "module_tmp\t\taccount.so",
            "module_app\t\tmenu.so",
            "module_app\t\tctrl_tcp.so",
            f"ctrl_tcp_listen\t\t{LOOPBACK}:{self.ctrl_port}",
            *self.extra_config,
        ]
        (self.config_dir / "config").write_text("\n".join(lines) + "\n")

        name = f'"{self.display_name}" ' if self.display_name else ""
        params = [
            f"auth_pass={self.password}",
            f'outbound="sip:{self.registrar_host}:{self.registrar_port};transport=udp"',
            f"regint={self.regint}",
            "audio_codecs=PCMU",
        ]
        if self.auto_answer:
            params.append("answermode=auto")
        account = f"{name}<sip:{self.user}@{self.domain}>;" + ";".join(params)
        (self.config_dir / "accounts").write_text(account + "\n")
        (self.config_dir / "contacts").write_text("")

    def _start(self, baresip_bin: str, timeout: float) -> None:
        exe = shutil.which(baresip_bin)
        if exe is None:
            raise BaresipError(f"{baresip_bin} not found (apt-get install baresip-core)")
        self._log_file = self.log_path.open("ab", buffering=0)
        self._proc = subprocess.Popen(
            [exe, "-f", str(self.config_dir)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        self._finalizer = weakref.finalize(self, _emergency_stop, self._proc)
        deadline = time.monotonic() + timeout
        last_error: OSError | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BaresipError(
                    f"baresip for {self.aor} exited with {self._proc.returncode} at start\n"
                    + _log_tail(self.log_path)
                )
            try:
                sock = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=1.0)
            except OSError as exc:
                last_error = exc
                # Poll: wait for the process briefly instead of sleeping blindly.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.05)
                continue
            sock.settimeout(None)
            self._sock = sock
            self._reader = threading.Thread(
                target=self._read_loop, name=f"baresip-ctrl-{self.user}", daemon=True
            )
            self._reader.start()
            return
        raise BaresipTimeout(
            f"ctrl_tcp of {self.aor} on port {self.ctrl_port} not reachable in {timeout}s "
            f"({last_error})\n" + _log_tail(self.log_path)
        )

    # -- ctrl_tcp --------------------------------------------------------------------------

    def _read_loop(self) -> None:
        assert self._sock is not None
        buf = b""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    colon = buf.find(b":")
                    if colon < 0:
                        break
                    length = int(buf[:colon])
                    end = colon + 1 + length
                    if len(buf) < end + 1:
                        break
                    if buf[end : end + 1] != b",":
                        raise BaresipError(f"bad netstring from ctrl_tcp: {buf[:80]!r}")
                    self._dispatch(json.loads(buf[colon + 1 : end]))
                    buf = buf[end + 1 :]
        except (OSError, ValueError, BaresipError) as exc:
            if not self._closed:
                self._reader_error = exc
        finally:
            with self._lock:
                self._lock.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        with self._lock:
            if message.get("event"):
                self._events.append(Event(type=str(message.get("type", "")), data=message))
            elif message.get("response"):
                self._responses[str(message.get("token", ""))] = message
            self._lock.notify_all()

    def _check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            code = None if self._proc is None else self._proc.returncode
            raise BaresipError(
                f"baresip for {self.aor} is not running (exit {code})\n" + _log_tail(self.log_path)
            )
        if self._reader_error is not None:
            raise BaresipError(f"ctrl_tcp of {self.aor} failed: {self._reader_error}")

    def command(self, name: str, params: str | None = None, *, timeout: float = 5.0) -> str:
        """Send one ctrl_tcp command, wait for its response, return its ``data`` text."""
        self._check_alive()
        assert self._sock is not None
        token = f"{name}-{next(self._tokens)}"
        message: dict[str, Any] = {"command": name, "token": token}
        if params is not None:
            message["params"] = params
        self._sock.sendall(_netstring(json.dumps(message).encode()))
        deadline = time.monotonic() + timeout
        with self._lock:
            while token not in self._responses:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BaresipTimeout(f"{self.aor}: no response to {name!r} in {timeout}s")
                self._lock.wait(timeout=min(remaining, 0.2))
                if token not in self._responses:
                    self._check_alive()
            response = self._responses.pop(token)
        data = response.get("data")
        text = data if isinstance(data, str) else ""
        if not response.get("ok", False):
            raise BaresipError(f"{self.aor}: {name} {params or ''} failed: {text.strip()}")
        return text

    # -- registration ---------------------------------------------------------------------

    def registration_status(self) -> str:
        """``OK``, ``ERR``, ``zzz`` (not yet) or ``?`` for this phone's AOR, from ``reginfo``."""
        text = _ANSI.sub("", self.command("reginfo"))
        for line in text.splitlines():
            if self.aor in line:
                rest = line.split(self.aor, 1)[1].split()
                return rest[0] if rest else "?"
        return "?"

    def wait_registered(self, timeout: float = 10.0, *, poll: float = 0.1) -> None:
        """Poll ``reginfo`` until the AOR shows ``OK``; raise on ``ERR`` or at the deadline."""
        deadline = time.monotonic() + timeout
        status = "?"
        while True:
            status = self.registration_status()
            if status == "OK":
                return
            if status == "ERR":
                raise BaresipError(f"{self.aor}: registration failed\n{_log_tail(self.log_path)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BaresipTimeout(
                    f"{self.aor}: not registered in {timeout}s (status {status!r})\n"
                    + _log_tail(self.log_path)
                )
            # Wake early on a REGISTER_OK/REGISTER_FAIL event, else poll again.
            with self._lock:
                seen = len(self._events)
                self._lock.wait_for(
                    functools.partial(self._has_event_since, seen, "REGISTER_"),
                    timeout=min(poll, remaining),
                )

    def _has_event_since(self, start: int, prefix: str) -> bool:
        return any(e.type.startswith(prefix) for e in self._events[start:])

    # -- calls ----------------------------------------------------------------------------

    def dial(self, uri: str) -> str:
        """Start a call (``sip:1002@domain`` or just ``1002``)."""
        return self.command("dial", uri)

    def accept(self) -> str:
        """Answer the ringing incoming call."""
        return self.command("accept")

    def hangup(self) -> str:
        """Hang up the current call."""
        return self.command("hangup")

    @property
    def events(self) -> list[Event]:
        """Every event received so far (consumed or not)."""
        with self._lock:
            return list(self._events)

    def _find_event(self, event_type: str, call_id: str | None) -> int | None:
        for index, event in enumerate(self._events):
            if (
                index not in self._taken
                and event.type == event_type
                and (call_id is None or event.call_id == call_id)
            ):
                return index
        return None

    def wait_event(
        self, event_type: str, timeout: float = 10.0, *, call_id: str | None = None
    ) -> Event:
        """Return the oldest not-yet-returned event of ``event_type``, waiting up to ``timeout``.

        Events that arrived before the call count: nothing is lost between a command and its
        wait. Each event is returned once. ``call_id`` (an event's ``id``) picks one call's
        events when several calls happen; :meth:`discard_events` forgets older ones.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                index = self._find_event(event_type, call_id)
                if index is not None:
                    self._taken.add(index)
                    return self._events[index]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = ", ".join(e.type for e in self._events) or "none"
                    raise BaresipTimeout(
                        f"{self.aor}: no {event_type} in {timeout}s (events: {seen})\n"
                        + _log_tail(self.log_path)
                    )
                # If baresip died, queued events were already searched above: fail fast.
                if self._proc is not None and self._proc.poll() is not None:
                    raise BaresipError(
                        f"{self.aor}: baresip exited while waiting for {event_type}\n"
                        + _log_tail(self.log_path)
                    )
                self._lock.wait(timeout=min(remaining, 0.2))

    def discard_events(self) -> None:
        """Mark every event received so far as seen (wait_event will not return them)."""
        with self._lock:
            self._taken.update(range(len(self._events)))

    # -- recordings -------------------------------------------------------------------------

    def recordings(self, kind: str = "dec") -> list[Path]:
        """sndfile dumps, oldest first: ``dec`` = what this phone heard, ``enc`` = what it sent."""
        if self.snd_path is None:
            raise BaresipError(f"{self.aor} was started without record=True")
        return sorted(self.snd_path.glob(f"dump-*-{kind}.wav"), key=lambda p: p.stat().st_mtime)

    def wait_audio(self, seconds: float, kind: str = "dec", timeout: float = 10.0) -> Path:
        """Wait until the current call's dump holds ``seconds`` of audio (by file size).

        sndfile writes 16-bit samples as they arrive, so the size grows during the call even
        though the header is only finalised at the end. Use this to keep a call up "long
        enough" without a fixed sleep. Assumes 8 kHz mono (PCMU's decoded format).
        """
        wanted = 44 + int(seconds * 8000 * 2)
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            found = self.recordings(kind)
            if found and found[-1].stat().st_size >= wanted:
                return found[-1]
            if time.monotonic() >= deadline:
                size = found[-1].stat().st_size if found else 0
                raise BaresipTimeout(
                    f"{self.aor}: {kind} dump has {size} bytes, not {wanted}, after {timeout}s"
                )
            with self._lock:
                self._lock.wait(timeout=0.05)

    def wait_recording(self, kind: str = "dec", timeout: float = 5.0) -> Path:
        """The newest complete dump (header finalised: sndfile does that when the call ends)."""
        deadline = time.monotonic() + timeout
        while True:
            for path in reversed(self.recordings(kind)):
                with (
                    contextlib.suppress(OSError, EOFError, wave.Error),
                    wave.open(str(path), "rb") as wav,
                ):
                    if wav.getnframes() > 0:
                        return path
            if time.monotonic() >= deadline:
                raise BaresipTimeout(f"{self.aor}: no complete {kind} recording in {timeout}s")
            with self._lock:
                self._lock.wait(timeout=0.05)

    # -- shutdown ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def request_quit(self) -> None:
        """Send ``quit`` without waiting (baresip unregisters, then exits). Sent at most once."""
        if self._quit_sent or not self.running or self._sock is None:
            return
        self._quit_sent = True
        token = f"quit-{next(self._tokens)}"
        with contextlib.suppress(OSError):
            self._sock.sendall(_netstring(json.dumps({"command": "quit", "token": token}).encode()))

    def close(self, *, quit_timeout: float = 3.0) -> int | None:
        """``quit``, then SIGTERM twice, then SIGKILL, each after a deadline. Idempotent.

        With the registrar up, ``quit`` ends baresip in well under a second; with it gone the
        un-REGISTER hangs, and the second SIGTERM ends it (about ``quit_timeout`` + 1 s).
        """
        if self._closed:
            return self.exit_code
        proc = self._proc
        if quit_timeout > 0:
            self.request_quit()
        self._closed = True
        if proc is not None:
            self.exit_code = _stop_process(proc, grace=quit_timeout)
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        if self._log_file is not None:
            self._log_file.close()
        return self.exit_code

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Phone {self.aor} sip={self.sip_port} ctrl={self.ctrl_port}>"


# --------------------------------------------------------------------------------------------
# A stand-in registrar: Kamailio with bench/kamailio/baresip_lab.cfg


def sip_options_ping(host: str, port: int, *, timeout: float = 1.0) -> int | None:
    """Send one SIP OPTIONS over UDP; return the response status code, or None on silence."""
    branch = "z9hG4bK" + uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local_port = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@{LOOPBACK}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.settimeout(timeout)
        sock.sendto(request, (host, port))
        try:
            data, _ = sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
    match = re.match(rb"SIP/2\.0 (\d{3})", data)
    return int(match.group(1)) if match else None


class KamailioLab:
    """Kamailio as a loopback registrar/proxy, for baresip tests until the edge exists.

    Runs ``kamailio -DD -E`` in the foreground with the lab config, logs to
    ``workdir/kamailio.log``, and is ready when it answers OPTIONS.
    """

    def __init__(
        self,
        config: Path | str,
        workdir: Path | str,
        port: int | None = None,
        *,
        children: int = 1,
        start_timeout: float = 10.0,
        kamailio_bin: str = KAMAILIO_BIN,
    ) -> None:
        self.config = Path(config).resolve()
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = port if port is not None else free_port_block(1, tcp=False)
        self.log_path = self.workdir / "kamailio.log"
        exe = shutil.which(kamailio_bin) or shutil.which(f"/usr/sbin/{kamailio_bin}")
        if exe is None:
            raise BaresipError(f"{kamailio_bin} not found (apt-get install kamailio)")
        runtime = self.workdir / "run"
        runtime.mkdir(exist_ok=True)
        self._log_file = self.log_path.open("ab", buffering=0)
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [
                exe,
                "-DD",
                "-E",
                "-f",
                str(self.config),
                "-A",
                f"LAB_LISTEN=udp:{self.host}:{self.port}",
                "-n",
                str(children),
                "-Y",
                str(runtime),
                "-m",
                "32",
                "-M",
                "4",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        self._finalizer = weakref.finalize(self, _emergency_stop, self._proc)
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BaresipError(
                    f"kamailio exited with {self._proc.returncode}\n" + _log_tail(self.log_path)
                )
            if sip_options_ping(self.host, self.port, timeout=0.2) == 200:
                return
        raise BaresipTimeout(
            f"kamailio not answering OPTIONS in {timeout}s\n" + _log_tail(self.log_path)
        )

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.log_path, lines)

    def close(self) -> int | None:
        code = None
        if self._proc is not None:
            code = _stop_process(self._proc, grace=0.0)
            self._proc = None
        self._finalizer.detach()
        if not self._log_file.closed:
            self._log_file.close()
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def close_all(phones: Sequence[Phone], *, quit_timeout: float = 3.0) -> None:
    """Close several phones at once (in threads), so slow shutdowns overlap."""
    for phone in phones:
        phone.request_quit()
    threads = [
        threading.Thread(target=phone.close, kwargs={"quit_timeout": quit_timeout})
        for phone in phones
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


PhoneFactory = Callable[..., Phone]


@contextlib.contextmanager
def phones_on(
    folder: Path,
    passwords: Mapping[str, str],
    domain: str,
    registrar_host: str,
    registrar_port: int,
    *,
    count: int,
) -> Iterator[PhoneFactory]:
    """Yield ``factory(user, *, password=None, **options)`` starting phones of ``domain``
    registered at the registrar, on free loopback ports (``count`` at most); on exit
    every phone is quit and must have exited cleanly (0), while the registrar is up."""
    plan = iter(allocate_phone_ports(count))
    started: list[Phone] = []

    def factory(user: str, *, password: str | None = None, **options: Any) -> Phone:
        ports = next(plan)
        phone = Phone(
            folder / f"phone-{user}",
            user,
            passwords[user] if password is None else password,
            domain,
            registrar_host,
            registrar_port,
            ports.sip_port,
            ports.rtp_port_range,
            ctrl_port=ports.ctrl_port,
            **options,
        )
        started.append(phone)
        return phone

    try:
        yield factory
    finally:
        close_all(started)
    for phone in started:
        assert phone.exit_code == 0, f"{phone} exited with {phone.exit_code}"


def iter_events(phones: Sequence[Phone]) -> Iterator[tuple[Phone, Event]]:
    """Every event every phone has seen, for a failure message."""
    for phone in phones:
        for event in phone.events:
            yield phone, event


__all__ = [
    "BaresipError",
    "BaresipTimeout",
    "Event",
    "KamailioLab",
    "Phone",
    "PhonePorts",
    "ToneReport",
    "WavAudio",
    "allocate_phone_ports",
    "analyse_tone",
    "close_all",
    "free_port_block",
    "goertzel_power",
    "iter_events",
    "read_wav",
    "sip_options_ping",
    "tone_share",
    "write_tone_wav",
]
