"""SLO arithmetic: error budgets and multi-window, multi-burn-rate thresholds.

The alerting scheme is the one the Google SRE workbook recommends (chapter
"Alerting on SLOs", table "Recommended parameters for burn rate alerts"):

    severity  long window  short window  burn rate  budget consumed
    page      1h           5m            14.4       2 %
    page      6h           30m           6          5 %
    ticket    1d           2h            3          10 %
    ticket    3d           6h            1          10 %

A burn rate is how fast the budget goes, relative to spending it exactly over
the SLO period: at burn rate 1 the budget lasts the period. The workbook's
rates are relative to a 30-day period. What an alert is about is the share of
the budget that the long window consumed:

    budget fraction consumed = burn_rate * long_window / period

so for another period the burn rate is scaled to keep that fraction (a page
still means "2 % of the budget went in one hour"):

    burn_rate(period) = burn_rate(30 d) * period / 30 d

An alert fires when the error ratio over both windows exceeds

    threshold = burn_rate * error_budget,   error_budget = 1 - SLO

e.g. for 99.99 % over 30 days, page (1h): 14.4 * 0.0001 = 0.00144.
"""

from __future__ import annotations

from msgspec import Struct

__all__ = [
    "WINDOWS",
    "WORKBOOK_PERIOD_DAYS",
    "BurnWindow",
    "budget_consumed",
    "burn_rate",
    "error_budget",
    "threshold",
]

WORKBOOK_PERIOD_DAYS = 30
# Rounding that removes binary noise (1 - 99.9/100 = 0.0010000000000000009)
# and keeps every digit a target in percent can have.
_DIGITS = 12


class BurnWindow(Struct, frozen=True):
    """One row of the workbook's table."""

    severity: str  # page | ticket: what Alertmanager routes on
    long: str  # Prometheus durations
    short: str
    workbook_rate: float  # relative to a 30-day period

    @property
    def long_hours(self) -> float:
        return _hours(self.long)


WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow("page", "1h", "5m", 14.4),
    BurnWindow("page", "6h", "30m", 6.0),
    BurnWindow("ticket", "1d", "2h", 3.0),
    BurnWindow("ticket", "3d", "6h", 1.0),
)


def error_budget(objective_percent: float) -> float:
    """The share of events allowed to be bad: 99.9 -> 0.001."""
    if not 0 < objective_percent < 100:
        raise ValueError(f"an objective is a percentage between 0 and 100, not {objective_percent}")
    return round(1 - objective_percent / 100, _DIGITS)


def burn_rate(window: BurnWindow, period_days: int) -> float:
    """The workbook's burn rate, scaled from 30 days to `period_days` so that
    the alert still fires at the same fraction of the budget consumed."""
    return round(window.workbook_rate * period_days / WORKBOOK_PERIOD_DAYS, _DIGITS)


def threshold(window: BurnWindow, objective_percent: float, period_days: int) -> float:
    """The error ratio above which the window pair fires: burn rate * budget."""
    return round(burn_rate(window, period_days) * error_budget(objective_percent), _DIGITS)


def budget_consumed(window: BurnWindow, period_days: int) -> float:
    """The fraction of the period's budget the long window has consumed when
    the alert fires: burn_rate * long_window / period (independent of the period)."""
    return round(burn_rate(window, period_days) * window.long_hours / (period_days * 24), _DIGITS)


def _hours(duration: str) -> float:
    units = {"m": 1 / 60, "h": 1.0, "d": 24.0}
    return float(duration[:-1]) * units[duration[-1]]
