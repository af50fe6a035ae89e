"""Carrier adapters: every carrier quirk stays here; the rest sees CallEvent and Reply only.

- `exotel`: Exotel's universal app (`/api/exotel/{token}/...`), one applet per turn.
- `xml`: TwiML / ExoML-style `<Response>` at the original `/api/ivr/*` paths.
- `gateway`: the `CallGateway` seam both talk to (`app.state.call_gateway`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def include_carrier_routers(app: FastAPI) -> None:
    """Mount every carrier webhook; the app sets `state.call_gateway` and `state.settings`."""
    from api.carriers import exotel, xml

    app.include_router(exotel.router)
    app.include_router(xml.router)
