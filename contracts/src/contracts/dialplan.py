"""A tenant's dial plans (issue 6.5): ordered rules that decide where a dialled number
goes, compiled from ``DialPlan`` manifests into plain values the edge matches against.

A rule matches the dialled number by exactly one of

* ``prefix``: the number starts with it (``"00"``);
* ``pattern``: the whole number, in the wildcards miniSipServer and Asterisk use, with or
  without Asterisk's leading ``_``: ``X`` any digit, ``Z`` 1-9, ``N`` 2-9, ``[15-7]`` one
  of a set (ranges allowed), ``.`` one or more of anything and ``!`` zero or more (both
  only last), any other digit or ``*#+`` itself (``_0[1-9]XXXXXXX.``);
* ``regex``: a Python regular expression the whole number must match;

and, when given, only numbers of ``minLength`` to ``maxLength`` characters. A matching
rule rewrites the number (``strip`` leading characters, then ``prepend``) and routes it:
``extension`` (one of the tenant's, by the rewritten number), ``trunks`` (in order, the
next on 408, 5xx or no answer within ``noAnswerSeconds``), ``voicemail``, ``reject``
(``status`` and ``reason``) or ``dialPlan`` (the rewritten number goes on through
another of the tenant's plans). The tenant's plans are tried in ``priority`` order
(then by name); the first matching rule decides. Nothing matches: the edge looks the
number up among the tenant's extensions, then answers 404.

Every problem is found when the plans are compiled and raised as a
:class:`ManifestError` naming the plan, the rule and the field: a bad regex or pattern, a
route to a trunk or plan that does not exist, plans that route into each other in a
loop. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from contracts.resources import DNS_LABEL, ManifestError, count, mapping, named_spec

KIND = "DialPlan"
#: What a rule may prepend: what a phone can dial.
_DIALLABLE = re.compile(r"[0-9*#+]*")
#: Statuses a reject rule may answer with: final, not success, not redirection.
_REJECT_STATUSES = range(400, 700)
#: How long a trunk may ring before the next is tried, unless the rule says.
NO_ANSWER_S = 30


@dataclass(frozen=True, slots=True)
class ToExtension:
    """One of the tenant's extensions, by the rewritten number."""


@dataclass(frozen=True, slots=True)
class ToTrunks:
    """Out through the tenant's trunks, in order: the next when one fails."""

    trunks: tuple[str, ...]
    no_answer_s: int = NO_ANSWER_S


@dataclass(frozen=True, slots=True)
class ToVoicemail:
    """The rewritten number's voicemail box."""


@dataclass(frozen=True, slots=True)
class Reject:
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class ToDialPlan:
    """On through another of the tenant's plans, with the rewritten number."""

    plan: str


Route = ToExtension | ToTrunks | ToVoicemail | Reject | ToDialPlan
MatchKind = Literal["prefix", "pattern", "regex"]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    kind: MatchKind
    #: The prefix, pattern or regex as written.
    text: str
    route: Route
    min_length: int = 0
    max_length: int | None = None
    strip: int = 0
    prepend: str = ""
    #: The compiled form of a pattern or regex (None for a prefix).
    compiled: re.Pattern[str] | None = None

    def matches(self, number: str) -> bool:
        if len(number) < self.min_length:
            return False
        if self.max_length is not None and len(number) > self.max_length:
            return False
        if self.compiled is None:
            return number.startswith(self.text)
        return self.compiled.fullmatch(number) is not None

    def rewrite(self, number: str) -> str:
        return self.prepend + number[self.strip :]


@dataclass(frozen=True, slots=True)
class DialPlan:
    name: str
    priority: int
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Routed:
    """Where a number goes: the deciding rule (``plan``/``rule``), the number as it
    leaves (rewritten) and the route (never :class:`ToDialPlan`: that is followed)."""

    plan: str
    rule: str
    number: str
    route: ToExtension | ToTrunks | ToVoicemail | Reject


@dataclass(frozen=True, slots=True)
class DialPlans:
    """A tenant's compiled plans, in the order they are tried."""

    plans: tuple[DialPlan, ...] = ()
    #: The plans by name, for ``dialPlan`` routes: built once, not per call.
    by_name: Mapping[str, DialPlan] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {plan.name: plan for plan in self.plans})

    def route(self, number: str) -> Routed | None:
        """Where ``number`` goes; None when no rule matches (extension lookup, then 404)."""
        candidates: Sequence[DialPlan] = self.plans
        for _ in range(len(self.plans) + 1):  # compiled plans have no loops: ends sooner
            found = _first_match(candidates, number)
            if found is None:
                return None
            plan, rule = found
            number = rule.rewrite(number)
            if not isinstance(rule.route, ToDialPlan):
                return Routed(plan.name, rule.name, number, rule.route)
            candidates = (self.by_name[rule.route.plan],)
        raise AssertionError("a loop in compiled dial plans")  # compile_dial_plans refuses


