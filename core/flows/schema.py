"""A flow document: typed nodes joined by labelled connections (camelCase on the wire).

Parsing is strict (unknown fields rejected, bounded numbers and strings) but only per node;
graph-level problems (duplicate ids, dangling connections, missing ports, loops) are reported
by `core.flows.validate.validate_flow`, so an editor can store and show an incomplete draft.

Published versions are frozen as JSON of these models and parsed again by the call workflow,
so changes here must stay backward compatible: add optional fields, never rename or tighten.
Pure: no I/O, importable from workflow code.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    StringConstraints,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from core.flows import ports as _ports
from core.sms import template_source

NODE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_NODES = 500
MAX_CONNECTIONS = 2000
MAX_PROMPT_CHARS = 2000
MAX_REGEX_CHARS = 256

NodeId = Annotated[str, StringConstraints(pattern=NODE_ID_PATTERN)]
PortName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_#*-]{1,32}$")]
VarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
SkillName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
# Prompt text; may hold {{ variables }} (core.flows.templates).
PromptText = Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)]
Label = Annotated[str, StringConstraints(max_length=128)]
HttpUrl = Annotated[str, StringConstraints(max_length=1024, pattern=r"^https?://[^\s]+$")]
Voice = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
DbId = Annotated[int, Field(ge=1, le=2**31 - 1)]
Digit = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]
FinishKey = Literal["#", "*", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
RoutingStrategy = Literal[
    "sequential", "round_robin", "longest_idle", "skills_based", "load_balanced"
]
Scalar = str | int | float | bool


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )


class FlowModel(WireModel):
    """Base of every flow model. Unset (None) fields are left out when dumped, so the stored,
    exported and API forms of a flow are one compact canonical JSON."""

    # Field names (snake_case) holding prompt templates, checked by validate_flow.
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


def _check_regex(pattern: str | None) -> str | None:
    if pattern is None:
        return None
    if len(pattern) > MAX_REGEX_CHARS:
        raise ValueError(f"pattern longer than {MAX_REGEX_CHARS} characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return pattern


class Position(FlowModel):
    x: float = Field(default=0.0, ge=-1e6, le=1e6)
    y: float = Field(default=0.0, ge=-1e6, le=1e6)


class _Voice(FlowModel):
    """Voice and language of spoken prompts; None inherits the flow's welcome node, then en-IN."""

    voice: Voice | None = None
    language: Language | None = None


# --- per-type configs ----------------------------------------------------------------------


DltTemplateId = Annotated[str, StringConstraints(pattern=r"^[0-9]{6,32}$")]
MAX_SMS_TEMPLATE_CHARS = 1000


class SmsStep(FlowModel):
    """An SMS to the caller after the call, on this node's outcome (core.sms): sent only when
    the server has an SMS sender (EXOTEL_SMS_SENDER), else skipped with a log line."""

    TEMPLATE_FIELDS = ("template",)

    enabled: bool = True
    # {{ variables }} of the call; None: the server's text for this kind of SMS.
    template: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SMS_TEMPLATE_CHARS)] \
        | None = None
    # India's DLT: the registered template this text follows; None: the server's for the kind.
    dlt_template_id: DltTemplateId | None = None



class WelcomeConfig(_Voice):
    TEMPLATE_FIELDS = ("message",)

    message: PromptText | None = None
    audio_url: HttpUrl | None = None
    check_business_hours: bool = False
    # None with checkBusinessHours: the default schedule (business hours land in a later issue).
    business_hours_id: DbId | None = None

    @model_validator(mode="after")
    def _hours_id_needs_check(self) -> WelcomeConfig:
        if self.business_hours_id is not None and not self.check_business_hours:
            raise ValueError("businessHoursId is set but checkBusinessHours is false")
        return self


class PlayConfig(_Voice):
    TEMPLATE_FIELDS = ("message",)

    message: PromptText | None = None
    audio_url: HttpUrl | None = None
    loop: int = Field(default=1, ge=1, le=10)

    @model_validator(mode="after")
    def _something_to_play(self) -> PlayConfig:
        if not self.message and not self.audio_url:
            raise ValueError("a play node needs a message or an audioUrl")
        return self


class MenuOption(FlowModel):
    digit: Digit
    label: Label | None = None


