"""Breaking pass of issue 28: the model's metrics path kept off the serving port, whatever
spec.monitoring.engineMetricsPath says (the pattern takes any printable ASCII after '/')."""

from __future__ import annotations

import pytest

from .conftest import StartSidecar, Stub


@pytest.mark.parametrize(
    "configured", ["/metrics/", "/metrics?name[]=vllm:num_requests_running", "/%6detrics"]
)
async def test_the_models_metrics_stay_off_the_serving_port_however_the_path_is_written(
    start_sidecar: StartSidecar, stub: Stub, configured: str
) -> None:
    sidecar = await start_sidecar(engine_metrics_path=configured)
    scrapes = stub.engine_scrapes
    async with sidecar.session.get(sidecar.url("/metrics")) as response:
        assert response.status == 404, configured
    assert stub.engine_scrapes == scrapes
