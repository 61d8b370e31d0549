"""pytest fixtures for the integration tests: per-test and per-module work directories (kept
on failure, with log tails in the report), the mailpulse-milter binary (skipped when not
built), and a sweep of sandboxes a killed earlier run left behind."""
import os
import shutil

import pytest

import sandbox


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        pytest.exit("integration tests must run as root: they start Postfix, Dovecot and "
                    "smtp-sink on loopback", returncode=1)
    sandbox.reap_stale()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    item.session.mailpulse_failed = getattr(item.session, "mailpulse_failed", set())
    item.session.mailpulse_failed.update({item.nodeid, item.module.__name__})
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, sandbox.MailSystem):  # its logs explain most failures
            report.sections.append((f"sandbox {value.workdir} (kept)", value.diagnostics()))


def _failed(request, key: str) -> bool:
    return key in getattr(request.session, "mailpulse_failed", set())


def _finish_workdir(path, failed: bool) -> None:
    """Removes a work dir after success; keeps it after a failure (or if asked to)."""
    if failed or os.environ.get("MAILPULSE_KEEP_WORKDIR"):
        sandbox.keep_workdir(path)
        print(f"\nsandbox work dir kept: {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def workdir(request):
    """A fresh work dir for one test."""
    path = sandbox.make_workdir(request.node.name)
    yield path
    _finish_workdir(path, _failed(request, request.node.nodeid))


@pytest.fixture(scope="module")
def module_workdir(request):
    """A fresh work dir shared by the tests of one module."""
    path = sandbox.make_workdir(request.module.__name__.removeprefix("test_"))
    yield path
    _finish_workdir(path, _failed(request, request.module.__name__))


@pytest.fixture(scope="session")
def milter_binary():
    """Path of the built mailpulse-milter; skips the test if it has not been built."""
    path = sandbox.milter_binary()
    if not path.exists():
        pytest.skip(f"mailpulse-milter not built at {path} (build it, or set "
                    "MAILPULSE_BUILD_DIR to the build directory)")
    return path


@pytest.fixture(scope="module")
def probe_binary():
    """Path of the built mailpulse-probe; skips the module if it has not been built."""
    path = sandbox.probe_binary()
    if not path.exists():
        pytest.skip(f"mailpulse-probe not built at {path} (build it, or set "
                    "MAILPULSE_BUILD_DIR to the build directory)")
    return path


def start_mail_system(request, workdir, **kwargs) -> sandbox.MailSystem:
    """Starts a MailSystem that stops when the requesting fixture's scope ends. A failing test
    that uses it gets its log tails in the report."""
    system = sandbox.MailSystem(workdir, **kwargs)
    request.addfinalizer(system.stop)
    return system.start()
