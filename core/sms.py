"""SMS to callers after an outcome: which kinds there are, their texts and DLT template ids.

Kinds: `callback_scheduled` ("We will call you back at 4:30 pm", `{{ time }}`),
`callback_queued` (a queue callback: no time yet, `{{ position }}`), `voicemail` and
`missed_call`. A text is a template in the flows' prompt language (`{{ variables }}`, rendered
by `core.flows.templates` in its sandbox); `{name}` placeholders, the form the settings'
templates first used, are read as `{{ name }}`.

India's DLT rules: every commercial SMS names the sender's registered entity and the
registered template its text follows, so each kind (and each flow node with its own text) has
its own template id: a node's `dltTemplateId`, else `EXOTEL_DLT_TEMPLATE_IDS[kind]`, else
`EXOTEL_DLT_TEMPLATE_ID`.

Pure: no I/O; the workflows import it for the names and the phone-number check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.flows import templates

SMS_WORKFLOW = "SmsWorkflow"
SEND_ACTIVITY = "sms_send"
DISPATCH_ACTIVITY = "sms_dispatch"

CALLBACK_SCHEDULED = "callback_scheduled"
CALLBACK_QUEUED = "callback_queued"
VOICEMAIL = "voicemail"
MISSED_CALL = "missed_call"
SMS_KINDS = (CALLBACK_SCHEDULED, CALLBACK_QUEUED, VOICEMAIL, MISSED_CALL)

# Exotel refuses a longer body (and operators split anything past 160 GSM characters).
MAX_BODY_CHARS = 2000
# DLT entity and template ids are numbers (19 digits today); leave room, refuse anything else.
DLT_ID_PATTERN = r"^[0-9]{6,32}$"
_DLT_ID = re.compile(DLT_ID_PATTERN)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_LEGACY_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
# Call variables handed to an SMS template: scalars only, bounded (they travel in histories).
MAX_VARIABLES = 40
MAX_VARIABLE_CHARS = 200


def template_source(template: str) -> str:
    """The template in the prompt language: `{time}` read as `{{ time }}`."""
    return _LEGACY_PLACEHOLDER.sub(r"{{ \1 }}", template)


def check_template(template: str) -> str | None:
    """None if the text is a usable SMS template, else what is wrong with it."""
    return templates.check(template_source(template))


def render(template: str, variables: Mapping[str, Any]) -> str:
    """The SMS body: the template rendered (missing variables empty), trimmed, capped."""
    body = templates.render(template_source(template), variables).strip()
    return body[:MAX_BODY_CHARS]


def valid_dlt_id(value: str) -> bool:
    return bool(_DLT_ID.fullmatch(value))


def sms_number(number: str | None) -> str | None:
    """The number if an SMS can go to it (E.164), else None (withheld, SIP, garbage)."""
    return number if number and _E164.fullmatch(number) else None


def sms_variables(variables: Mapping[str, Any]) -> dict[str, str]:
    """The call's scalar variables as text, for a node's SMS template (bounded)."""
    out: dict[str, str] = {}
    for key, value in variables.items():
        if len(out) >= MAX_VARIABLES:
            break
        if isinstance(value, bool):
            out[key] = "yes" if value else "no"
        elif isinstance(value, str | int | float):
            out[key] = str(value)[:MAX_VARIABLE_CHARS]
    return out


def marker(kind: str, *, callback_id: int | None = None, call_sid: str | None = None) -> str | None:
    """What an SMS carries in Exotel's CustomField: the callback or call it follows, and its
    kind (at most one SMS of a kind per callback or call). None when it follows neither."""
    if callback_id is not None:
        return f"cb:{callback_id}:sms:{kind}"
    if call_sid:
        return f"call:{call_sid}:sms:{kind}"
    return None


def workflow_id(sms_marker: str) -> str:
    """The id of the SmsWorkflow sending one SMS: a second start for it is refused."""
    return f"sms-{sms_marker}"
