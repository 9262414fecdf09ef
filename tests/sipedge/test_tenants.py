"""The edge's tenant directory and the manifest folder that fills it in ``cloudpbx dev``."""

from __future__ import annotations

import base64
import hashlib
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from contracts.snapshot import Extension, Limits, MediaPolicy, TenantSnapshot
from sipedge.tenants import (
    ManifestFolderError,
    TenantConflict,
    TenantDirectory,
    demo_manifests,
    load_manifest_folder,
)

DEMO_REALM = "demo.cloudpbx.test"
DEMO_USERS = [
    ("1001", "Alice", "alice-1001-demo"),
    ("1002", "Bob", "bob-1002-demo"),
    ("1003", "Carol", "carol-1003-demo"),
]


def ha1(algorithm: str, number: str, realm: str, password: str) -> str:
    return hashlib.new(algorithm, f"{number}:{realm}:{password}".encode()).hexdigest()


# --- the shipped demo tenant ---------------------------------------------------------------


def test_demo_manifest_compiles_to_the_demo_tenant() -> None:
    assert load_manifest_folder(demo_manifests()) == [
        TenantSnapshot(
            name="demo",
            version=1,
            domain=DEMO_REALM,
            aliases=("127.0.0.1", "localhost"),
            extensions=tuple(
                Extension(
                    number=number,
                    display_name=name,
                    ha1_md5=ha1("md5", number, DEMO_REALM, password),
                    ha1_sha256=ha1("sha256", number, DEMO_REALM, password),
                    max_contacts=5,
                )
                for number, name, password in DEMO_USERS
            ),
            limits=Limits(),
            media=MediaPolicy(anchor=True),
            enabled=True,
        )
    ]


def test_demo_manifest_says_it_is_demo_only() -> None:
    text = (demo_manifests() / "demo.yaml").read_text(encoding="utf-8")
    assert "DEMO ONLY" in text
    for number, _, password in DEMO_USERS:
        assert f"user {number}, password {password}" in text


def test_demo_ha1_of_alice_by_hand() -> None:
    (demo,) = load_manifest_folder(demo_manifests())
    alice = demo.extension("1001")
    assert alice is not None
    assert alice.ha1_md5 == hashlib.md5(b"1001:demo.cloudpbx.test:alice-1001-demo").hexdigest()
    assert "alice-1001-demo" not in repr(demo) + demo.to_json()


# --- reading a folder ----------------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


TENANT = textwrap.dedent("""
    apiVersion: cloudpbx.io/v1
    kind: Tenant
    metadata: {{name: {name}, generation: 3}}
    spec:
      domain: {domain}
      extensions:
        - number: "200"
          passwordSecretRef: {{name: {secret}, key: pw}}
""")


def tenant(name: str, domain: str, secret: str = "shared") -> str:
    return TENANT.format(name=name, domain=domain, secret=secret)


def test_folder_with_secrets_in_other_files_data_and_other_kinds(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"from-data").decode()
    write(
        tmp_path,
        "a-tenants.yaml",
        tenant("beta", "beta.example") + "---\n" + tenant("alpha", "alpha.example", "b64"),
    )
    write(tmp_path, "b-secrets.yml", f"""
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: shared}}
        data: {{pw: {encoded}}}
        stringData: {{pw: from-string-data}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: b64}}
        data: {{pw: {encoded}}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: later}}
    """)  # fmt: skip
    write(tmp_path, "notes.txt", "not: [yaml")
    write(tmp_path, ".#a-tenants.yaml", "not: [yaml")
    (tmp_path / "sub.yaml").mkdir()
    beta, alpha = load_manifest_folder(tmp_path)
    assert (beta.name, beta.version, alpha.name) == ("beta", 3, "alpha")
    assert beta.extensions[0].ha1_md5 == ha1("md5", "200", "beta.example", "from-string-data")
    assert alpha.extensions[0].ha1_md5 == ha1("md5", "200", "alpha.example", "from-data")


TRUNK = textwrap.dedent("""
    apiVersion: cloudpbx.io/v1
    kind: Trunk
    metadata: {{name: {name}}}
    spec:
      tenant: {tenant}
      host: 192.0.2.10
      username: "4930555"
      password: {password}
      dids: [{did}]
""")
PLAN = textwrap.dedent("""
    apiVersion: cloudpbx.io/v1
    kind: DialPlan
    metadata: {{name: out}}
    spec:
      tenant: t
      rules:
        - {{name: pstn, match: {{prefix: "0"}}, route: {{trunks: [{trunk}]}}}}
""")


def trunk_doc(
    name: str = "carrier-a",
    tenant: str = "t",
    password: str = "{secretRef: {name: shared, key: pw}}",
    did: str = '"+4930555100"',
) -> str:
    return TRUNK.format(name=name, tenant=tenant, password=password, did=did)


