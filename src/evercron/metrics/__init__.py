"""Per-job metrics: counted as runs happen (`RunMetrics`, a run observer), kept as running
totals in the store so that they never go backwards across a restart or a hot upgrade,
and rendered for `/metrics` in the Prometheus text format (`Scraper`)."""

from evercron.metrics.counts import RunMetrics
from evercron.metrics.scrape import Scraper

__all__ = ["RunMetrics", "Scraper"]
