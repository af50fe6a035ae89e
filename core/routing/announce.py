"""What a queued caller hears: position and estimated-wait announcements. Pure (workflow-safe).

The queue node (workflow) and the API's answer to a hold poll (core.routing.hold) both build
the words here, so a caller hears the same sentences whichever of them answered.
"""

from __future__ import annotations

from core.routing.ewt import spoken_wait

CALLBACK_OFFER = "To be called back without losing your place in the queue, press 1."


def announcement(
    *,
    position: int,
    ewt_s: float | None,
    hold_message: str | None = None,
    announce_position: bool = True,
    announce_wait: bool = True,
) -> list[str]:
    """The sentences of one announcement, in order."""
    words: list[str] = []
    if hold_message:
        words.append(hold_message)
    if announce_position and position:
        if position == 1:
            words.append("You are next in the queue.")
        else:
            words.append(f"You are number {position} in the queue.")
    if announce_wait:
        spoken = spoken_wait(ewt_s)
        if spoken is not None and position > 1:
            words.append(f"Your estimated waiting time is {spoken}.")
        elif spoken is None:
            words.append("All our agents are busy at the moment.")
    if not words:
        words.append("Please stay on the line.")
    return words
