"""The seeded flows as pure definitions: the production support flow and two small samples.

`core.seed_flows` stores and publishes them; tests and the simulator use them directly. Queue,
agent and business-hours ids are parameters so later seed steps can wire real rows in.
"""

from __future__ import annotations

from typing import Any

from core.flows.schema import FlowDefinition

MAIN_FLOW_NAME = "Main Customer Support Flow"
SIMPLE_FLOW_NAME = "Simple Greeting"
SALES_FLOW_NAME = "Sales Menu"


def _node(node_id: str, type_: str, name: str, x: float, y: float, **config: Any) -> dict:
    return {"id": node_id, "type": type_, "name": name, "position": {"x": x, "y": y},
            "config": config}


def _conn(src: str, port: str, dst: str) -> dict:
    return {"fromNode": src, "port": port, "toNode": dst}


def main_support_flow(
    *,
    business_hours_id: int | None = None,
    tech_queue_id: int | None = None,
    general_queue_id: int | None = None,
    billing_agent_ids: list[int] | None = None,
) -> FlowDefinition:
    """The original design's production flow: 17 nodes, 23 connections, recording on.

    welcome (business-hours check) → open: main menu, closed: voicemail → thank you → hangup.
    Menu: 1 billing → info → transfer; 2 tech → info → queue → transfer; 3 general → info →
    queue → transfer; 9 → info → any available agent; 0 → the menu again; retries used up →
    goodbye. Unanswered transfers and queue time-outs apologise and go to voicemail.
    """
    billing_target: dict[str, Any] = (
        {"agents": billing_agent_ids, "routingStrategy": "sequential"}
        if billing_agent_ids
        else {"routingStrategy": "skills_based", "skills": {"billing": 1}}
    )
    welcome: dict[str, Any] = {
        "message": "Welcome to customer support. This call may be recorded for quality "
        "and training purposes.",
        "checkBusinessHours": True,
        "voice": "female",
        "language": "en-IN",
    }
    if business_hours_id is not None:
        welcome["businessHoursId"] = business_hours_id
    tech_queue = {"queueId": tech_queue_id} if tech_queue_id is not None else {}
    general_queue = {"queueId": general_queue_id} if general_queue_id is not None else {}
    nodes = [
        _node("welcome", "welcome", "Welcome & Business Hours Check", 0, 0, **welcome),
        _node("main_menu", "menu", "Main Menu", 0, 150,
              message="For billing, press 1. For technical support, press 2. For general "
              "enquiries, press 3. To speak to an agent, press 9. To hear these options "
              "again, press 0.",
              options=[
                  {"digit": "1", "label": "Billing"},
                  {"digit": "2", "label": "Technical Support"},
                  {"digit": "3", "label": "General Enquiries"},
                  {"digit": "9", "label": "Speak to an Agent"},
                  {"digit": "0", "label": "Repeat Menu"},
              ],
              timeout=6, maxRetries=3,
              invalidMessage="Sorry, that is not a valid option.",
              timeoutMessage="Sorry, we did not receive your choice."),
        _node("billing_info", "play", "Billing Info", -450, 300,
              message="Connecting you to our billing team. Please keep your account number "
              "ready."),
        _node("billing_transfer", "transfer", "Transfer to Billing Agent", -450, 450,
              **billing_target, maxAttempts=3, ringTimeout=25, record=True),
        _node("tech_info", "play", "Tech Support Info", -150, 300,
              message="You have reached technical support. Please stay on the line for the "
              "next available engineer."),
        _node("tech_queue", "queue", "Tech Support Queue", -150, 450, **tech_queue,
              maxWaitTime=600, announcePosition=True, announceWaitTime=True,
              offerCallback=True),
        _node("tech_transfer", "transfer", "Transfer to Tech Agent", -150, 600,
              routingStrategy="skills_based", skills={"technical": 1}, maxAttempts=3,
              ringTimeout=25, record=True),
        _node("general_info", "play", "General Info", 150, 300,
              message="Thank you for calling. Please hold while we connect you."),
        _node("general_queue", "queue", "General Queue", 150, 450, **general_queue,
              maxWaitTime=600, announcePosition=True, announceWaitTime=True,
              offerCallback=True),
        _node("general_transfer", "transfer", "Transfer to General Agent", 150, 600,
              routingStrategy="skills_based", skills={"general": 1}, maxAttempts=3,
              ringTimeout=25, record=True),
        _node("agent_info", "play", "Agent Info", 450, 300,
              message="Connecting you to the next available agent."),
        _node("any_agent_transfer", "transfer", "Transfer to Any Available Agent", 450, 450,
              routingStrategy="longest_idle", maxAttempts=3, ringTimeout=25, record=True),
        _node("agents_busy", "play", "All Agents Busy", 0, 750,
              message="Sorry, all our agents are busy right now. Please leave a message "
              "after the beep and we will call you back."),
        _node("voicemail", "record", "Voicemail", 300, 900,
              message="Please leave your name, number and a short message after the beep. "
              "Press the hash key when you are done.",
              maxLength=120, finishOnKey="#", saveToVariable="voicemail_url", playBeep=True),
        _node("thank_you", "play", "Thank You", 300, 1050,
              message="Thank you. We have received your message and will get back to you "
              "soon."),
        _node("hangup", "hangup", "Hangup", 300, 1200, reason="completed"),
        _node("goodbye", "hangup", "Goodbye (No Valid Choice)", 0, 300,
              message="We did not receive a valid choice. Please call again. Goodbye.",
              reason="no_input"),
    ]
    connections = [
        _conn("welcome", "open", "main_menu"),
        _conn("welcome", "closed", "voicemail"),
        _conn("main_menu", "1", "billing_info"),
        _conn("main_menu", "2", "tech_info"),
        _conn("main_menu", "3", "general_info"),
        _conn("main_menu", "9", "agent_info"),
        _conn("main_menu", "0", "main_menu"),
        _conn("main_menu", "maxRetries", "goodbye"),
        _conn("billing_info", "next", "billing_transfer"),
        _conn("billing_transfer", "noAnswer", "agents_busy"),
        _conn("tech_info", "next", "tech_queue"),
        _conn("tech_queue", "next", "tech_transfer"),
        _conn("tech_queue", "timeout", "agents_busy"),
        _conn("tech_transfer", "noAnswer", "agents_busy"),
        _conn("general_info", "next", "general_queue"),
        _conn("general_queue", "next", "general_transfer"),
        _conn("general_queue", "timeout", "agents_busy"),
        _conn("general_transfer", "noAnswer", "agents_busy"),
        _conn("agent_info", "next", "any_agent_transfer"),
        _conn("any_agent_transfer", "noAnswer", "agents_busy"),
        _conn("agents_busy", "next", "voicemail"),
        _conn("voicemail", "next", "thank_you"),
        _conn("thank_you", "next", "hangup"),
    ]
    return FlowDefinition.model_validate({
        "name": MAIN_FLOW_NAME,
        "description": "Production customer support line: business-hours check, main menu "
        "for billing, technical support, general enquiries and agents, voicemail after hours.",
        "entryNode": "welcome",
        "nodes": nodes,
        "connections": connections,
    })


