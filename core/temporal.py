"""Temporal client, workflow ids and the custom search attributes every call carries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

if TYPE_CHECKING:
    import temporalio.client

    from core.config import Settings

# Custom search attributes: what operators filter calls by in the Temporal UI and what the
# analytics read for live calls. The dev server registers them at start (`ivr dev`, tests);
# a production namespace needs them created once (`temporal operator search-attribute create`).
FLOW_ID = SearchAttributeKey.for_int("FlowId")
FLOW_VERSION = SearchAttributeKey.for_int("FlowVersion")
CURRENT_NODE = SearchAttributeKey.for_keyword("CurrentNode")
CALL_STATUS = SearchAttributeKey.for_keyword("CallStatus")
QUEUE_NAME = SearchAttributeKey.for_keyword("QueueName")
CALLER_HASH = SearchAttributeKey.for_keyword("CallerHash")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (
    FLOW_ID,
    FLOW_VERSION,
    CURRENT_NODE,
    CALL_STATUS,
    QUEUE_NAME,
    CALLER_HASH,
)

# The type names the Temporal CLI and server use (`--search-attribute FlowId=Int`).
_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}

SEARCH_ATTRIBUTE_TYPES: dict[str, str] = {
    key.name: _TYPE_NAMES[key.indexed_value_type] for key in SEARCH_ATTRIBUTES
}


def temporal_target(settings: Settings) -> str:
    """`host:port` of the frontend: TEMPORAL_ADDRESS, else the embedded dev server."""
    return settings.temporal_address or f"127.0.0.1:{settings.temporal_port}"


async def connect(settings: Settings) -> temporalio.client.Client:
    """A client for the configured namespace (TLS and API key when the settings ask for them)."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    # tls=None lets the SDK turn TLS on when an API key is given (Temporal Cloud needs both).
    return await Client.connect(
        temporal_target(settings),
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=True if settings.temporal_tls else None,
        data_converter=pydantic_data_converter,
    )


def with_data_converter(client: temporalio.client.Client) -> temporalio.client.Client:
    """The same connection with our data converter (pydantic models on the wire)."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    config = client.config()
    config["data_converter"] = pydantic_data_converter
    return Client(**config)


def call_workflow_id(call_sid: str) -> str:
    """The one workflow of a call; carrier retries of the first webhook land on the same id."""
    return f"call-{call_sid}"


def callback_workflow_id(callback_id: int) -> str:
    """The workflow that dials a scheduled voice callback back."""
    return f"callback-{callback_id}"
