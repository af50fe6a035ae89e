"""One place for every setting: environment variables and `.env`, validated at start-up."""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Values that must never reach production: the dev defaults below and the usual placeholders.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"  # noqa: S105
DEV_WEBHOOK_TOKEN = "dev-webhook-token-change-me"  # noqa: S105
DEV_ADMIN_PASSWORD = "admin123"  # noqa: S105
PLACEHOLDER_MARKERS = ("change-me", "changeme", "your-", "placeholder", "secret", "example", "xxx")


class Env(StrEnum):
    dev = "dev"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    """Every knob of the platform; names are the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    env: Env = Field(default=Env.dev, validation_alias=AliasChoices("IVR_ENV", "env"))

    # Services. Empty means "start the embedded one" (ivr dev, tests); production must name them.
    database_url: str = ""
    redis_url: str = ""
    temporal_address: str = ""
    temporal_namespace: str = "default"
    temporal_task_queue: str = "ivr-calls"
    temporal_api_key: SecretStr | None = None
    temporal_tls: bool = False

    # Where `ivr dev` keeps embedded data and which ports it uses (never 5432/6379).
    data_dir: Path = Field(
        default=PROJECT_ROOT / ".ivr", validation_alias=AliasChoices("IVR_DATA_DIR", "data_dir")
    )
    embedded_pg_port: int = Field(default=54329, validation_alias="IVR_PG_PORT")
    embedded_redis_port: int = Field(default=63799, validation_alias="IVR_REDIS_PORT")
    temporal_port: int = Field(default=7233, validation_alias="IVR_TEMPORAL_PORT")
    temporal_ui_port: int = Field(default=8233, validation_alias="IVR_TEMPORAL_UI_PORT")
    api_host: str = Field(default="127.0.0.1", validation_alias="IVR_API_HOST")
    api_port: int = Field(default=8000, validation_alias="IVR_API_PORT")
    dashboard_port: int = Field(default=8501, validation_alias="IVR_DASHBOARD_PORT")
    # The fake Exotel `ivr dev --fake-carrier` runs (tests/fakes/fake_exotel.py).
    fake_exotel_port: int = Field(default=8010, validation_alias="IVR_FAKE_EXOTEL_PORT")
    # Prometheus metrics of a worker process (activity failures, …); 0 = not served.
    worker_metrics_port: int = Field(
        default=0, ge=0, le=65535, validation_alias="IVR_WORKER_METRICS_PORT"
    )

    # Secrets.
    jwt_secret: SecretStr = Field(
        default=SecretStr(DEV_JWT_SECRET), validation_alias="IVR_JWT_SECRET"
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_ttl_s: int = Field(default=900, ge=30, validation_alias="IVR_ACCESS_TOKEN_TTL_S")
    refresh_token_ttl_s: int = Field(
        default=14 * 24 * 3600, ge=60, validation_alias="IVR_REFRESH_TOKEN_TTL_S"
    )
    webhook_token: SecretStr = Field(
        default=SecretStr(DEV_WEBHOOK_TOKEN), validation_alias="IVR_WEBHOOK_TOKEN"
    )
    admin_password: SecretStr = Field(
        default=SecretStr(DEV_ADMIN_PASSWORD), validation_alias="IVR_ADMIN_PASSWORD"
    )
    public_url: str = Field(default="http://127.0.0.1:8000", validation_alias="IVR_PUBLIC_URL")

    # Login throttling: failures per username+IP inside the window before 429.
    login_max_failures: int = Field(default=10, validation_alias="IVR_LOGIN_MAX_FAILURES")
    login_failure_window_s: int = Field(default=300, validation_alias="IVR_LOGIN_WINDOW_S")

    # Carrier.
    exotel_sid: str = ""
    exotel_api_key: SecretStr | None = None
    exotel_api_token: SecretStr | None = None
    exotel_region: Literal["sg", "in"] = "in"
    # Overrides the region's base URL (a proxy, or the fake Exotel in tests).
    exotel_api_base: str = ""
    twilio_auth_token: SecretStr | None = None
    # Outbound calls and SMS (callbacks): the Exotel app a callback call runs (its `Url` is
    # http://my.exotel.com/{sid}/exoml/start_voice/{app_id}), the ExoPhone shown to the person
    # called, and the SMS sender with India's DLT registration (entity and template ids).
    exotel_app_id: str = ""
    exotel_caller_id: str = ""
    exotel_sms_sender: str = ""
    exotel_dlt_entity_id: str = ""
    # The DLT template id of every SMS kind (core.sms), and per kind where texts differ (JSON:
    # {"voicemail": "1107…", "missed_call": "1107…"}); a flow node may name its own.
    exotel_dlt_template_id: str = ""
    exotel_dlt_template_ids: dict[str, str] = Field(default_factory=dict)
    # Ring time per leg and the longest a callback call may last (Exotel caps it at 4 hours).
    callback_ring_timeout_s: int = Field(default=30, ge=5, le=120)
    callback_time_limit_s: int = Field(default=1800, ge=60, le=14400)
    # How late a callback call's status callback may come before Exotel is asked directly.
    callback_status_grace_s: int = Field(default=120, ge=1, le=3600)
    # SMS texts per kind (core.sms; `{{ variables }}`, `{time}` also read as `{{ time }}`),
    # used when a flow node gives none. Sent only when EXOTEL_SMS_SENDER is set.
    # "We will call you back at 4:30 pm": a callback scheduled (POST /api/callbacks, sendSms).
    callback_sms_template: str = "We will call you back at {{ time }}."
    # A queue callback (the queue's "press 1" offer, or sendSms with a queueId): no time yet.
    sms_callback_queued_template: str = (
        "We will call you back when it is your turn. You keep your place in the queue."
    )
    sms_voicemail_template: str = "Thank you for your message. We will get back to you soon."
    sms_missed_call_template: str = "Sorry we missed your call. We will call you back shortly."
    callback_sms_timezone: str = "Asia/Kolkata"

    # Webhook reply budget: past it the adapter answers a safe holding reply.
    webhook_budget_ms: int = Field(default=2000, ge=100, validation_alias="IVR_WEBHOOK_BUDGET_MS")
    # The API answers a call's first turn itself when the flow's opening needs no workflow
    # (api/opening.py) and starts the workflow from there. Off: every first turn is an
    # update-with-start (e.g. while workers older than this field still run).
    api_walks_opening: bool = Field(default=True, validation_alias="IVR_API_OPENING")
    # Later turns too: the API walks a turn that needs only the flow and the clock from the
    # call's cursor in Redis, hands it to the workflow by a signal, and answers (needs the
    # opening on, and workers that know the `walked` signal).
    api_walks_turns: bool = Field(default=True, validation_alias="IVR_API_TURNS")

    # Silence after a reply's expected duration before a call counts as hung up (Exotel sends
    # no end-of-call callback for inbound flows).
    call_grace_s: float = Field(default=20.0, gt=0, le=600, validation_alias="IVR_CALL_GRACE_S")

    # Run workflow code in Temporal's sandbox (re-imports the workflow module per call: safer,
    # slower). Determinism is also guarded by the replay tests over saved histories.
    workflow_sandbox: bool = Field(default=True, validation_alias="IVR_WORKFLOW_SANDBOX")

    # Logic nodes (issue 5). API node: hosts it may reach although they resolve to private or
    # loopback addresses (comma-separated names, *.suffix, IPs or CIDRs); header secrets by
    # name (JSON object, or one IVR_API_SECRET_<NAME> variable each); time and size caps.
    api_node_allowlist: str = Field(default="", validation_alias="IVR_API_NODE_ALLOWLIST")
    api_secrets: dict[str, SecretStr] = Field(
        default_factory=dict, validation_alias="IVR_API_SECRETS"
    )
    api_node_timeout_cap_s: float | None = Field(
        default=None, gt=0, le=10, validation_alias="IVR_API_NODE_TIMEOUT_CAP_S"
    )
    api_node_max_response_bytes: int = Field(
        default=256 * 1024, ge=1024, le=10 * 1024 * 1024,
        validation_alias="IVR_API_NODE_MAX_RESPONSE_BYTES",
    )
    # Tests and demos only (refused in production): business-hours checks of calls read
    # this instant instead of the workflow's clock, e.g. 2026-01-05T20:00:00+05:30.
    business_hours_clock: datetime | None = Field(
        default=None, validation_alias="IVR_BUSINESS_HOURS_CLOCK"
    )

    log_level: str = Field(default="INFO", validation_alias="IVR_LOG_LEVEL")
    log_json: bool = Field(default=True, validation_alias="IVR_LOG_JSON")

    @property
    def is_production(self) -> bool:
        return self.env == Env.production

    @property
    def schedule_clock(self) -> datetime | None:
        """The instant business-hours checks read instead of the call's clock (never in
        production)."""
        return None if self.is_production else self.business_hours_clock

    @property
    def exotel_base_url(self) -> str:
        if self.exotel_api_base:
            return self.exotel_api_base.rstrip("/")
        host = "api.in.exotel.com" if self.exotel_region == "in" else "api.exotel.com"
        return f"https://{host}"

    @property
    def exotel_configured(self) -> bool:
        return bool(self.exotel_sid and self.exotel_api_key and self.exotel_api_token)

    @property
    def api_allowlist_entries(self) -> list[str]:
        return [e.strip() for e in self.api_node_allowlist.split(",") if e.strip()]

    @property
    def api_timeout_cap_s(self) -> float:
        """Longest an API node may wait: inside the webhook budget, with room for the turn."""
        if self.api_node_timeout_cap_s is not None:
            return self.api_node_timeout_cap_s
        return max(0.2, self.webhook_budget_ms / 1000 - 0.3)

    def api_secret(self, name: str) -> str | None:
        """A named header secret: IVR_API_SECRETS[name], else IVR_API_SECRET_<NAME>."""
        secret = self.api_secrets.get(name)
        if secret is not None:
            return secret.get_secret_value()
        return os.environ.get(f"IVR_API_SECRET_{name}")

    def sms_template(self, kind: str) -> str | None:
        """The settings' text of an SMS kind (core.sms.SMS_KINDS); None for an unknown kind."""
        return {
            "callback_scheduled": self.callback_sms_template,
            "callback_queued": self.sms_callback_queued_template,
            "voicemail": self.sms_voicemail_template,
            "missed_call": self.sms_missed_call_template,
        }.get(kind)

    def dlt_template_id(self, kind: str, override: str | None = None) -> str | None:
        """The DLT template id an SMS is sent under: the node's, the kind's, else the default."""
        return override or self.exotel_dlt_template_ids.get(kind) or (
            self.exotel_dlt_template_id or None
        )

    @model_validator(mode="after")
    def _sms_settings_usable(self) -> Settings:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from core import sms

        problems: list[str] = []
        for kind in sms.SMS_KINDS:
            error = sms.check_template(self.sms_template(kind) or "")
            if error is not None:
                problems.append(f"the {kind} SMS template does not parse: {error}")
        for name, value in (("EXOTEL_DLT_ENTITY_ID", self.exotel_dlt_entity_id),
                            ("EXOTEL_DLT_TEMPLATE_ID", self.exotel_dlt_template_id)):
            if value and not sms.valid_dlt_id(value):
                problems.append(f"{name} must be 6-32 digits")
        for kind, value in self.exotel_dlt_template_ids.items():
            if kind not in sms.SMS_KINDS:
                problems.append(f"EXOTEL_DLT_TEMPLATE_IDS: unknown SMS kind {kind!r} "
                                f"(kinds: {', '.join(sms.SMS_KINDS)})")
            elif not sms.valid_dlt_id(value):
                problems.append(f"EXOTEL_DLT_TEMPLATE_IDS[{kind}] must be 6-32 digits")
        try:
            ZoneInfo(self.callback_sms_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"CALLBACK_SMS_TIMEZONE: unknown time zone "
                            f"{self.callback_sms_timezone!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _no_test_clock_in_production(self) -> Settings:
        if self.is_production and self.business_hours_clock is not None:
            raise ValueError("IVR_BUSINESS_HOURS_CLOCK is for tests and must not be set in "
                             "production")
        if self.business_hours_clock is not None and self.business_hours_clock.tzinfo is None:
            raise ValueError("IVR_BUSINESS_HOURS_CLOCK needs a UTC offset")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if not self.is_production:
            return self
        problems: list[str] = []
        for name, value, min_len in (
            ("IVR_JWT_SECRET", self.jwt_secret, 32),
            ("IVR_WEBHOOK_TOKEN", self.webhook_token, 24),
        ):
            raw = value.get_secret_value()
            if raw in (DEV_JWT_SECRET, DEV_WEBHOOK_TOKEN) or _looks_placeholder(raw):
                problems.append(f"{name} is missing or a placeholder")
            elif len(raw) < min_len:
                problems.append(f"{name} must be at least {min_len} characters")
        admin = self.admin_password.get_secret_value()
        if admin == DEV_ADMIN_PASSWORD or len(admin) < 12 or _looks_placeholder(admin):
            problems.append("IVR_ADMIN_PASSWORD must be set to a non-default value of 12+ chars")
        for name in ("database_url", "redis_url", "temporal_address"):
            if not getattr(self, name):
                problems.append(f"{name.upper()} must be set in production")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self


def _looks_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    return not lowered or any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def generate_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret, for operators creating production values."""
    return secrets.token_urlsafe(nbytes)


@lru_cache
def get_settings() -> Settings:
    return Settings()
