"""The scheduler: when each job fires, claiming each firing once, running it."""

from evercron.scheduler.core import ForbiddenConcurrency, Scheduler
from evercron.scheduler.launcher import Firing, Launcher
from evercron.scheduler.live import LiveEvent, LiveOutput

__all__ = ["Firing", "ForbiddenConcurrency", "Launcher", "LiveEvent", "LiveOutput", "Scheduler"]
