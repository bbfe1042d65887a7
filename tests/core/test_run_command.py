"""`burnline run` as a real process: BURNLINE_ADMIN_ENDPOINT moves the admin server of a file without
an `admin:` section, and the admin /metrics has no `_created` series (issue 10)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import yaml

from tests.forward_frames import ForwardClient, event_time, forward
from tests.process import BurnlineProcess
from tests.support import free_port


def write_config(path: Path, forward_port: int) -> Path:
    config = {
        "receivers": {"forward": {"endpoint": f"127.0.0.1:{forward_port}"}},
        "exporters": {"local": {}},
        "service": {
            # No admin section: BurnlineProcess sets BURNLINE_ADMIN_ENDPOINT and waits on that port.
            "data_dir": str(path.parent / "data"),
            "pipelines": {"logs": {"receivers": ["forward"], "exporters": ["local"]}},
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def test_admin_endpoint_from_the_environment_and_no_created_series(tmp_path: Path) -> None:
    forward_port = free_port()
    proc = BurnlineProcess(write_config(tmp_path / "burnline.yaml", forward_port), tmp_path)
    await proc.start()  # fails unless /readyz answers on the variable's port
    try:
        client = await ForwardClient.connect(forward_port)
        try:
            entries = [[event_time(int(time.time())), {"log": "hello"}]]
            await client.send(forward("app.test", entries, {"chunk": "c1"}))
            assert await client.receive(timeout=60) == {"ack": "c1"}
        finally:
            await client.close()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{proc.admin_port}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
    finally:
        await proc.stop()
    samples = [line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")]
    assert "burnline_records_accepted_total" in samples  # the counters are there ...
    assert [name for name in samples if name.endswith("_created")] == []  # ... without their twins