class MenuConfig(_Voice):
    TEMPLATE_FIELDS = ("message", "invalid_message", "timeout_message")

    message: PromptText | None = Field(
        default=None, validation_alias=AliasChoices("message", "prompt")
    )
    audio_url: HttpUrl | None = None
    options: list[MenuOption] = Field(min_length=1, max_length=12)
    timeout: int = Field(default=5, ge=1, le=60, description="seconds to wait for a key")
    max_retries: int = Field(default=3, ge=0, le=10)
    invalid_message: PromptText | None = None
    timeout_message: PromptText | None = None

    @model_validator(mode="after")
    def _check(self) -> MenuConfig:
        if not self.message and not self.audio_url:
            raise ValueError("a menu needs a message (prompt) or an audioUrl")
        digits = [o.digit for o in self.options]
        dupes = sorted({d for d in digits if digits.count(d) > 1})
        if dupes:
            raise ValueError(f"menu digits used twice: {', '.join(dupes)}")
        return self


class HangupConfig(_Voice):
    TEMPLATE_FIELDS = ("message",)

    message: PromptText | None = None
    reason: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = "completed"


class QueueConfig(_Voice):
    """Basics only; queue behaviour (issue 6) extends this with optional fields."""

    TEMPLATE_FIELDS = ("message", "hold_message")

    # None until queues exist (issue 6 wires the seeded flow); the engine then says so.
    queue_id: DbId | None = None
    message: PromptText | None = None
    max_wait_time: int | None = Field(default=None, ge=10, le=14400, description="seconds")
    hold_music_url: HttpUrl | None = None
    hold_message: PromptText | None = None
    announce_position: bool | None = None
    announce_wait_time: bool | None = None
    announce_interval: int | None = Field(default=None, ge=10, le=600, description="seconds")
    priority: int | None = Field(default=None, ge=0, le=100)
    offer_callback: bool | None = None
    # Missed call: the caller waited here and no agent answered (hung up on hold, max wait, a
    # full queue, no answer at the transfer), unless a voicemail or callback SMS replaced it.
    sms: SmsStep | None = None
    # The caller took the callback offer ("We will call you back when it is your turn").
    callback_sms: SmsStep | None = None


class TransferConfig(_Voice):
    TEMPLATE_FIELDS = ("message",)

    message: PromptText | None = None
    # At most one target; none means "any available agent" chosen by the strategy and skills.
    agents: list[DbId] | None = Field(default=None, min_length=1, max_length=50)
    agent_id: DbId | None = None
    phone_number: E164 | None = None
    routing_strategy: RoutingStrategy = "longest_idle"
    skills: dict[SkillName, Annotated[int, Field(ge=1, le=5)]] | None = Field(
        default=None, max_length=20, description="skill → minimum proficiency 1-5"
    )
    team: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 _.-]{1,64}$")] | None = None
    max_attempts: int = Field(default=3, ge=1, le=10)
    ring_timeout: int = Field(default=30, ge=5, le=120, description="seconds")
    record: bool = False
    # Missed call: nobody this node dialled answered, and no agent did later in the call.
    sms: SmsStep | None = None

    @model_validator(mode="after")
    def _check(self) -> TransferConfig:
        targets = [
            n for n, v in (("agents", self.agents), ("agentId", self.agent_id),
                           ("phoneNumber", self.phone_number)) if v is not None
        ]
        if len(targets) > 1:
            raise ValueError(f"give only one transfer target, not {' and '.join(targets)}")
        if self.agents is not None and len(set(self.agents)) != len(self.agents):
            raise ValueError("agents lists an agent twice")
        if (self.agent_id is not None or self.phone_number is not None) and (
            self.skills or self.team
        ):
            raise ValueError("skills and team apply only when choosing among agents")
        if self.routing_strategy == "skills_based" and not self.skills:
            raise ValueError("routingStrategy skills_based needs skills")
        return self


class RecordConfig(_Voice):
    TEMPLATE_FIELDS = ("message",)

    message: PromptText | None = None
    max_length: int = Field(default=120, ge=1, le=3600, description="seconds")
    finish_on_key: FinishKey = "#"
    save_to_variable: VarName | None = None
    play_beep: bool = True
    # Voicemail: the caller left a recording here.
    sms: SmsStep | None = None


