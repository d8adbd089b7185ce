"""Services as the CLI, the HTTP app and the UI see them: build a runtime, predict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gristmill.access import Action, requires
from gristmill.definitions.objects import Table
from gristmill.definitions.services import Service
from gristmill.errors import NotMaterializedError, UnknownServiceError
from gristmill.workspace.shapes import ServiceInfo

if TYPE_CHECKING:
    from gristmill.serving.runtime import Prediction, ServiceRuntime, View
    from gristmill.workspace.core import Workspace


class Services:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def spec(self, name: str) -> Service:
        found = self.ws.project.services.get(name)
        if found is None:
            names = sorted(self.ws.project.services)
            raise UnknownServiceError(
                f"no service named {name!r} in this project",
                hint=f"services: {', '.join(names)}" if names else "declare one with gm.service()",
            )
        return found

    def runtime(self, name: str, *, alias: str | None = None) -> ServiceRuntime:
        """The service with its model alias loaded (digest-verified) and its views read."""
        spec = self.spec(name)
        model = self.ws.models.load(spec.model, alias or spec.alias)
        views = [self._view(spec, v) for v in spec.lookups]
        challenger = None
        if spec.challenger and spec.challenger in self.ws.catalog.aliases(spec.model):
            challenger = self.ws.models.load(spec.model, spec.challenger)
        from gristmill.serving.runtime import ServiceRuntime  # numpy, models: when serving

        return ServiceRuntime(spec, model, views, self.ws.online_store, challenger=challenger)

    def versions(self, name: str) -> tuple[int | None, int | None]:
        """The versions the service's aliases point at now: (champion, challenger)."""
        spec = self.spec(name)
        aliases = self.ws.catalog.aliases(spec.model)
        return aliases.get(spec.alias), aliases.get(spec.challenger) if spec.challenger else None

    def _view(self, spec: Service, name: str) -> View:
        node = self.ws.graph.nodes[name]
        assert isinstance(node, Table) and node.feature is not None
        state = self.ws.online_store.state(name)
        if state is None:
            raise NotMaterializedError(
                f"service {spec.name!r}: the online store has no rows of {name!r} yet",
                hint="run `gristmill run` to build the feature view and fill the store",
            )
        from gristmill.serving.runtime import View

        return View(name, node.feature.entity, state.columns)

    @requires(Action.READ)
    def list(self) -> list[ServiceInfo]:
        """Every service: its model, alias and the versions they point at now, lookups."""
        out = []
        for spec in sorted(self.ws.project.services.values(), key=lambda s: s.name):
            champion, challenger = self.versions(spec.name)
            out.append(
                ServiceInfo(
                    name=spec.name,
                    model=spec.model,
                    alias=spec.alias,
                    version=champion,
                    challenger=spec.challenger,
                    challenger_version=challenger,
                    lookups=list(spec.lookups),
                    request_features=list(spec.request_features),
                )
            )
        return out

    @requires(Action.PREDICT)
    def predict(
        self, name: str, entity: Mapping[str, Any], features: Mapping[str, Any] | None = None
    ) -> Prediction:
        return self.runtime(name).predict(entity, features or {})