def test_trunks_and_plans_join_their_tenant_with_passwords(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", SECRET + "---\n" + tenant("t", "t.example"))
    write(tmp_path, "b.yaml", trunk_doc() + "---\n" + trunk_doc(
        "carrier-b", password="{file: carrier-b.password}", did='"+4930555200"'
    ) + "---\n" + PLAN.format(trunk="carrier-b"))  # fmt: skip
    (tmp_path / "carrier-b.password").write_text("from-a-file\n", encoding="utf-8")
    (snapshot,) = load_manifest_folder(tmp_path)
    assert [trunk.name for trunk in snapshot.trunks] == ["carrier-a", "carrier-b"]
    assert snapshot.trunk_password("carrier-a") == "hunter2-secret"
    assert snapshot.trunk_password("carrier-b") == "from-a-file"
    routed = snapshot.dial_plans.route("0301234")
    assert routed is not None
    assert (routed.plan, routed.rule) == ("out", "pstn")
    assert snapshot.trunk_of_did("4930555200") is snapshot.trunk("carrier-b")
    # what the snapshot keeps travels as JSON and comes back equal
    assert TenantSnapshot.from_json(snapshot.to_json()) == snapshot


# (the trunk and plan file's contents, document, path named, message)
BESIDE_FAULTS: list[tuple[str, int, str, str]] = [
    (trunk_doc(tenant="nobody"), 1, "spec.tenant", "Tenant 'nobody' is not defined"),
    (trunk_doc().replace("host: 192.0.2.10", "host: 'bad host'"), 1, "Trunk carrier-a spec.host",
     "must be a host name or IPv4 address, not 'bad host'"),
    (trunk_doc(password="{secretRef: {name: other, key: pw}}"), 1,
     "spec.password.secretRef.name", "Secret 'other' not found"),
    (trunk_doc(password="{secretRef: {name: shared, key: nope}}"), 1,
     "spec.password.secretRef.key", "Secret 'shared' has no key 'nope'"),
    (trunk_doc(password="{file: missing.password}"), 1, "spec.password.file",
     "no file 'missing.password' beside the manifests"),
    (trunk_doc() + "---\n" + trunk_doc(), 2, "metadata.name", "Trunk 'carrier-a' is defined twice"),
    (trunk_doc() + "---\n" + PLAN.format(trunk="carrier-x"), 2, "",
     "DialPlan out, rule 'pstn' route.trunks: no such trunk 'carrier-x' (the tenant's: "
     "['carrier-a'])"),
    (trunk_doc() + "---\n" + trunk_doc("carrier-b"), 2, "",
     "Trunk carrier-b spec.dids: +4930555100 is already routed by trunk carrier-a"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "document", "path", "message"), BESIDE_FAULTS)
def test_trunk_and_plan_faults_name_file_document_and_field(
    tmp_path: Path, text: str, document: int, path: str, message: str
) -> None:
    write(tmp_path, "a.yaml", SECRET + "---\n" + tenant("t", "t.example"))
    write(tmp_path, "b.yaml", text)
    with pytest.raises(ManifestFolderError) as caught:
        load_manifest_folder(tmp_path)
    error = caught.value
    assert (error.file, error.document, error.path, error.message) == (
        str(tmp_path / "b.yaml"), document, path, message,
    )  # fmt: skip
    assert "hunter2" not in str(error)


def test_an_empty_folder_has_no_tenants(tmp_path: Path) -> None:
    assert load_manifest_folder(str(tmp_path)) == []


SECRET = textwrap.dedent("""
    apiVersion: v1
    kind: Secret
    metadata: {name: shared}
    stringData: {pw: hunter2-secret}
""")

# (file contents, document, path named, message)
FOLDER_FAULTS: list[tuple[str, int, str, str]] = [
    ("- just\n- a list\n", 1, "", "must be a mapping"),
    (SECRET + "---\n" + tenant("Bad Name", "x.example"), 2, "metadata.name",
     "must be a lower-case DNS name, not 'Bad Name'"),
    (tenant("t", "x.example"), 1, "spec.extensions[0].passwordSecretRef.name",
     "Secret 'shared' not found"),
    (SECRET.replace("hunter2-secret", "12345678"), 1, "stringData.pw",
     "must be a string (quote it)"),
    (SECRET.replace("stringData: {pw: hunter2-secret}", "data: {pw: 'hunter2-secret!'}"), 1,
     "data.pw", "must be base64 of UTF-8 text"),
    (SECRET.replace("metadata: {name: shared}", "metadata: {}"), 1, "metadata.name",
     "must be a non-empty string"),
    (SECRET + "---\n" + SECRET, 2, "metadata.name", "Secret 'shared' is defined twice"),
    (SECRET + "---\n" + tenant("t", "x.example") + "---\n" + tenant("t", "y.example"), 3,
     "metadata.name", "Tenant 't' is also defined in {file}"),
    (SECRET + "---\n" + tenant("t", "x.example") + "---\n" + tenant("u", "X.example"), 3,
     "spec.domain", "host 'x.example' is also served by {file}"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "document", "path", "message"), FOLDER_FAULTS)
def test_folder_faults_name_file_document_and_field(
    tmp_path: Path, text: str, document: int, path: str, message: str
) -> None:
    write(tmp_path, "tenants.yaml", text)
    file = str(tmp_path / "tenants.yaml")
    with pytest.raises(ManifestFolderError) as caught:
        load_manifest_folder(tmp_path)
    error = caught.value
    expected = message.format(file=file)
    assert (error.file, error.document, error.path, error.message) == (
        file, document, path, expected,
    )  # fmt: skip
    assert str(error).startswith(f"{file} (document {document}): ")
    assert "hunter2" not in str(error)


def test_yaml_syntax_errors_give_the_place_but_not_the_line(tmp_path: Path) -> None:
    write(tmp_path, "broken.yaml", SECRET.replace("{pw: hunter2-secret}", "{pw: hunter2-secret"))
    with pytest.raises(ManifestFolderError) as caught:
        load_manifest_folder(tmp_path)
    assert caught.value.file == str(tmp_path / "broken.yaml")
    assert caught.value.message.startswith("line 5, column 1: not valid YAML (")
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_files_that_are_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"kind: Secret\nstringData: {pw: caf\xe9}\n")
    with pytest.raises(ManifestFolderError, match=r"latin1.yaml: is not UTF-8 text$"):
        load_manifest_folder(tmp_path)