# Decision conditions: a first typed version; issue 5 completes the language.
VariableOp = Literal[
    "equals", "not_equals", "in", "not_in", "contains", "regex", "gt", "gte", "lt", "lte",
    "exists", "not_exists",
]
CallerOp = Literal["equals", "in", "prefix", "regex", "anonymous"]
TimeOp = Literal["open", "closed", "weekday", "between"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
MAX_CONDITION_DEPTH = 4


class ConditionExpr(FlowModel):
    """A test on call variables, the caller, or the clock; `all`/`any` group others."""

    kind: Literal["variable", "caller", "time", "all", "any"] = "variable"
    variable: VarName | None = None
    operator: str | None = None
    value: Scalar | list[Scalar] | None = None
    business_hours_id: DbId | None = None
    conditions: list[ConditionExpr] | None = Field(default=None, min_length=1, max_length=20)
    # Added by issue 5 (optional, so older documents parse unchanged):
    negate: bool | None = None  # the condition matches when the test is false
    ignore_case: bool | None = None  # text comparisons (equals, in, contains, regex, prefix)
    # IANA zone of weekday/between tests; default Asia/Kolkata.
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None

    @model_validator(mode="after")
    def _check(self) -> ConditionExpr:
        ops: tuple[str, ...]
        if self.kind in ("all", "any"):
            if not self.conditions:
                raise ValueError(f"a {self.kind} group needs conditions")
            if self.variable or self.operator or self.value is not None:
                raise ValueError(f"a {self.kind} group takes only conditions")
            if _depth(self) > MAX_CONDITION_DEPTH:
                raise ValueError(f"conditions nested deeper than {MAX_CONDITION_DEPTH}")
            return self
        if self.conditions is not None:
            raise ValueError("only all/any groups take conditions")
        if self.kind == "variable":
            ops = VariableOp.__args__
            if self.variable is None:
                raise ValueError("a variable condition needs variable")
        elif self.kind == "caller":
            ops = CallerOp.__args__
        else:
            ops = TimeOp.__args__
        if self.operator not in ops:
            raise ValueError(
                f"operator must be one of {', '.join(ops)} for a {self.kind} condition"
            )
        if self.business_hours_id is not None and self.operator not in ("open", "closed"):
            raise ValueError("businessHoursId applies only to open/closed time conditions")
        if self.timezone is not None:
            if self.operator not in ("weekday", "between"):
                raise ValueError("timezone applies only to weekday/between time conditions")
            _check_zone(self.timezone)
        _check_operand(self.kind, self.operator, self.value)
        return self


def _check_zone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _depth(expr: ConditionExpr) -> int:
    return 1 + max((_depth(c) for c in expr.conditions or ()), default=0)


def _check_operand(kind: str, op: str, value: Any) -> None:
    no_value = {"exists", "not_exists", "anonymous", "open", "closed"}
    if op in no_value:
        if value is not None:
            raise ValueError(f"operator {op} takes no value")
        return
    if value is None:
        raise ValueError(f"operator {op} needs a value")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"operator {op} needs a non-empty list value")
    elif isinstance(value, list) and op not in ("weekday", "between"):
        raise ValueError(f"operator {op} takes a single value, not a list")
    if op in ("gt", "gte", "lt", "lte") and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise ValueError(f"operator {op} needs a number")
    if op == "regex":
        if not isinstance(value, str):
            raise ValueError("operator regex needs a string pattern")
        _check_regex(value)
    if op in ("prefix", "contains") and not isinstance(value, str):
        raise ValueError(f"operator {op} needs a string")
    if op == "weekday":
        days = value if isinstance(value, list) else [value]
        if not days or any(d not in WEEKDAYS for d in days):
            raise ValueError(f"weekday values must be among {', '.join(WEEKDAYS)}")
    if op == "between":
        if not (
            isinstance(value, list) and len(value) == 2
            and all(isinstance(v, str) and _HHMM.match(v) for v in value)
        ):
            raise ValueError('between needs ["HH:MM", "HH:MM"]')