def simple_greeting_flow() -> FlowDefinition:
    """welcome → play → hangup."""
    return FlowDefinition.model_validate({
        "name": SIMPLE_FLOW_NAME,
        "description": "Greets the caller, plays a short message and hangs up.",
        "nodes": [
            _node("welcome", "welcome", "Welcome", 0, 0,
                  message="Hello, and thank you for calling."),
            _node("info", "play", "Information", 0, 150,
                  message="Our office is open Monday to Saturday, nine AM to six PM. "
                  "Visit our website for more information."),
            _node("bye", "hangup", "Goodbye", 0, 300, message="Goodbye.", reason="completed"),
        ],
        "connections": [_conn("welcome", "next", "info"), _conn("info", "next", "bye")],
    })


def sales_menu_flow() -> FlowDefinition:
    """A sales line: a menu to hear offers or leave a message for the sales team."""
    return FlowDefinition.model_validate({
        "name": SALES_FLOW_NAME,
        "description": "Sales line: hear this month's offers or leave a message for sales.",
        "nodes": [
            _node("welcome", "welcome", "Welcome", 0, 0, message="Welcome to sales."),
            _node("menu", "menu", "Sales Menu", 0, 150,
                  message="To hear this month's offers, press 1. To leave a message for our "
                  "sales team, press 2.",
                  options=[{"digit": "1", "label": "Offers"},
                           {"digit": "2", "label": "Leave a message"}],
                  timeout=5, maxRetries=2),
            _node("offers", "play", "Offers", -150, 300,
                  message="This month, get twenty percent off on annual plans."),
            _node("message", "record", "Message for Sales", 150, 300,
                  message="Please leave your name and number after the beep.",
                  maxLength=90, saveToVariable="sales_message_url"),
            _node("bye", "hangup", "Goodbye", 0, 450, message="Thank you for calling. Goodbye."),
        ],
        "connections": [
            _conn("welcome", "next", "menu"),
            _conn("menu", "1", "offers"),
            _conn("menu", "2", "message"),
            _conn("menu", "maxRetries", "bye"),
            _conn("offers", "next", "bye"),
            _conn("message", "next", "bye"),
        ],
    })


