"""The command line refuses bad input as the HTTP API does (issue 12, item 6): every refusal is
exit status 2 and one line on stderr naming the option or argument and the rule, before anything
connects to Temporal or the database; expected runtime failures are one line too. No server is
needed: TEMPORAL_ADDRESS points at a port where nothing listens, so a value that slipped through
validation would show up as "cannot reach Temporal" instead of the field."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
#: Nothing listens here (the range the tests may use; never bound by them).
NOWHERE = "127.0.0.1:7597"
TODAY = datetime.now(UTC).date()
DUE = (TODAY - timedelta(days=5)).isoformat()
SOON = (TODAY + timedelta(days=3)).isoformat()
NOW = datetime.now(UTC).replace(microsecond=0).isoformat()
TWO_53 = str(2**53)


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run ``starter.py`` in this process (Typer's runner) with its own settings; returns
    ``(exit code, stdout, stderr)``."""
    env = {"TEMPORAL_ADDRESS": NOWHERE, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "DATA_DIR": str(tmp_path),
           "COLUMNS": "200", "LOG_LEVEL": "INFO"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from collections_domain.ops.settings import get_settings

    if hasattr(get_settings, "cache_clear"):
        get_settings.cache_clear()
    import starter

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(starter.app, list(args))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{args}: raised {result.exception!r}") from result.exception
        return result.exit_code, result.stdout, result.stderr

    yield run
    if hasattr(get_settings, "cache_clear"):
        get_settings.cache_clear()


def process(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``starter.py`` as a user runs it: its own process, stderr apart."""
    settings = {"TEMPORAL_ADDRESS": NOWHERE, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "DATA_DIR": str(tmp_path),
                "COLUMNS": "200", **env}
    return subprocess.run([sys.executable, str(ROOT / "starter.py"), *args], env={**os.environ, **settings}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def assert_one_line(code: int, stderr: str, field: str, rule: str = "", status: int = 2) -> None:
    lines = stderr.splitlines()
    assert "Traceback" not in stderr, stderr[:2000]
    assert code == status, (code, stderr[:2000])
    assert len(lines) == 1, f"{len(lines)} lines on stderr: {stderr[:2000]}"
    assert lines[0].startswith("error: ") and field in lines[0] and rule in lines[0], lines[0]


START = ["start-case", "--loan-id", "L-1", "--borrower-id", "B-1", "--principal-due-minor", "100", "--oldest-due-date", DUE]


# -- the examples, as real processes -------------------------------------------------


def test_start_case_with_1e23_is_one_line_naming_the_option(tmp_path):
    done = process(tmp_path, *START[:6], "1e23", *START[7:])
    assert_one_line(done.returncode, done.stderr, "--principal-due-minor", "whole number of minor units")


@pytest.mark.parametrize("amount", ["99999999999999999999999", "1e23", TWO_53])
@pytest.mark.parametrize("currency", [[], ["--currency", "CNY"]])
def test_pay_to_an_unknown_loan_with_a_huge_amount_is_one_line(tmp_path, amount, currency):
    done = process(tmp_path, "pay", "no-such-loan", amount, *currency)
    assert_one_line(done.returncode, done.stderr, "AMOUNT_MINOR")


@pytest.mark.parametrize("args, field, rule", [
    (START + ["--currency", "cny"], "--currency", "ISO 4217 code in capitals"),
    (["pay", "L-1", "100", "--currency", "cny"], "--currency", "ISO 4217 code in capitals"),
    (["start-case", "--loan-id", "L-é", *START[3:]], "--loan-id", "1-64 characters"),
    (["pay", "L-é", "100", "--currency", "CNY"], "LOAN_ID", "1-64 characters"),
    (["status", "L-é"], "LOAN_ID", "1-64 characters"),
    ([*START[:6], TWO_53, *START[7:]], "--principal-due-minor", "less than or equal to 9007199254740991"),
    (["pay", "L-1", TWO_53, "--currency", "CNY"], "AMOUNT_MINOR", "less than or equal to 9007199254740991"),
    (["promise", "L-1", TWO_53, SOON], "AMOUNT_MINOR", "less than or equal to 9007199254740991"),
])
def test_what_the_api_refuses_the_command_line_refuses(tmp_path, args, field, rule):
    done = process(tmp_path, *args)
    assert_one_line(done.returncode, done.stderr, field, rule)


def test_temporal_unreachable_is_one_line(tmp_path):
    done = process(tmp_path, *START)
    assert_one_line(done.returncode, done.stderr, "server unreachable", NOWHERE, status=1)


def test_a_database_that_is_down_is_one_line_without_its_statement(tmp_path):
    pytest.importorskip("psycopg", reason="PostgreSQL's driver: pip install -e '.[postgres]' (CI's second run has it)")
    done = process(tmp_path, "contacts", "L-1", DATABASE_URL="postgresql+psycopg://u:secret@127.0.0.1:7596/db")
    assert_one_line(done.returncode, done.stderr, "database", "OperationalError", status=1)
    assert "secret" not in done.stderr


# -- every input option, in this process -----------------------------------------------------

PLAN = ["propose-plan", "L-1", "--kind", "instalments", "--dates", f"{SOON},{(TODAY + timedelta(days=20)).isoformat()}"]
OUTCOME = ["record-outcome", "L-1", "--task-key", "k-1", "--outcome", "reached", "--agent", "A-1"]
PROMISED = ["--promise-amount-minor", "100", "--promise-date", SOON]
LEGAL = ["legal-status", "L-1", "--status", "judgment"]
CALL = ["record-call", "L-1", "--attempt-id", "A-1", "--at", NOW]
LINE = ["instalment", "L-1", "--instalment-id", "I-1", "--due-date", DUE, "--principal-minor", "100"]
ADJUST = ["adjust", "L-1", "--reason-code", "other"]

BAD = [
    # start-case: the API's CaseOpenRequest and rules.validation
    (["start-case", "--loan-id", "L 1", *START[3:]], "--loan-id"),
    (["start-case", "--loan-id", "x" * 65, *START[3:]], "--loan-id"),
    (["start-case", "--loan-id", "", *START[3:]], "--loan-id"),
    ([*START[:4], "B/1", *START[5:]], "--borrower-id"),
    ([*START[:6], "-1", *START[7:]], "--principal-due-minor"),
    ([*START[:6], "1.5", *START[7:]], "--principal-due-minor"),
    ([*START[:6], "1_000", *START[7:]], "--principal-due-minor"),
    ([*START[:6], "１２", *START[7:]], "--principal-due-minor"),
    ([*START[:6], "9007199254740991", *START[7:], "--interest-due-minor", "1"], "--principal-due-minor"),
    (START + ["--interest-due-minor", "1e3"], "--interest-due-minor"),
    (START + ["--fees-due-minor", TWO_53], "--fees-due-minor"),
    (START + ["--currency", "XYZ"], "--currency"),
    (START + ["--currency", "JPY"], "--currency"),
    (START + ["--currency", "CN"], "--currency"),
    ([*START[:8], "2026/01/05"], "--oldest-due-date"),
    ([*START[:8], "9999-01-01"], "--oldest-due-date"),
    ([*START[:8], "1900-01-01"], "--oldest-due-date"),
    (START + ["--timezone", "Mars/Olympus"], "--timezone"),
    (START + ["--jurisdiction", "ZZ"], "--jurisdiction"),
    (START + ["--policy-version", "nope"], "--policy-version"),
    (START + ["--region", "shanghai"], "--region"),
    (START + ["--portfolio", "a b"], "--portfolio"),
    # pay, promise: PaymentRequest, PromiseRequest, rules.validation.payment_entry_problem
    (["pay", "L 1", "100", "--currency", "CNY"], "LOAN_ID"),
    (["pay", "L-1", "0", "--currency", "CNY"], "AMOUNT_MINOR"),
    (["pay", "--currency", "CNY", "--", "L-1", "-5"], "AMOUNT_MINOR"),
    (["pay", "L-1", "100", "--currency", "yuan"], "--currency"),
    (["pay", "L-1", "100", "--currency", "CNY", "--payment-id", "p é"], "--payment-id"),
    (["pay", "L-1", "100", "--currency", "CNY", "--paid-at", "2999-01-01T00:00:00Z"], "--paid-at"),
    (["pay", "L-1", "100", "--currency", "CNY", "--paid-at", "1999-01-01T00:00:00Z"], "--paid-at"),
    (["pay", "L-1", "100", "--currency", "CNY", "--paid-at", "2026-01-01T00:00:00"], "--paid-at"),
    (["pay", "L-1", "100", "--currency", "CNY", "--paid-at", "yesterday"], "--paid-at"),
    (["promise", "L-1", "1e23", SOON], "AMOUNT_MINOR"),
    (["promise", "L-1", "0", SOON], "AMOUNT_MINOR"),
    (["promise", "L-1", "100", "20261205"], "PROMISED_DATE"),
    (["promise", "L-1", "100", SOON, "--promise-id", "p p"], "--promise-id"),
    # reading commands
    (["history", "L é"], "LOAN_ID"),
    (["history", "L-1", "--limit", "-1"], "--limit"),
    (["history", "L-1", "--limit", "1e3"], "--limit"),
    (["contacts", "L/1"], "LOAN_ID"),
    (["loan", "L\n1"], "LOAN_ID"),
    (["audit", "L é"], "LOAN_ID"),
    # propose-plan: PlanRequest
    (PLAN + ["--kind", "gift"], "--kind"),
    ([*PLAN[:5], "2026-13-01"], "--dates"),
    (PLAN + ["--first-minor", "1e3"], "--first-minor"),
    (PLAN + ["--first-minor", TWO_53], "--first-minor"),
    (["propose-plan", "L-1", "--kind", "waiver", "--waive-minor", "0"], "--waive-minor"),
    (["propose-plan", "L-1", "--kind", "deferral", "--new-due-date", "soon"], "--new-due-date"),
    (["propose-plan", "L-1", "--kind", "waiver", "--waive-minor", "100", "--pay-by", "1/2/2026"], "--pay-by"),
    (PLAN + ["--approver", "a b"], "--approver"),
    (PLAN + ["--proposed-by", "é"], "--proposed-by"),
    (PLAN + ["--plan-id", "p p"], "--plan-id"),
    # record-outcome: ContactOutcomeRequest
    ([*OUTCOME[:3], "k k", *OUTCOME[4:]], "--task-key"),
    ([*OUTCOME[:5], "happy", *OUTCOME[6:]], "--outcome"),
    ([*OUTCOME[:7], "é"], "--agent"),
    (OUTCOME + ["--note", ""], "--note"),
    (OUTCOME + ["--note", "x" * 2001], "--note"),
    (OUTCOME + ["--promise-amount-minor", "1e3", "--promise-date", SOON], "--promise-amount-minor"),
    (OUTCOME + ["--promise-amount-minor", "100"], "--promise-date"),
    (OUTCOME + ["--promise-amount-minor", "100", "--promise-date", "soon"], "--promise-date"),
    (OUTCOME + PROMISED + ["--promise-id", "p p"], "--promise-id"),
    (OUTCOME + ["--dispute-id", "d d"], "--dispute-id"),
    # the case signals: the models the API checks them with
    (["dispute", "L-1", "--dispute-id", "D 1"], "--dispute-id"),
    (["dispute", "L-1", "--dispute-id", "D-1", "--reason-code", "bored"], "--reason-code"),
    (["dispute", "L é", "--dispute-id", "D-1"], "LOAN_ID"),
    (["resolve-dispute", "L-1", "--dispute-id", "D-1", "--resolution", "maybe"], "--resolution"),
    (["resolve-dispute", "L-1", "--dispute-id", "D-1", "--resolution", "upheld", "--corrected-outstanding-minor", TWO_53],
     "--corrected-outstanding-minor"),
    (["resolve-dispute", "L-1", "--dispute-id", "D-1", "--resolution", "upheld", "--corrected-outstanding-minor", "1e3"],
     "--corrected-outstanding-minor"),
    (["cease-contact", "L-1", "--request-id", "é"], "--request-id"),
    (["hardship", "L-1", "--hardship-id", "h h"], "--hardship-id"),
    (["bankruptcy", "L-1", "--notice-id", "n/1"], "--notice-id"),
    (["deceased", "L-1", "--notice-id", ""], "--notice-id"),
    (["breathing-space", "L-1", "--breathing-space-id", "b b"], "--breathing-space-id"),
    # legal-status: LegalStatusUpdate
    (["legal-status", "L-1", "--status", "won"], "--status"),
    (LEGAL + ["--event-id", "e e"], "--event-id"),
    (LEGAL + ["--occurred-on", "01/01/2026"], "--occurred-on"),
    (LEGAL + ["--occurred-on", "9999-12-31"], "--occurred-on"),
    (LEGAL + ["--awarded-minor", TWO_53], "--awarded-minor"),
    (LEGAL + ["--court-costs-minor", "-1"], "--court-costs-minor"),
    # record-call, preferences
    ([*CALL[:3], "a a", *CALL[4:]], "--attempt-id"),
    ([*CALL[:5], "2026-01-01"], "--at"),
    ([*CALL[:5], "2999-01-01T00:00:00Z"], "--at"),
    ([*CALL[:5], "1999-01-01T00:00:00Z"], "--at"),
    (CALL + ["--number-id", "+44 20"], "--number-id"),
    (CALL + ["--borrower-id", "é"], "--borrower-id"),
    (CALL + ["--source", "pigeon"], "--source"),
    (["preferences", "B é"], "BORROWER_ID"),
    (["preferences", "B-1", "--time-zone", "Mars/Olympus"], "--time-zone"),
    (["preferences", "B-1", "--attorney-id", "a a"], "--attorney-id"),
    (["preferences", "B-1", "--opt-out", "fax"], "--opt-out"),
    (["preferences", "B-1", "--preferred-hours", "25:00-26:00"], "--preferred-hours"),
    # the loan book: ReversalRequest, InstalmentRequest, AdjustmentRequest, ScanRequestBody
    (["reverse", "L-1", "--payment-id", "p p"], "--payment-id"),
    (["reverse", "L-1", "--payment-id", "P-1", "--reason", "whim"], "--reason"),
    (["reverse", "L-1", "--payment-id", "P-1", "--reversal-id", "é"], "--reversal-id"),
    (["reverse", "L-1", "--payment-id", "P-1", "--reversed-at", "yesterday"], "--reversed-at"),
    ([*LINE[:3], "i i", *LINE[4:]], "--instalment-id"),
    ([*LINE[:5], "tomorrow", *LINE[6:]], "--due-date"),
    ([*LINE[:7], "1e23"], "--principal-minor"),
    (LINE + ["--interest-minor", TWO_53], "--interest-minor"),
    (LINE + ["--fees-minor", "-1"], "--fees-minor"),
    ([*LINE[:7], "0"], "--principal-minor"),
    (["adjust", "L-1", "--reason-code", "whim", "--cancel", "I-1"], "--reason-code"),
    (ADJUST, "--cancel"),
    (ADJUST + ["--cancel", "i i"], "--cancel"),
    (ADJUST + ["--add", "I-2:tomorrow:100"], "--add"),
    (ADJUST + ["--add", f"I-2:{SOON}:1e5"], "--add"),
    (ADJUST + ["--add", f"I-2:{SOON}:{TWO_53}"], "--add"),
    (ADJUST + ["--add", "nonsense"], "--add"),
    (ADJUST + ["--cancel", "I-1", "--adjustment-id", "é"], "--adjustment-id"),
    (ADJUST + ["--cancel", "I-1", "--reference", "r r"], "--reference"),
    (["loan-import", "/no/such/file.csv"], "PATH"),
    (["scan", "--zone", "Mars/Olympus"], "--zone"),
    (["scan", "--zone", ""], "--zone"),
    (["scan-schedules", "--zone", "Mars/Olympus"], "--zone"),
    (["load-portfolio", "--limit", "0"], "--limit"),
    (["load-portfolio", "--anchor", "9999-01-01"], "--anchor"),
    (["load-portfolio", "--anchor", "today"], "--anchor"),
    (["demo", "--loans", "0"], "--loans"),
    (["demo", "--anchor", "1/1/2026"], "--anchor"),
    (["simulate", "--limit", "0"], "--limit"),
    (["simulate", "--policy", "/no/such/policy.toml"], "--policy"),
    # the report, its schedule
    (["report", "--opened-from", "yesterday"], "--opened-from"),
    (["report", "--opened-from", "2026-12-01", "--opened-to", "2026-11-01"], "--opened-to"),
    (["report", "--jurisdiction", "cn"], "--jurisdiction"),
    (["report", "--arm", "a b"], "--arm"),
    (["report", "--channel", "Pigeon"], "--channel"),
    (["report", "--policy-version", "x" * 65], "--policy-version"),
    (["report-schedule", "--at", "25:00"], "--at"),
    (["report-schedule", "--zone", "Mars/Olympus"], "--zone"),
    (["report-schedule", "--days", "0"], "--days"),
    (["api", "--port", "0"], "--port"),
    (["api", "--port", "70000"], "--port"),
    # api-key: ApiKeyRequest
    (["api-key", "create", "--name", "é", "--scopes", "read"], "--name"),
    (["api-key", "create", "--name", "x", "--scopes", "root"], "--scopes"),
    (["api-key", "create", "--name", "x", "--scopes", ","], "--scopes"),
    (["api-key", "revoke", "xyz"], "KEY_ID"),
    # usage errors are one line too
    (["start-case", "--loan-id", "L-1"], "--borrower-id"),
    (["pay", "L-1", "100", "--currency"], "--currency"),
    (["status", "L-1", "--colour"], "--colour"),
]


@pytest.mark.parametrize("args, field", BAD, ids=[f"{args[0]}-{field}-{i}" for i, (args, field) in enumerate(BAD)])
def test_bad_input_is_one_line_naming_the_option(cli, args, field):
    code, _, stderr = cli(*args)
    assert_one_line(code, stderr, field)


def test_report_on_an_empty_database_prints_the_tables_and_writes_the_html(cli, tmp_path):
    from collections_domain.store.db import make_engine

    make_engine(f"sqlite:///{tmp_path / 'cli.db'}").dispose()  # the product's database, nothing recorded yet
    code, stdout, stderr = cli("report", "--html", str(tmp_path / "out" / "kpis.html"))
    assert code == 0, stderr
    assert "HTML report:" in stdout and (tmp_path / "out" / "kpis.html").is_file() and (tmp_path / "out" / "kpis.json").is_file()
    code, stdout, _ = cli("report", "--json", "--jurisdiction", "CN")
    assert code == 0 and '"cases":0' in stdout.replace(" ", "")
    assert not (tmp_path / "reports").exists()  # --json prints, and writes no file
    code, stdout, _ = cli("report", "--arm", "no-such:arm")
    assert code == 0 and "No case matches these filters" in stdout
    assert [p.name for p in (tmp_path / "reports").iterdir() if p.suffix == ".html"][0].startswith("report-")


def test_report_without_the_products_database_is_one_line_and_creates_nothing(cli, tmp_path):
    code, _, stderr = cli("report")
    assert_one_line(code, stderr, "database: no database at", status=1)
    assert not (tmp_path / "cli.db").exists()


def test_a_policy_file_that_breaks_a_rule_is_one_line_for_the_worker_the_demo_and_simulate(tmp_path):
    from collections_domain.rules.policy import DEFAULT_POLICY_PATH

    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
                   .replace('version = "2027.01-strategy"', 'version = "bad-1"')
                   .replace('{ name = "challenger", treatment = "early_call", share_bps = 5000 }',
                            '{ name = "challenger", treatment = "early_call", share_bps = 4000 }'), encoding="utf-8")
    rule = "share_bps must add up to 10000, got 9000"
    # No Prometheus endpoint: the default port may be taken by a worker of a test running alongside
    # (pytest-xdist), whose "metrics.unavailable" line would be a second line here.
    settings = {"TEMPORAL_ADDRESS": NOWHERE, "DATA_DIR": str(tmp_path), "COLLECTIONS_POLICY": str(bad),
                "METRICS_BIND_ADDRESS": ""}
    worker = subprocess.run([sys.executable, str(ROOT / "worker.py")], env={**os.environ, **settings}, cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert worker.returncode == 2 and "Traceback" not in worker.stderr, worker.stderr[:2000]
    assert worker.stderr.splitlines() == [f"worker: cannot start: COLLECTIONS_POLICY: {bad}: experiments.0: arms: {rule}"]
    demo = process(tmp_path, "demo", "--exit-after-load", COLLECTIONS_POLICY=str(bad))
    assert_one_line(demo.returncode, demo.stderr, "COLLECTIONS_POLICY", rule, status=1)
    simulate = process(tmp_path, "simulate", "--policy", str(bad))
    assert_one_line(simulate.returncode, simulate.stderr, "--policy", rule)


@pytest.mark.parametrize(("variable", "value", "rule"), [
    ("CONTACT_RATE_LIMITS", "pigeon=3", "must be <channel>=<contacts per second>"),
    ("CONTACT_RATE_LIMITS", "sms=-1", "the rate must be a number of contacts per second in (0, 10000]"),
    ("WORKER_PROCESSES", "0", "must be auto or a whole number from 1 to 64, got '0'"),
    ("WORKER_CACHED_CASES", "lots", "must be auto or a whole number from 100 to 1000000, got 'lots'"),
])
def test_a_bad_worker_setting_is_one_line_naming_it_and_status_2(tmp_path, variable, value, rule):
    settings = {"TEMPORAL_ADDRESS": NOWHERE, "DATA_DIR": str(tmp_path), "METRICS_BIND_ADDRESS": "", variable: value}
    worker = subprocess.run([sys.executable, str(ROOT / "worker.py")], env={**os.environ, **settings}, cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert worker.returncode == 2 and "Traceback" not in worker.stderr, worker.stderr[:2000]
    [line] = worker.stderr.splitlines()
    assert line.startswith(f"worker: cannot start: {variable}: ") and rule in line and "Value error" not in line, line
    assert line.count(variable) == 1, line