class Condition(ConditionExpr):
    """A top-level decision condition: when it matches, the call follows `port`."""

    port: PortName
    label: Label | None = None

    @field_validator("port")
    @classmethod
    def _not_reserved(cls, port: str) -> str:
        if port in _ports.RESERVED_DECISION_PORTS:
            raise ValueError(f"port {port!r} is reserved for when no condition matches")
        return port


class DecisionConfig(FlowModel):
    decision_type: Literal["variable", "time", "caller", "mixed"] = "variable"
    conditions: list[Condition] = Field(min_length=1, max_length=50)


class ValidationRules(FlowModel):
    min_value: float | None = None
    max_value: float | None = None
    pattern: str | None = None
    luhn: bool = False

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        return _check_regex(pattern)

    @model_validator(mode="after")
    def _range(self) -> ValidationRules:
        if (
            self.min_value is not None and self.max_value is not None
            and self.min_value > self.max_value
        ):
            raise ValueError("minValue is greater than maxValue")
        return self


class GatherConfig(_Voice):
    TEMPLATE_FIELDS = ("message", "invalid_message", "timeout_message", "confirm_message")

    message: PromptText | None = None
    audio_url: HttpUrl | None = None
    input_type: Literal["digits", "number", "date", "amount", "phone", "regex", "luhn"] = "digits"
    min_length: int = Field(default=1, ge=1, le=32)
    max_length: int = Field(default=10, ge=1, le=32)
    finish_on_key: FinishKey = "#"
    validation_rules: ValidationRules | None = None
    save_to_variable: VarName
    max_retries: int = Field(default=3, ge=0, le=10)
    timeout: int = Field(default=10, ge=1, le=60, description="seconds")
    sensitive: bool = False
    confirm: bool = False
    invalid_message: PromptText | None = None
    timeout_message: PromptText | None = None
    # Read back before "press 1 to confirm"; {{ entered }} is the input spoken digit by digit
    # (only its last digits when the input is sensitive).
    confirm_message: PromptText | None = None
    # Country a phone number without its country code belongs to; default IN.
    region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None

    @model_validator(mode="after")
    def _check(self) -> GatherConfig:
        if not self.message and not self.audio_url:
            raise ValueError("a gather node needs a message or an audioUrl")
        if self.min_length > self.max_length:
            raise ValueError("minLength is greater than maxLength")
        if self.input_type == "regex" and not (
            self.validation_rules and self.validation_rules.pattern
        ):
            raise ValueError("inputType regex needs validationRules.pattern")
        return self


HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")]
JsonPath = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_$][A-Za-z0-9_.\[\]$-]{0,127}$")]
MAX_API_BODY_CHARS = 16_000
SecretName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE"})


class ApiConfig(FlowModel):
    TEMPLATE_FIELDS = ("url",)  # headers and string leaves of body are checked too

    # A template ("https://crm.example.in/c/{{ caller }}"): the scheme must be literal.
    url: Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s][^\r\n]*$")]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[HeaderName, Annotated[str, StringConstraints(max_length=1024)]] | None = Field(
        default=None, max_length=20
    )
    body: dict[str, Any] | list[Any] | str | None = None
    timeout: float = Field(default=2.0, gt=0, le=10, description="seconds")
    response_mappings: dict[JsonPath, VarName] | None = Field(default=None, max_length=50)
    save_to_variable: VarName | None = None
    status_variable: VarName | None = None
    # Header → name of a secret setting (IVR_API_SECRETS / IVR_API_SECRET_<NAME>): the value
    # is added by the activity and never appears in the flow, the workflow history or logs.
    secret_headers: dict[HeaderName, SecretName] | None = Field(default=None, max_length=10)
    # Retries of connection errors and 502/503/504, inside `timeout`; idempotent methods
    # only (default 1 for GET, PUT and DELETE, 0 otherwise).
    max_retries: int | None = Field(default=None, ge=0, le=3)

    @model_validator(mode="after")
    def _check(self) -> ApiConfig:
        if self.body is not None:
            if self.method in ("GET", "DELETE"):
                raise ValueError(f"a {self.method} request takes no body")
            if len(json.dumps(self.body, ensure_ascii=False)) > MAX_API_BODY_CHARS:
                raise ValueError(f"body larger than {MAX_API_BODY_CHARS} characters")
        if self.max_retries and self.method not in IDEMPOTENT_METHODS:
            raise ValueError(f"maxRetries: a {self.method} request is not idempotent, so it "
                             "is never retried")
        clash = {k.lower() for k in self.headers or {}} & {
            k.lower() for k in self.secret_headers or {}
        }
        if clash:
            raise ValueError(f"header {sorted(clash)[0]!r} is in both headers and secretHeaders")
        return self

    def retries(self) -> int:
        if self.method not in IDEMPOTENT_METHODS:
            return 0
        return 1 if self.max_retries is None else self.max_retries

    def template_strings(self) -> list[tuple[str, str]]:
        """(field path, template) for every templated string: url, headers, body leaves."""
        out = [("url", self.url)]
        out += [(f"headers.{k}", v) for k, v in (self.headers or {}).items()]

        def walk(path: str, value: Any) -> None:
            if isinstance(value, str):
                out.append((path, value))
            elif isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{path}.{k}", v)
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    walk(f"{path}[{i}]", v)

        walk("body", self.body)
        return out


