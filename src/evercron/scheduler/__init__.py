"""The scheduler: when each job fires, claiming each firing once, running it."""

from evercron.scheduler.clock import Clock, ManualClock, SystemClock
from evercron.scheduler.core import ForbiddenConcurrency, KillOutcome, Scheduler
from evercron.scheduler.firing import Firing, FiringPath
from evercron.scheduler.launcher import Launch, Launcher, LaunchMode
from evercron.scheduler.live import LiveEvent, LiveOutput

__all__ = [
    "Clock",
    "Firing",
    "FiringPath",
    "ForbiddenConcurrency",
    "KillOutcome",
    "Launch",
    "LaunchMode",
    "Launcher",
    "LiveEvent",
    "LiveOutput",
    "ManualClock",
    "Scheduler",
    "SystemClock",
]
