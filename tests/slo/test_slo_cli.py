"""``burnline slo rules`` and ``burnline slo status`` (via collector.slo.cli): output that promtool
accepts, clear errors for bad input and an unreachable burnline."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from collector.slo import cli
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "slos" / "examples.yaml"
PROMTOOL = shutil.which("promtool")

SLO = {
    "name": "api-errors",
    "service": "api",
    "objective": 99.5,
    "sli": {
        "metrics": {
            "total": 'http_requests_total{job="api"}',
            "bad": 'http_requests_total{job="api",code=~"5.."}',
        }
    },
}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")
def test_rules_from_files_and_from_a_config_pass_promtool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert PROMTOOL is not None
    slo_file = tmp_path / "api.yaml"
    slo_file.write_text(yaml.safe_dump({"slos": [SLO]}))
    config_file = tmp_path / "burnline.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "receivers": {"otlp": {}},
                "exporters": {"local": {}},
                "service": {"pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["local"]}}},
                "slo_files": ["api.yaml"],
            }
        )
    )
    for argv in (["rules", str(slo_file)], ["rules", "-c", str(config_file)]):
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        rules = yaml.safe_load(out)
        records = {r.get("record") for g in rules["groups"] for r in g["rules"]}
        assert (
            "slo:sli_error:ratio_rate5m" in records and "slo:period_error_budget_remaining:ratio" in records
        )
        assert 'burnline_slo_events_total{slo="api-errors"' in out
        rule_file = tmp_path / "rules.yaml"
        rule_file.write_text(out)
        check = subprocess.run(
            [PROMTOOL, "check", "rules", str(rule_file)], check=False, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    if EXAMPLES.exists():
        assert cli.main(["rules", str(EXAMPLES)]) == 0
        assert "groups:" in capsys.readouterr().out


def test_rules_report_bad_specs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"slos": [{**SLO, "objective": 100.5}, {**SLO, "sli": {"metrics": {"total": "x{"}}}]})
    )
    assert cli.main(["rules", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}: invalid configuration:\n")  # several problems: one a line
    assert "\n  slos[0].objective: objective is a percentage strictly between 0 and 100" in err
    assert "\n  slos[1].sli.metrics.total: selector 'x{'" in err
    assert cli.main(["rules", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err
    assert cli.main(["rules"]) == 2


def test_status_names_an_unreachable_burnline(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert cli.main(["status", "--admin", f"127.0.0.1:{port}", "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach burnline's admin server at http://127.0.0.1:{port}/api/v1/slos" in err


def test_the_burnline_command_has_slo_and_validate_reads_slo_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.cli import main

    (tmp_path / "slos").mkdir()
    (tmp_path / "slos" / "good.yaml").write_text(yaml.safe_dump({"slos": [SLO]}))
    config = tmp_path / "burnline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "receivers": {"otlp": {"http": {"endpoint": "127.0.0.1:0"}}},
                "exporters": {"local": {"path": str(tmp_path / "store.db")}},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["local"]}}},
                "slo_files": ["slos/*.yaml"],
            }
        )
    )
    assert main(["validate", "-c", str(config)]) == 0
    assert "1 SLO(s)" in capsys.readouterr().out
    # A broken SLO file makes the config invalid, naming the file and the key.
    bad = {**SLO, "name": "bad", "objective": 100}
    (tmp_path / "slos" / "bad.yaml").write_text(yaml.safe_dump({"slos": [bad]}))
    assert main(["validate", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "objective" in err
    # `burnline slo rules -c` is the same command through the main parser.
    (tmp_path / "slos" / "bad.yaml").unlink()
    assert main(["slo", "rules", "-c", str(config)]) == 0
    assert "slo:sli_error:ratio_rate5m" in capsys.readouterr().out


async def test_status_filters_and_says_what_it_left_out(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.status.test_slo_query import admin_client, burning_engine

    engine, _ = burning_engine()  # 250 SLOs; svc-3's 25 burn and page
    async with admin_client(engine) as client:
        admin = f"{client.host}:{client.port}"

        def status(*flags: str) -> tuple[int, str, str]:
            code = cli.main(["status", "--admin", admin, *flags])
            out, err = capsys.readouterr()
            return code, out, err

        code, out, _ = await asyncio.to_thread(
            status, "--service", "svc-3", "--sort", "budget", "--limit", "2"
        )
        assert code == 0
        assert [line.split()[0] for line in out.splitlines() if "service=" in line] == ["slo-003", "slo-013"]
        assert out.endswith("2 of 25 matching SLOs shown (250 in all)\n")

        code, out, _ = await asyncio.to_thread(status, "--firing", "--json")
        document = json.loads(out)
        assert code == 0 and (document["total"], document["matched"], len(document["slos"])) == (250, 25, 25)

        code, out, _ = await asyncio.to_thread(status, "--name", "nothing-*")
        assert (code, out) == (0, "no SLO matches\n")

        code, out, _ = await asyncio.to_thread(status, "--limit", "3")
        assert code == 0 and out.count("service=") == 3 and out.endswith("3 of 250 SLOs shown\n")

        # What the API refuses, it names; the command says so.
        code, _, err = await asyncio.to_thread(status, "--limit", "0")
        assert code == 1 and "answered 400 Bad Request: query parameter 'limit'" in err

        code, out, _ = await asyncio.to_thread(status)
        assert code == 0 and out.count("service=") == 250 and "shown" not in out