# --- nodes ---------------------------------------------------------------------------------


class _NodeBase(FlowModel):
    id: NodeId
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    position: Position = Field(default_factory=Position)

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("id"), str):
            data = {**data, "name": data["id"]}
        return data

    def ports(self) -> tuple[_ports.PortSpec, ...]:
        return _ports.ports_for(self)  # type: ignore[arg-type]

    def port_names(self) -> frozenset[str]:
        return _ports.port_names(self)  # type: ignore[arg-type]

    def template_strings(self) -> list[tuple[str, str]]:
        """(field path, template) for every prompt template of this node."""
        cfg: Any = getattr(self, "config")  # noqa: B009
        if isinstance(cfg, ApiConfig):
            return [(f"config.{p}", t) for p, t in cfg.template_strings()]
        out: list[tuple[str, str]] = []
        for field in cfg.TEMPLATE_FIELDS:
            value = getattr(cfg, field)
            if value:
                out.append((f"config.{to_camel(field)}", value))
        for field in ("sms", "callback_sms"):
            step = getattr(cfg, field, None)
            if isinstance(step, SmsStep) and step.template:
                # Checked as sent: core.sms reads `{name}` as `{{ name }}`.
                out.append((f"config.{to_camel(field)}.template", template_source(step.template)))
        return out


class WelcomeNode(_NodeBase):
    type: Literal["welcome"]
    config: WelcomeConfig = Field(default_factory=WelcomeConfig)


class PlayNode(_NodeBase):
    type: Literal["play"]
    config: PlayConfig


class MenuNode(_NodeBase):
    type: Literal["menu"]
    config: MenuConfig


class HangupNode(_NodeBase):
    type: Literal["hangup"]
    config: HangupConfig = Field(default_factory=HangupConfig)


class QueueNode(_NodeBase):
    type: Literal["queue"]
    config: QueueConfig = Field(default_factory=QueueConfig)


class TransferNode(_NodeBase):
    type: Literal["transfer"]
    config: TransferConfig = Field(default_factory=TransferConfig)


class RecordNode(_NodeBase):
    type: Literal["record"]
    config: RecordConfig = Field(default_factory=RecordConfig)


class DecisionNode(_NodeBase):
    type: Literal["decision"]
    config: DecisionConfig


class GatherNode(_NodeBase):
    type: Literal["gather"]
    config: GatherConfig


class ApiNode(_NodeBase):
    type: Literal["api"]
    config: ApiConfig


Node = Annotated[
    WelcomeNode | PlayNode | MenuNode | HangupNode | QueueNode | TransferNode | RecordNode
    | DecisionNode | GatherNode | ApiNode,
    Field(discriminator="type"),
]
NODE_CLASSES: dict[str, type[_NodeBase]] = {
    cls.model_fields["type"].annotation.__args__[0]: cls  # type: ignore[union-attr]
    for cls in (WelcomeNode, PlayNode, MenuNode, HangupNode, QueueNode, TransferNode,
                RecordNode, DecisionNode, GatherNode, ApiNode)
}
NODE_TYPES = tuple(NODE_CLASSES)


class Connection(FlowModel):
    from_node: NodeId
    to_node: NodeId
    port: PortName


# --- the document --------------------------------------------------------------------------


