"""Cron expressions: parse them and ask when they fire.

>>> from evercron.cron import parse
>>> import datetime as dt
>>> parse("0 9 * * MON-FRI").next(dt.datetime(2024, 3, 1, 12))
datetime.datetime(2024, 3, 4, 9, 0)

Pure computation: no I/O and no clock. See `CronExpr` for the rules.
"""

from evercron.cron.errors import CronSyntaxError
from evercron.cron.expr import MACROS, CronExpr, parse

__all__ = ["MACROS", "CronExpr", "CronSyntaxError", "parse"]
