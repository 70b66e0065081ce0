"""All partner-service gates, by ``[services.NAME]``; the daemon builds one registry.

The engine asks ``get(job.service)`` for a job's gate; the admin socket reads
``limits_list()`` and ``breakers_list()`` (SPEC §3). On reload ``reconfigure`` keeps every
surviving gate *object* (attempts hold references to it) and its live state: tokens (capped to
the new burst), pause, breaker and retry budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from automationd.clock import Clock
from automationd.config.model import ServiceConfig
from automationd.engine.gate import ServiceGate
from automationd.obs.metrics import Metrics

__all__ = ["ServiceGate", "ServiceRegistry"]

log: structlog.typing.FilteringBoundLogger = structlog.get_logger("automationd.services")


class ServiceRegistry:
    """All gates by service name; ``reconfigure`` keeps each surviving gate object and state."""

    def __init__(
        self,
        configs: Mapping[str, ServiceConfig],
        clock: Clock,
        metrics: Metrics,
        make_gate: Callable[..., ServiceGate] = ServiceGate,
    ) -> None:
        self._make_gate = make_gate  # a fleet's gates share their limits (engine/fleetgate.py)
        self._clock = clock
        self._metrics = metrics
        self._gates: dict[str, ServiceGate] = {}
        self.reconfigure(configs)

    def get(self, name: str | None) -> ServiceGate | None:
        return None if name is None else self._gates.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._gates

    def limits_list(self) -> list[dict[str, Any]]:
        return [self._gates[name].limits() for name in sorted(self._gates)]

    def observe(self) -> None:
        """Before a scrape: refresh each service's token and in-flight gauges."""
        in_flight = self._metrics.service_in_flight
        for name, gate in self._gates.items():
            gate.limits()  # sets the tokens gauge
            in_flight.labels(name).set(gate.in_flight)

    def breakers_list(self) -> list[dict[str, Any]]:
        rows = (self._gates[name].breaker_row() for name in sorted(self._gates))
        return [row for row in rows if row is not None]

    def reconfigure(self, configs: Mapping[str, ServiceConfig]) -> None:
        """On reload: update surviving gates in place, add new ones, retire removed ones.

        Attempts already inside a removed service's gate finish on the old object.
        """
        for name in [n for n in self._gates if n not in configs]:
            self._gates.pop(name).retire()
            self._metrics.service_in_flight.remove(name)
            log.info("service.removed", service=name)
        for name, config in configs.items():
            gate = self._gates.get(name)
            if gate is None:
                self._gates[name] = self._make_gate(config, self._clock, self._metrics, name=name)
                # one series per service from the start: dashboards list services by it
                self._metrics.service_in_flight.labels(name).set(0)
            else:
                gate.reconfigure(config)
