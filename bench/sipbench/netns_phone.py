"""One baresip phone's part of a call, run inside a network namespace of the NAT lab.

baresip's ``ctrl_tcp`` listens on 127.0.0.1 of the phone's namespace, out of reach of a
test in the root namespace; so the test starts this script in the namespace
(``NatLab.popen``) and it drives the phone with :class:`sipbench.baresip.Phone`:

* ``--answer``: register, write ``--ready`` (the caller may dial now), auto-answer the
  call and record it until the caller hangs up.
* ``--dial URI``: register, wait for the callee's ``--ready`` file, dial, hold the call
  ``--seconds`` from CALL_ESTABLISHED, hang up.

Both play ``--wav`` (``aufile``) and record what they hear and send (``sndfile``); the
result — events, call duration, the recordings' paths — goes to ``--out`` as JSON, and
the recordings stay in ``--workdir`` for the test to analyse. Exit 0 when the phone's
part went as planned, 1 with the error in the JSON otherwise.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipbench.baresip import BaresipTimeout, Phone


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--registrar", required=True, help="HOST:PORT of the edge (UDP)")
    parser.add_argument("--host", required=True, help="the phone's own address")
    parser.add_argument("--sip-port", type=int, default=5060)
    parser.add_argument("--rtp-ports", default="40000-40019", help="LOW-HIGH")
    parser.add_argument("--ctrl-port", type=int, default=4444)
    parser.add_argument("--wav", type=Path, required=True, help="what the phone plays")
    parser.add_argument("--ready", type=Path, required=True, help="the callee's ready file")
    parser.add_argument("--out", type=Path, required=True, help="JSON result")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the call lasts")
    parser.add_argument("--timeout", type=float, default=30.0, help="for each wait")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--dial", metavar="URI")
    role.add_argument("--answer", action="store_true")
    return parser


def _wait_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise BaresipTimeout(f"{path} did not appear in {timeout}s")
        time.sleep(0.05)


def _recording(phone: Phone, kind: str) -> str | None:
    """The call's dump of ``kind``, or None if sndfile wrote none (nothing heard)."""
    try:
        return str(phone.wait_recording(kind, timeout=5.0))
    except BaresipTimeout:
        found = phone.recordings(kind)
        return str(found[-1]) if found else None


def _call(phone: Phone, args: argparse.Namespace, result: dict[str, Any]) -> None:
    phone.wait_registered(args.timeout)
    if args.answer:
        args.ready.write_text("registered\n")
        established = phone.wait_event("CALL_ESTABLISHED", args.timeout)
        closed = phone.wait_event("CALL_CLOSED", args.seconds + args.timeout)
    else:
        _wait_file(args.ready, args.timeout)
        phone.dial(args.dial)
        established = phone.wait_event("CALL_ESTABLISHED", args.timeout)
        # Hold the call: a CALL_CLOSED before the time is up is a failure, not a wake-up.
        try:
            early = phone.wait_event("CALL_CLOSED", args.seconds)
        except BaresipTimeout:
            early = None
        if early is not None:
            raise RuntimeError(f"the call closed early: {early.data}")
        phone.hangup()
        closed = phone.wait_event("CALL_CLOSED", args.timeout)
    result["established"] = established.data
    result["closed"] = closed.data
    result["call_seconds"] = closed.received_at - established.received_at
    result["heard"] = _recording(phone, "dec")
    result["sent"] = _recording(phone, "enc")


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"signal {signum}")  # unwinds through Phone's close: baresip ends too


def main() -> int:
    signal.signal(signal.SIGTERM, _terminated)
    args = _parser().parse_args()
    low, high = (int(port) for port in args.rtp_ports.split("-"))
    registrar, port = args.registrar.rsplit(":", 1)
    result: dict[str, Any] = {"ok": False}
    try:
        with Phone(
            args.workdir,
            args.user,
            args.password,
            args.domain,
            registrar,
            int(port),
            args.sip_port,
            (low, high),
            auto_answer=args.answer,
            audio_wav=args.wav,
            ctrl_port=args.ctrl_port,
            record=True,
            host=args.host,
        ) as phone:
            try:
                _call(phone, args, result)
                result["ok"] = True
            finally:
                result["events"] = [event.type for event in phone.events]
        result["exit_code"] = phone.exit_code
    except Exception:  # noqa: BLE001 - reported to the test in the JSON
        result["error"] = traceback.format_exc()
    args.out.write_text(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
