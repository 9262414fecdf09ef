"""Hatch build hook: compile the SIP edge (``sipedge``, its SIP core included) and the media
relay (``mediarelay``) with mypyc.

Off by default (``enable-by-default = false`` in pyproject.toml): a wheel is compiled with
``HATCH_BUILD_HOOKS_ENABLE=1 pip wheel .``. Editable installs are never compiled, so no
extension module lands next to a source file and shadows later edits of it.

Not the hatch-mypyc plugin: it builds into the first of the wheel's sorted source folders
(``cloudpbx/src`` here, of six), where ``sipedge`` does not exist.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: The packages compiled: (source root, package folder), every module in them but those below.
#: Not ``contracts``: its snapshot types check their fields' types at run time to name a bad
#: field in a manifest or a published snapshot; compiled, the constructor itself refuses
#: the value with a bare TypeError first (tests/contracts found 14 such cases).
COMPILED = (("sipedge/src", "sipedge"), ("mediarelay/src", "mediarelay"))
#: Left interpreted: package markers; the command line; the logging set-up; and the manifest
#: loader, whose ``raise ... from None`` must hide the YAML error that quotes a line of the
#: file (a password, maybe): compiled, mypyc keeps that context on the new exception.
NOT_COMPILED = {
    "sipedge/__main__.py",
    "sipedge/cli.py",
    "sipedge/logs.py",
    "sipedge/tenants.py",
    "mediarelay/__main__.py",
    "mediarelay/cli.py",
    # STUN is not on the per-packet path, and mypyc cannot build its generic, slotted
    # attribute types (AttributeType[T]): "attribute '__dict__' of 'type' objects is not
    # writable" on import.
    "mediarelay/stun/attributes.py",
    "mediarelay/stun/binding.py",
    "mediarelay/stun/errors.py",
    "mediarelay/stun/message.py",
}


class MypycBuildHook(BuildHookInterface[BuilderConfig]):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        from mypyc.build import mypycify
        from setuptools import Distribution

        out = Path(self.root, "build", "mypyc")
        shutil.rmtree(out, ignore_errors=True)
        paths = sorted(
            str(path)
            for root, package in COMPILED
            for path in Path(self.root, root, package).rglob("*.py")
            if path.relative_to(Path(self.root, root)).as_posix() not in NOT_COMPILED
            and path.name != "__init__.py"
        )
        # A bare Distribution: setup() would read pyproject.toml and discover packages.
        dist = Distribution(
            {
                "name": "cloudpbx-mypyc",
                "ext_modules": mypycify(paths, opt_level="3", target_dir=str(out / "c")),
            }
        )
        build_ext = dist.get_command_obj("build_ext")
        build_ext.build_lib = str(out / "lib")
        build_ext.build_temp = str(out / "tmp")
        dist.run_command("build_ext")
        for built in (out / "lib").rglob("*.so"):
            build_data["force_include"][str(built)] = built.relative_to(out / "lib").as_posix()
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