def test_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ManifestFolderError, match="is not a folder"):
        load_manifest_folder(tmp_path / "nowhere")


# --- the directory -------------------------------------------------------------------------


def snapshot(name: str, version: int, domain: str, *aliases: str) -> TenantSnapshot:
    return TenantSnapshot(name=name, version=version, domain=domain, aliases=aliases)


DEMO = snapshot("demo", 1, "demo.cloudpbx.test", "127.0.0.1", "localhost", "[::1]")
ACME = snapshot("acme", 4, "sip.acme.example")


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("demo.cloudpbx.test", "demo"),
        ("DEMO.CloudPBX.test", "demo"),
        ("demo.cloudpbx.test.", "demo"),
        ("127.0.0.1", "demo"),
        ("LocalHost", "demo"),
        ("[0::1]", "demo"),
        ("sip.acme.example", "acme"),
        ("Sip.Acme.Example", "acme"),
        ("acme.example", None),
        ("127.0.0.2", None),
        ("", None),
    ],
)
def test_by_host_finds_domain_or_alias_in_any_case(host: str, name: str | None) -> None:
    found = TenantDirectory([DEMO, ACME]).by_host(host)
    assert (found.name if found else None) == name


def test_newer_version_wins_older_and_equal_are_ignored() -> None:
    directory = TenantDirectory([DEMO])
    newer = replace(DEMO, version=2, aliases=("localhost",), enabled=False)
    assert directory.replace(newer) is True
    assert directory.by_host("localhost") is newer
    assert directory.by_host("127.0.0.1") is None  # the dropped alias is gone
    assert directory.replace(DEMO) is False
    assert directory.replace(replace(newer, enabled=True)) is False
    assert directory.by_name("demo") is newer
    assert len(directory) == 1


def test_construction_keeps_the_newest_of_one_tenant() -> None:
    newer = replace(ACME, version=9, domain="pbx.acme.example")
    directory = TenantDirectory([newer, ACME])
    assert len(directory) == 1
    assert directory.by_host("pbx.acme.example") is newer
    assert directory.by_host("sip.acme.example") is None


def test_reload_serves_exactly_the_new_set_whatever_the_versions() -> None:
    directory = TenantDirectory(
        [snapshot("acme", 5, "acme.example"), snapshot("beta", 1, "b.example")]
    )
    edited = snapshot("acme", 1, "new.acme.example")  # a folder edit bumps no version
    directory.reload([edited])
    assert directory.by_name("acme") is edited
    assert directory.by_host("new.acme.example") is edited
    assert directory.by_host("acme.example") is None
    assert directory.by_name("beta") is None


def test_a_reload_with_a_host_conflict_changes_nothing() -> None:
    first = snapshot("acme", 1, "acme.example")
    directory = TenantDirectory([first])
    with pytest.raises(TenantConflict):
        directory.reload([snapshot("x", 1, "same.example"), snapshot("y", 1, "same.example")])
    assert directory.by_name("acme") is first
    assert len(directory) == 1


def test_remove() -> None:
    directory = TenantDirectory([DEMO, ACME])
    assert directory.remove("demo") is DEMO
    assert directory.remove("demo") is None
    assert directory.by_host("localhost") is None
    assert (len(directory), list(directory)) == (1, [ACME])
    assert directory.replace(DEMO) is True  # after removal any version is taken


def test_a_host_of_another_tenant_is_refused_and_nothing_changes() -> None:
    directory = TenantDirectory([DEMO, ACME])
    grabby = replace(ACME, version=5, aliases=("localhost",))
    with pytest.raises(
        TenantConflict, match="'localhost' of tenant 'acme' is served by 'demo'"
    ) as caught:
        directory.replace(grabby)
    assert caught.value.owner == "demo"  # the edge hands a deleted (disabled) owner's hosts on
    assert directory.by_name("acme") is ACME
    assert directory.by_host("localhost") is DEMO


def test_an_empty_directory() -> None:
    directory = TenantDirectory()
    assert (len(directory), directory.by_host("localhost"), list(directory)) == (0, None, [])
