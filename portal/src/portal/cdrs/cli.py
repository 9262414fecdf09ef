"""``python -m portal.cdrs export``: a tenant's CDRs for a time window, as CSV.

    python -m portal.cdrs export --store URL --tenant T --since 2026-11-01 \\
        --until 2026-12-01 [--out FILE|-]

``--store`` is ``postgresql://...`` or ``sqlite:///PATH`` (:mod:`portal.stores`);
``--since`` and ``--until`` are UTC days or RFC 3339 times, ``--until`` exclusive
(:mod:`portal.cdrs.window`); ``--out`` is a file, or ``-`` (the default) for standard
output. The columns are :data:`portal.cdrs.table.HEADER`; a window without CDRs gives the
header alone. ``cloudpbx cdrs export ...`` runs this command.

Exit status: 0 when written; 2 for bad input (a bad option or date, ``--until`` not after
``--since``, a store URL that cannot be opened or read, an unknown tenant), with one line
on standard error and nothing written; 1 when the store or the output fails part way (a
file given with ``--out`` is then left untouched: rows go to a temporary file, readable by
its owner only, renamed at the end; a reader of standard output that goes away, as
``| head`` does, ends the export quietly).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from contracts.billing.store import UnknownTenant
from portal.cdrs.export import CdrSource, check_tenant, export_csv
from portal.cdrs.window import Window, WindowError
from portal.stores import STORE_ERRORS, StoreUrlError, open_billing_store, shown

PROG = "python -m portal.cdrs"


class UsageError(Exception):
    """Bad command-line input: exit status 2 with the message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a tenant's CDRs for a window as CSV")
    export.add_argument("--store", required=True, help="postgresql://... or sqlite:///PATH")
    export.add_argument("--tenant", required=True, help="the tenant whose CDRs to export")
    export.add_argument(
        "--since", required=True, help="first UTC day (2026-11-01) or RFC 3339 time"
    )
    export.add_argument(
        "--until", required=True, help="UTC day or RFC 3339 time after the last (exclusive)"
    )
    export.add_argument("--out", default="-", help="the CSV file to write; - (default): stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        window = Window.parse(args.since, args.until)
        if args.out != "-" and not Path(args.out).parent.is_dir():
            raise UsageError(f"--out {args.out}: no such directory")
        return asyncio.run(_export(args.store, args.tenant, window, args.out))
    except (UsageError, WindowError, StoreUrlError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2


async def _export(url: str, tenant: str, window: Window, out: str) -> int:
    store = await open_billing_store(url)
    try:
        try:
            await check_tenant(store, tenant)
        except UnknownTenant:
            raise UsageError(f"unknown tenant {tenant!r} in {shown(url)}") from None
        except STORE_ERRORS as error:
            raise StoreUrlError(f"cannot read billing data from {shown(url)}: {error}") from None
        try:
            rows = await write_export(store, tenant, window, out)
        except BrokenPipeError:  # the reader went away (| head): nothing left to tell it
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except STORE_ERRORS as error:
            print(f"{PROG}: the export failed part way: {error}", file=sys.stderr)
            return 1
    finally:
        await store.close()
    if out != "-":
        print(f"{PROG}: {rows} CDRs of {tenant} written to {out}", file=sys.stderr)
    return 0


async def write_export(store: CdrSource, tenant: str, window: Window, out: str) -> int:
    """The CSV to standard output (``out`` is ``-``) or to the file ``out``, which is
    replaced only once the whole export is written; returns the rows written."""
    if out == "-":
        with _stdout() as stdout:
            return await export_csv(store, tenant, window, stdout)
    target = Path(out)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with open(descriptor, "w", encoding="utf-8", newline="") as stream:
            rows = await export_csv(store, tenant, window, stream)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return rows


@contextlib.contextmanager
def _stdout() -> Iterator[TextIO]:
    """Standard output as UTF-8 text that leaves CSV's CRLF line ends alone."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # replaced by a text-only stream (a test's capture)
        yield sys.stdout
        return
    sys.stdout.flush()
    stream = io.TextIOWrapper(buffer, encoding="utf-8", newline="")
    try:
        yield stream
        stream.flush()
    finally:
        stream.detach()
