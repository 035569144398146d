"""Notifications: channels (`[[notify]]`), the outbox in the store, and its delivery.

Events are written to the store's outbox in the same transaction as the fact they report
(a run's result, a skipped firing, a lost run, a start); the dispatcher sends them in the
background - never on the scheduling path - with retries, a rate limit per channel, and
a claim with an expiry so that each is sent once whichever daemon process sends it.
"""

from evercron.notify.channels import Channel, Smtp, read_channels

__all__ = ["Channel", "Smtp", "read_channels"]