def _first_match(plans: Iterable[DialPlan], number: str) -> tuple[DialPlan, Rule] | None:
    for plan in plans:
        for rule in plan.rules:
            if rule.matches(number):
                return plan, rule
    return None


def compile_dial_plans(
    manifests: Iterable[Mapping[str, Any]], *, tenant: str, trunks: Collection[str]
) -> DialPlans:
    """The tenant's ``DialPlan`` manifests (parsed YAML), checked and compiled; ``trunks``:
    the names of the tenant's trunks (routes may name no other)."""
    plans: dict[str, DialPlan] = {}
    for manifest in manifests:
        plan = _plan(manifest, tenant, trunks)
        if plan.name in plans:
            raise ManifestError(f"DialPlan {plan.name}", "defined twice")
        plans[plan.name] = plan
    _check_jumps(plans)
    ordered = sorted(plans.values(), key=lambda plan: (plan.priority, plan.name))
    return DialPlans(tuple(ordered))


def compile_pattern(pattern: str, where: str = "pattern") -> re.Pattern[str]:
    """An Asterisk/miniSipServer pattern (module docstring) as a regex for fullmatch."""
    text = pattern.removeprefix("_")
    if not text:
        raise ManifestError(where, "an empty pattern matches nothing")
    out: list[str] = []
    at = 0
    while at < len(text):
        char = text[at]
        last = at == len(text) - 1
        if char in "XZN":
            out.append({"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}[char])
        elif char in ".!":
            if not last:
                raise ManifestError(where, f"{char!r} may only end a pattern: {pattern!r}")
            out.append(".+" if char == "." else ".*")
        elif char == "[":
            close = text.find("]", at)
            if close == -1:
                raise ManifestError(where, f"'[' without ']' in {pattern!r}")
            out.append(_char_class(text[at + 1 : close], pattern, where))
            at = close
        elif char in "0123456789*#+":
            out.append(re.escape(char))
        else:
            raise ManifestError(
                where, f"{char!r} is not a digit, *, #, +, X, Z, N, [...], . or ! in {pattern!r}"
            )
        at += 1
    return re.compile("".join(out))


def _char_class(inside: str, pattern: str, where: str) -> str:
    if not inside:
        raise ManifestError(where, f"an empty [] in {pattern!r}")
    if not re.fullmatch(r"(?:[0-9*#+](?:-[0-9])?)+", inside):
        raise ManifestError(where, f"[{inside}] must list digits or ranges like 1-5: {pattern!r}")
    for low, high in re.findall(r"([0-9])-([0-9])", inside):
        if low > high:
            raise ManifestError(where, f"the range {low}-{high} is backwards in {pattern!r}")
    return "[" + re.sub(r"([*#+])", r"\\\1", inside) + "]"


def _plan(manifest: Mapping[str, Any], tenant: str, trunks: Collection[str]) -> DialPlan:
    name, spec = named_spec(manifest, KIND, tenant)
    where = f"DialPlan {name}"
    priority = spec.get("priority", 100)
    if type(priority) is not int:
        raise ManifestError(f"{where} spec.priority", f"must be a whole number, not {priority!r}")
    raw_rules = spec.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ManifestError(f"{where} spec.rules", "must be a non-empty list of rules")
    rules: list[Rule] = []
    for index, raw in enumerate(raw_rules):
        rule = _rule(raw, f"{where}, rule {index + 1}", trunks)
        if any(known.name == rule.name for known in rules):
            raise ManifestError(f"{where}, rule {rule.name!r}", "two rules have this name")
        rules.append(rule)
    return DialPlan(name, priority, tuple(rules))


_RULE_KEYS = {"name", "match", "minLength", "maxLength", "strip", "prepend", "route"}


def _rule(raw: object, where: str, trunks: Collection[str]) -> Rule:
    rule = mapping(raw, where)
    name = rule.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where} name", f"must be a non-empty string, not {name!r}")
    where = f"{where.rsplit(', rule', 1)[0]}, rule {name!r}"
    unknown = sorted(set(rule) - _RULE_KEYS)
    if unknown:
        raise ManifestError(where, f"unknown fields {unknown} (known: {sorted(_RULE_KEYS)})")
    kind, text, compiled = _match(rule.get("match"), f"{where} match")
    min_length = count(rule.get("minLength", 0), f"{where} minLength")
    max_length = rule.get("maxLength")
    if max_length is not None:
        max_length = count(max_length, f"{where} maxLength")
        if max_length < min_length:
            raise ManifestError(
                f"{where} maxLength", f"{max_length} is below minLength {min_length}"
            )
    strip = count(rule.get("strip", 0), f"{where} strip")
    prepend = rule.get("prepend", "")
    if not isinstance(prepend, str) or not _DIALLABLE.fullmatch(prepend):
        raise ManifestError(f"{where} prepend", f"must be digits, *, # or +, not {prepend!r}")
    route = _route(rule.get("route"), f"{where} route", trunks)
    return Rule(name, kind, text, route, min_length, max_length, strip, prepend, compiled)


def _match(raw: object, where: str) -> tuple[MatchKind, str, re.Pattern[str] | None]:
    match = mapping(raw, where)
    given = [key for key in ("prefix", "pattern", "regex") if key in match]
    if len(given) != 1 or len(match) != 1:
        raise ManifestError(
            where, f"must have exactly one of prefix, pattern or regex: {dict(match)}"
        )
    kind: MatchKind = given[0]  # type: ignore[assignment]
    text = match[kind]
    if not isinstance(text, str):
        raise ManifestError(f"{where}.{kind}", f"must be a string, not {text!r}")
    if kind == "prefix":
        if not _DIALLABLE.fullmatch(text):
            raise ManifestError(f"{where}.prefix", f"must be digits, *, # or +, not {text!r}")
        return kind, text, None
    if kind == "pattern":
        return kind, text, compile_pattern(text, f"{where}.pattern")
    try:
        return kind, text, re.compile(text)
    except re.error as error:
        raise ManifestError(
            f"{where}.regex", f"{text!r} is not a regular expression: {error}"
        ) from None


def _route(raw: object, where: str, trunks: Collection[str]) -> Route:
    route = mapping(raw, where)
    kinds = [
        key for key in ("extension", "trunks", "voicemail", "reject", "dialPlan") if key in route
    ]
    if len(kinds) != 1:
        raise ManifestError(
            where, "must be exactly one of extension, trunks, voicemail, reject or dialPlan"
        )
    kind = kinds[0]
    value = route[kind]
    if kind in ("extension", "voicemail"):
        if value is not True or len(route) != 1:
            raise ManifestError(f"{where}.{kind}", f"must be true (alone), not {value!r}")
        return ToExtension() if kind == "extension" else ToVoicemail()
    if kind == "trunks":
        if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
            raise ManifestError(f"{where}.trunks", f"must be a list of trunk names, not {value!r}")
        missing = [name for name in value if name not in trunks]
        if missing:
            raise ManifestError(
                f"{where}.trunks", f"no such trunk {missing[0]!r} (the tenant's: {sorted(trunks)})"
            )
        if len(set(value)) != len(value):
            raise ManifestError(f"{where}.trunks", f"a trunk is listed twice: {value}")
        extra = set(route) - {"trunks", "noAnswerSeconds"}
        if extra:
            raise ManifestError(where, f"unknown fields {sorted(extra)}")
        no_answer_s = route.get("noAnswerSeconds", NO_ANSWER_S)
        if type(no_answer_s) is not int or not 1 <= no_answer_s <= 600:
            raise ManifestError(f"{where}.noAnswerSeconds", f"must be 1..600, not {no_answer_s!r}")
        return ToTrunks(tuple(value), no_answer_s)
    if kind == "reject":
        reject = mapping(value, f"{where}.reject", {"status", "reason"})
        status, reason = reject.get("status"), reject.get("reason")
        if type(status) is not int or status not in _REJECT_STATUSES:
            raise ManifestError(f"{where}.reject.status", f"must be 400..699, not {status!r}")
        if not isinstance(reason, str) or not reason or not reason.isprintable():
            raise ManifestError(
                f"{where}.reject.reason", f"must be a reason phrase, not {reason!r}"
            )
        return Reject(status, reason)
    if not isinstance(value, str) or not DNS_LABEL.fullmatch(value):
        raise ManifestError(f"{where}.dialPlan", f"must name a DialPlan, not {value!r}")
    return ToDialPlan(value)


def _check_jumps(plans: Mapping[str, DialPlan]) -> None:
    """Every ``dialPlan`` route names a plan, and no plan reaches itself."""
    jumps: dict[str, list[tuple[str, str]]] = {}
    for plan in plans.values():
        for rule in plan.rules:
            if isinstance(rule.route, ToDialPlan):
                target = rule.route.plan
                if target not in plans:
                    raise ManifestError(
                        f"DialPlan {plan.name}, rule {rule.name!r} route.dialPlan",
                        f"no such DialPlan {target!r} (the tenant's: {sorted(plans)})",
                    )
                jumps.setdefault(plan.name, []).append((rule.name, target))
    for start in sorted(jumps):
        path = _loop_from(start, jumps, [start])
        if path is not None:
            closing = next(name for name, target in jumps[path[-2]] if target == path[-1])
            raise ManifestError(
                f"DialPlan {path[-2]}, rule {closing!r} route.dialPlan",
                "routes in a loop: " + " -> ".join(path),
            )


def _loop_from(
    plan: str, jumps: Mapping[str, list[tuple[str, str]]], path: list[str]
) -> list[str] | None:
    for _, target in jumps.get(plan, ()):
        if target in path:
            return [*path, target]
        found = _loop_from(target, jumps, [*path, target])
        if found is not None:
            return found
    return None
