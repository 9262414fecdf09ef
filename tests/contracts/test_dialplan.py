"""Dial plans (contracts.dialplan, issue 6.5): patterns, matching, rewriting, routes,
plan order and jumps, and every invalid plan refused with a message naming the rule."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.dialplan import (
    Reject,
    Routed,
    ToExtension,
    ToTrunks,
    ToVoicemail,
    compile_dial_plans,
    compile_pattern,
)
from contracts.manifest import ManifestError

TRUNKS = ("carrier-a", "carrier-b")


def plan(name: str, *rules: dict[str, Any], priority: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"tenant": "acme", "rules": list(rules)}
    if priority is not None:
        spec["priority"] = priority
    return {
        "apiVersion": "cloudpbx.io/v1",
        "kind": "DialPlan",
        "metadata": {"name": name},
        "spec": spec,
    }


def rule(name: str, match: dict[str, Any], route: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"name": name, "match": match, "route": route, **more}


OUT = plan(
    "out",
    rule("emergency", {"prefix": "112"}, {"trunks": ["carrier-a"]}, maxLength=3),
    rule(
        "premium", {"pattern": "_0900X."}, {"reject": {"status": 403, "reason": "Premium Barred"}}
    ),
    rule(
        "national",
        {"pattern": "_0ZXXXXXX."},
        {"trunks": ["carrier-a", "carrier-b"], "noAnswerSeconds": 20},
        strip=1,
        prepend="+49",
    ),
    rule(
        "international",
        {"regex": r"00[1-9]\d{6,14}"},
        {"trunks": ["carrier-b"]},
        strip=2,
        prepend="+",
    ),
    rule("voicemail", {"prefix": "*97"}, {"voicemail": True}, strip=3),
    rule("short", {"pattern": "N[1-3]X"}, {"extension": True}, prepend="2"),
)


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("_2XXX", ["2000", "2999"], ["200", "20000", "3000", "2a00"]),
        ("ZXX", ["100", "999"], ["099", "10"]),
        ("NXX", ["200"], ["100", "199"]),
        ("_0[1-35]X", ["010", "035", "020"], ["040", "00X", "0[1"]),
        ("_00.", ["001", "0049301234"], ["00"]),
        ("_00!", ["00", "001"], ["0"]),
        ("_*97X", ["*971"], ["#971", "*97"]),
        ("+49X.", ["+4930"], ["4930", "+49"]),
        ("[*#]1", ["*1", "#1"], ["11"]),
    ],
)
def test_patterns_in_the_style_of_asterisk_and_minisipserver(
    pattern: str, yes: list[str], no: list[str]
) -> None:
    compiled = compile_pattern(pattern)
    assert [n for n in yes if compiled.fullmatch(n)] == yes
    assert [n for n in no if compiled.fullmatch(n)] == []


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("112", Routed("out", "emergency", "112", ToTrunks(("carrier-a",)))),
        ("1120", None),  # longer than the emergency rule's maxLength, nothing else matches
        ("09001234", Routed("out", "premium", "09001234", Reject(403, "Premium Barred"))),
        ("0301234567", Routed("out", "national", "+49301234567", ToTrunks(TRUNKS, 20))),
        ("0044207946000", Routed("out", "international", "+44207946000", ToTrunks(("carrier-b",)))),
        ("*972001", Routed("out", "voicemail", "2001", ToVoicemail())),
        ("213", Routed("out", "short", "2213", ToExtension())),
        ("2001", None),  # no rule: the edge looks it up among the extensions
    ],
)
def test_the_first_matching_rule_rewrites_and_routes(number: str, expected: Routed | None) -> None:
    plans = compile_dial_plans([OUT], tenant="acme", trunks=TRUNKS)
    assert plans.route(number) == expected


def test_plans_go_by_priority_then_name_and_jump_into_each_other() -> None:
    first = plan(
        "a-first", rule("local", {"prefix": "9"}, {"dialPlan": "strip-nine"}, strip=1), priority=1
    )
    later = plan("b-later", rule("anything", {"pattern": "X."}, {"extension": True}))
    nine = plan(
        "strip-nine",
        rule("national", {"pattern": "0Z."}, {"trunks": ["carrier-a"]}),
        priority=500,
    )
    plans = compile_dial_plans([later, nine, first], tenant="acme", trunks=TRUNKS)
    assert [p.name for p in plans.plans] == ["a-first", "b-later", "strip-nine"]
    assert plans.route("90301234") == Routed(
        "strip-nine", "national", "0301234", ToTrunks(("carrier-a",))
    )
    assert plans.route("91") is None  # jumped: only strip-nine's rules apply, none matches
    assert plans.route("2001") == Routed("b-later", "anything", "2001", ToExtension())


def test_no_plans_route_nothing() -> None:
    assert compile_dial_plans([], tenant="acme", trunks=()).route("2001") is None


def broken(**changes: Any) -> dict[str, Any]:
    base = rule("intl", {"prefix": "00"}, {"trunks": ["carrier-a"]})
    base.update(changes)
    return plan("out", base)


@pytest.mark.parametrize(
    ("manifest", "where", "message"),
    [
        (
            broken(match={"regex": "00(["}),
            "DialPlan out, rule 'intl' match.regex",
            "not a regular expression",
        ),
        (
            broken(match={"pattern": "_00Q"}),
            "DialPlan out, rule 'intl' match.pattern",
            "'Q' is not",
        ),
        (
            broken(match={"pattern": "_0.1"}),
            "DialPlan out, rule 'intl' match.pattern",
            "may only end",
        ),
        (
            broken(match={"pattern": "_0[5-1]"}),
            "DialPlan out, rule 'intl' match.pattern",
            "backwards",
        ),
        (
            broken(match={"pattern": "_0[12"}),
            "DialPlan out, rule 'intl' match.pattern",
            "without ']'",
        ),
        (
            broken(match={"prefix": "00", "regex": "0"}),
            "DialPlan out, rule 'intl' match",
            "exactly one",
        ),
        (broken(match={"prefix": "0a"}), "DialPlan out, rule 'intl' match.prefix", "digits"),
        (
            broken(route={"trunks": ["nobody"]}),
            "DialPlan out, rule 'intl' route.trunks",
            "no such trunk 'nobody'",
        ),
        (
            broken(route={"trunks": []}),
            "DialPlan out, rule 'intl' route.trunks",
            "list of trunk names",
        ),
        (
            broken(route={"trunks": ["carrier-a", "carrier-a"]}),
            "DialPlan out, rule 'intl' route.trunks",
            "twice",
        ),
        (
            broken(route={"trunks": ["carrier-a"], "noAnswerSeconds": 0}),
            "DialPlan out, rule 'intl' route.noAnswerSeconds",
            "1..600",
        ),
        (
            broken(route={"reject": {"status": 200, "reason": "OK"}}),
            "DialPlan out, rule 'intl' route.reject.status",
            "400..699",
        ),
        (
            broken(route={"reject": {"status": 403}}),
            "DialPlan out, rule 'intl' route.reject.reason",
            "reason phrase",
        ),
        (
            broken(route={"extension": True, "voicemail": True}),
            "DialPlan out, rule 'intl' route",
            "exactly one",
        ),
        (
            broken(route={"dialPlan": "elsewhere"}),
            "DialPlan out, rule 'intl' route.dialPlan",
            "no such DialPlan",
        ),
        (
            broken(minLength=5, maxLength=3),
            "DialPlan out, rule 'intl' maxLength",
            "below minLength 5",
        ),
        (broken(strip=-1), "DialPlan out, rule 'intl' strip", ">= 0"),
        (broken(prepend="+49x"), "DialPlan out, rule 'intl' prepend", "digits"),
        (broken(colour="blue"), "DialPlan out, rule 'intl'", "unknown fields ['colour']"),
        (
            plan("out", {"match": {"prefix": "1"}, "route": {"extension": True}}),
            "DialPlan out, rule 1 name",
            "non-empty",
        ),
        (plan("out"), "DialPlan out spec.rules", "non-empty list"),
        (
            plan("Out!", rule("r", {"prefix": "1"}, {"extension": True})),
            "DialPlan metadata.name",
            "DNS label",
        ),
    ],
)
def test_an_invalid_plan_is_refused_naming_the_rule_and_field(
    manifest: dict[str, Any], where: str, message: str
) -> None:
    with pytest.raises(ManifestError) as refused:
        compile_dial_plans([manifest], tenant="acme", trunks=TRUNKS)
    assert refused.value.path == where
    assert message in refused.value.message


def test_plans_that_route_into_each_other_in_a_loop_are_refused() -> None:
    one = plan("one", rule("to-two", {"prefix": "1"}, {"dialPlan": "two"}))
    two = plan("two", rule("to-three", {"prefix": "1"}, {"dialPlan": "three"}))
    three = plan("three", rule("back", {"pattern": "X."}, {"dialPlan": "one"}))
    with pytest.raises(
        ManifestError, match="routes in a loop: one -> two -> three -> one"
    ) as refused:
        compile_dial_plans([one, two, three], tenant="acme", trunks=TRUNKS)
    assert refused.value.path == "DialPlan three, rule 'back' route.dialPlan"
    itself = plan("self", rule("again", {"prefix": "1"}, {"dialPlan": "self"}))
    with pytest.raises(ManifestError, match="self -> self"):
        compile_dial_plans([itself], tenant="acme", trunks=TRUNKS)


def test_a_plan_of_another_tenant_or_twice_the_same_name_is_refused() -> None:
    other = plan("out", rule("r", {"prefix": "1"}, {"extension": True}))
    other["spec"]["tenant"] = "globex"
    with pytest.raises(ManifestError, match="must be 'acme', not 'globex'"):
        compile_dial_plans([other], tenant="acme", trunks=TRUNKS)
    same = plan("out", rule("r", {"prefix": "1"}, {"extension": True}))
    with pytest.raises(ManifestError, match="defined twice"):
        compile_dial_plans([same, same], tenant="acme", trunks=TRUNKS)
    twice = plan(
        "out",
        rule("r", {"prefix": "1"}, {"extension": True}),
        rule("r", {"prefix": "2"}, {"extension": True}),
    )
    with pytest.raises(ManifestError, match="two rules have this name"):
        compile_dial_plans([twice], tenant="acme", trunks=TRUNKS)