ORDER_FLOW_NAME = "Order Status"
# Where the sample looks orders up: an operator points it at their own order system.
ORDERS_URL = "https://orders.example.com/api/orders/{{ order_number }}"


def order_status_flow(*, orders_url: str = ORDERS_URL) -> FlowDefinition:
    """Gather → API → decision: "enter your order number", look it up, branch on its status.

    The order system answers JSON like {"status": "shipped", "eta": "Friday"}; a failed or
    slow lookup apologises, an unknown status says so.
    """
    bye = "Thank you for calling. Goodbye."
    return FlowDefinition.model_validate({
        "name": ORDER_FLOW_NAME,
        "description": "Order status line: the caller types an order number, the order "
        "system is asked for its status, and the call branches on the answer.",
        "nodes": [
            _node("welcome", "welcome", "Welcome", 0, 0,
                  message="Welcome to the order status line."),
            _node("order", "gather", "Order Number", 0, 150,
                  message="Please enter your order number, followed by the hash key.",
                  inputType="digits", minLength=6, maxLength=10, finishOnKey="#",
                  saveToVariable="order_number", maxRetries=2, timeout=10,
                  invalidMessage="Sorry, order numbers have six to ten digits.",
                  timeoutMessage="Sorry, we did not receive your order number."),
            _node("lookup", "api", "Look Up Order", 0, 300,
                  url=orders_url, method="GET", timeout=2,
                  headers={"Accept": "application/json"},
                  responseMappings={"status": "order_status", "eta": "order_eta"},
                  statusVariable="order_http_status"),
            _node("by_status", "decision", "Branch on Status", 0, 450,
                  decisionType="variable",
                  conditions=[
                      {"kind": "variable", "variable": "order_status", "operator": "equals",
                       "value": "shipped", "port": "shipped", "label": "Shipped"},
                      {"kind": "variable", "variable": "order_status", "operator": "equals",
                       "value": "delivered", "port": "delivered", "label": "Delivered",
                       "ignoreCase": True},
                      {"kind": "variable", "variable": "order_status", "operator": "in",
                       "value": ["processing", "packed"], "port": "processing",
                       "label": "Being prepared"},
                  ]),
            _node("shipped", "play", "Shipped", -300, 600,
                  message="Your order {{ order_number | digits }} has been shipped and will "
                  "reach you by {{ order_eta | default('the next few days') }}."),
            _node("delivered", "play", "Delivered", -100, 600,
                  message="Our records show that order {{ order_number | digits }} has been "
                  "delivered."),
            _node("processing", "play", "Being Prepared", 100, 600,
                  message="Your order {{ order_number | digits }} is being prepared and will "
                  "ship soon."),
            _node("unknown", "play", "Unknown Status", 300, 600,
                  message="We could not find the status of that order. Please check the "
                  "number and call again."),
            _node("lookup_failed", "play", "Lookup Failed", 300, 300,
                  message="Sorry, we cannot look up orders right now. Please try again later."),
            _node("bye", "hangup", "Goodbye", 0, 750, message=bye, reason="completed"),
            _node("no_number", "hangup", "No Valid Number", -300, 300,
                  message="We could not understand the order number. Goodbye.",
                  reason="no_input"),
        ],
        "connections": [
            _conn("welcome", "next", "order"),
            _conn("order", "valid", "lookup"),
            _conn("order", "invalid", "no_number"),
            _conn("lookup", "success", "by_status"),
            _conn("lookup", "error", "lookup_failed"),
            _conn("by_status", "shipped", "shipped"),
            _conn("by_status", "delivered", "delivered"),
            _conn("by_status", "processing", "processing"),
            _conn("by_status", "default", "unknown"),
            _conn("shipped", "next", "bye"),
            _conn("delivered", "next", "bye"),
            _conn("processing", "next", "bye"),
            _conn("unknown", "next", "bye"),
            _conn("lookup_failed", "next", "bye"),
        ],
    })


def sample_flows(
    *,
    business_hours_id: int | None = None,
    tech_queue_id: int | None = None,
    general_queue_id: int | None = None,
    billing_agent_ids: list[int] | None = None,
) -> list[FlowDefinition]:
    """Every seeded flow, the production flow first (checking `business_hours_id`, queueing
    in the given queues, transferring billing calls to the given agents)."""
    return [
        main_support_flow(
            business_hours_id=business_hours_id,
            tech_queue_id=tech_queue_id,
            general_queue_id=general_queue_id,
            billing_agent_ids=billing_agent_ids,
        ),
        simple_greeting_flow(),
        sales_menu_flow(),
        order_status_flow(),
    ]