class FlowDefinition(FlowModel):
    """A whole flow: what drafts store, versions freeze, export writes and calls run."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    # None: the single welcome node.
    entry_node: NodeId | None = None
    nodes: list[Node] = Field(default_factory=list, max_length=MAX_NODES)
    connections: list[Connection] = Field(default_factory=list, max_length=MAX_CONNECTIONS)

    _by_id: dict[str, Any] = PrivateAttr(default_factory=dict)
    _edges: dict[tuple[str, str], str] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        # First occurrence wins when ids or ports repeat; validate_flow reports the repeats.
        by_id: dict[str, Any] = {}
        for node in self.nodes:
            by_id.setdefault(node.id, node)
        edges: dict[tuple[str, str], str] = {}
        for c in self.connections:
            edges.setdefault((c.from_node, c.port), c.to_node)
        self._by_id = by_id
        self._edges = edges

    # Helpers the call engine uses.

    def node(self, node_id: str) -> Node:
        """The node with this id; KeyError if there is none."""
        try:
            return self._by_id[node_id]
        except KeyError:
            raise KeyError(f"flow {self.name!r} has no node {node_id!r}") from None

    def has_node(self, node_id: str) -> bool:
        return node_id in self._by_id

    def entry_id(self) -> str | None:
        """The entry node's id: entryNode, else the only welcome node; None if undecidable."""
        if self.entry_node is not None:
            return self.entry_node if self.entry_node in self._by_id else None
        welcomes = [n.id for n in self.nodes if n.type == "welcome"]
        return welcomes[0] if len(welcomes) == 1 else None

    def entry(self) -> Node:
        """The node a call starts at; ValueError when the flow has none (validation says why)."""
        node_id = self.entry_id()
        if node_id is None:
            raise ValueError(f"flow {self.name!r} has no entry node")
        return self._by_id[node_id]

    def connection(self, from_id: str, port: str) -> str | None:
        """The node connected to exactly this port, without fallbacks."""
        return self._edges.get((from_id, port))

    def next(self, from_id: str, port: str) -> str | None:
        """Where the call goes when node `from_id` leaves by `port`.

        Follows the port's fallback chain when it is unconnected (e.g. a queue's `full` falls
        back to `timeout`, a transfer's `failed` to `noAnswer`, a menu's `timeout` to
        `maxRetries`); None means the call ends here.
        """
        node = self._by_id.get(from_id)
        chain = _ports.fallback_chain(node, port) if node is not None else (port,)
        for p in chain:
            target = self._edges.get((from_id, p))
            if target is not None:
                return target
        return None

    def outgoing(self, from_id: str) -> dict[str, str]:
        """port → target node id for every connection leaving `from_id`."""
        return {p: t for (f, p), t in self._edges.items() if f == from_id}

    def to_json_dict(self) -> dict[str, Any]:
        """The canonical JSON-able form (camelCase, None fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def canonical_json(self) -> str:
        """Stable text of the definition: sorted keys, no whitespace; checksums hash this."""
        return json.dumps(
            self.to_json_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )


_FROZEN_CACHE_SIZE = 64
_frozen: OrderedDict[str, FlowDefinition] = OrderedDict()
_frozen_lock = threading.Lock()


def frozen(checksum: str) -> FlowDefinition | None:
    """The published version with this checksum if this process has parsed it already."""
    with _frozen_lock:
        cached = _frozen.get(checksum)
        if cached is not None:
            _frozen.move_to_end(checksum)
        return cached


def parse_frozen(definition: dict[str, Any], checksum: str | None) -> FlowDefinition:
    """A published version's definition, parsed once per worker process.

    Published versions are immutable and `checksum` is the sha256 of their canonical JSON, so
    equal checksums mean equal flows: every call on that version shares one parsed, read-only
    FlowDefinition instead of validating the whole graph again at each call's start. Without a
    checksum (drafts, tests, histories from before it was sent) it parses as usual.
    """
    if checksum is None:
        return FlowDefinition.model_validate(definition)
    cached = frozen(checksum)
    if cached is not None:
        return cached
    parsed = FlowDefinition.model_validate(definition)
    with _frozen_lock:
        _frozen[checksum] = parsed
        while len(_frozen) > _FROZEN_CACHE_SIZE:
            _frozen.popitem(last=False)
    return parsed
