"""`mailpulse-probe imap-find` against a real Dovecot, with the probe messages delivered by a
real MTA path.

The sandbox: Postfix on loopback accepts mail for mailbox.test and hands it to Dovecot over
LMTP on a unix socket in its queue directory (transport lmtp:unix:private/dovecot-lmtp);
Dovecot files it into the Maildir of probe@mailbox.test and serves IMAP over implicit TLS
(imaps_port) and with STARTTLS (imap_port), with a self-signed certificate for
imap.mailpulse.test. Each message carries an X-Mailpulse-Probe header (a syntactically valid
token; its MAC is not checked here) and two X-Mailpulse-Hop headers added by the test.

Checked: a found probe is printed with its trail, hops in header order, and is gone from the
mailbox afterwards (imaplib and the Maildir); --keep leaves it; another id is not found and
nothing is deleted; of several probe messages (and a decoy whose id only starts with the asked
one, which the substring SEARCH also hits) only the asked one is deleted; a missing mailbox;
certificate verification against the system store, through --ca-file, and with the wrong name;
a password file others can read; a server that never greets. The bad-password test runs last:
after a failed login Dovecot slows later logins from the same address by seconds.
"""
import imaplib
import os
import re
import secrets
import ssl
import time

import pytest

import sandbox
import smtp_fakes

USER, PASSWORD = "probe@mailbox.test", "imap-secret-42"
TLS_NAME = "imap.mailpulse.test"

pytestmark = pytest.mark.usefixtures("probe_binary")


@pytest.fixture(scope="module")
def mail(request, module_workdir):
    """Postfix delivering mailbox.test over LMTP to Dovecot with IMAPS and STARTTLS."""
    postfix = sandbox.PostfixInstance(
        module_workdir, relay_domains="mailbox.test",
        relay_recipient_maps=f"inline:{{ {USER}=ok }}",
        transport_maps="inline:{ mailbox.test=lmtp:unix:private/dovecot-lmtp }")
    dovecot = sandbox.DovecotInstance(module_workdir, postfix, users={USER: PASSWORD},
                                      imap=True, imaps=True, lmtp=True, tls_name=TLS_NAME)
    request.addfinalizer(postfix.stop)  # finalizers run last-in first-out: Dovecot first
    postfix.start()
    request.addfinalizer(dovecot.stop)
    dovecot.start()
    return postfix, dovecot


def password_file(workdir, name: str, password: str, mode: int = 0o600):
    path = workdir / name
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    os.chmod(path, mode)
    return path


def probe_header(probe_id: str) -> str:
    return (f"X-Mailpulse-Probe: v=1; id={probe_id}; t={time.time_ns() // 1000}; src=probe; "
            "mac=q0gkqGFsS0N1bWhDd2h0YWJsZS1mYWtlLW1hYy12YWx1ZT0=")


def hop_headers(probe_id: str) -> list:
    t = time.time_ns() // 1000
    return [f"X-Mailpulse-Hop: hop=edge; t={t}; qid=Q{probe_id[:6]}A",
            f"X-Mailpulse-Hop: hop=relay; t={t + 1500}; qid=Q{probe_id[:6]}B"]


def maildir_files(dovecot, needle: str) -> list:
    box = dovecot.maildir(USER)
    return [p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir()
            if needle in p.read_text(errors="replace")]


def deliver(mail, probe_id: str, headers: list | None = None) -> list:
    """Sends a probe message through Postfix and waits until Dovecot has filed it. Returns
    the headers it carried."""
    postfix, dovecot = mail
    headers = headers or [probe_header(probe_id), *hop_headers(probe_id)]
    result = sandbox.smtp_session(postfix.port, to=USER, headers=headers,
                                  subject=f"probe {probe_id}")
    assert result.delivered, result
    sandbox.poll(lambda: maildir_files(dovecot, f"probe {probe_id}"), 20,
                 f"message {probe_id} in the Maildir")
    return headers


def mailbox_probe_headers(mail) -> list:
    """Every X-Mailpulse-Probe value in INBOX, as a mail client sees them (imaplib)."""
    _, dovecot = mail
    ctx = ssl.create_default_context(cafile=str(dovecot.cert_file))
    ctx.check_hostname = False  # it names imap.mailpulse.test; the chain is still verified
    imap = imaplib.IMAP4_SSL("127.0.0.1", dovecot.imaps_port, ssl_context=ctx, timeout=10)
    try:
        imap.login(USER, PASSWORD)
        imap.select("INBOX")
        _, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (X-MAILPULSE-PROBE)])")
        headers = [part[1].decode() for part in data if isinstance(part, tuple)]
        return [re.sub(r"\r?\n[ \t]", " ", h).split(":", 1)[1].strip()
                for h in headers if ":" in h]
    finally:
        imap.logout()


def ids_in_mailbox(mail) -> list:
    return sorted(re.search(r"\bid=([0-9a-f]+)", h)[1] for h in mailbox_probe_headers(mail))


def imap_find(mail, *args, tls: str = "implicit", password: str = PASSWORD,
              deadline: float = 60):
    """Runs `mailpulse-probe imap-find` against the sandbox Dovecot to completion."""
    postfix, dovecot = mail
    secret = password_file(postfix.workdir, "imap-password", password)
    port = dovecot.imaps_port if tls == "implicit" else dovecot.imap_port
    argv = [str(sandbox.probe_binary()), "imap-find", "--host", "127.0.0.1", "--port", str(port),
            "--tls", tls, "--user", USER, "--password-file", str(secret), "--timeout", "20",
            *map(str, args)]
    result = sandbox.run(argv, check=False, timeout=deadline)
    result.info = f"$ {' '.join(argv)}\nexit {result.returncode}\n{result.stdout}{result.stderr}"
    return result


def verified(mail) -> list:
    _, dovecot = mail
    return ["--ca-file", dovecot.cert_file, "--tls-name", TLS_NAME]


def test_found_probe_is_printed_with_its_trail_and_deleted(mail):
    probe_id = secrets.token_hex(16)
    headers = deliver(mail, probe_id)
    assert probe_id in ids_in_mailbox(mail)
    result = imap_find(mail, *verified(mail), probe_id)
    assert result.returncode == 0, result.info
    lines = result.stdout.splitlines()
    assert re.match(rf"FOUND probe {probe_id} in INBOX at 127\.0\.0\.1:\d+: 1 message, deleted",
                    lines[0]), result.info
    assert f"  {headers[0]}" in lines, result.info  # X-Mailpulse-Probe, as delivered
    hops = [line.strip() for line in lines if line.startswith("  X-Mailpulse-Hop: ")]
    assert hops == headers[1:], result.info  # both hops, in header order
    assert any(re.match(r"  Message-ID: <.+@client\.mailpulse\.test>", line) for line in lines)
    assert probe_id not in ids_in_mailbox(mail)
    assert not maildir_files(mail[1], f"probe {probe_id}")


def test_starttls_with_keep_leaves_the_message(mail):
    probe_id = secrets.token_hex(16)
    deliver(mail, probe_id)
    kept = imap_find(mail, *verified(mail), "--keep", probe_id, tls="starttls")
    assert kept.returncode == 0, kept.info
    assert re.match(rf"FOUND probe {probe_id} .*: 1 message, kept", kept.stdout), kept.info
    assert probe_id in ids_in_mailbox(mail)
    removed = imap_find(mail, *verified(mail), probe_id, tls="starttls")
    assert removed.returncode == 0, removed.info
    assert probe_id not in ids_in_mailbox(mail)


def test_another_id_is_not_found_and_nothing_is_deleted(mail):
    present = secrets.token_hex(16)
    deliver(mail, present)
    before = ids_in_mailbox(mail)
    absent = secrets.token_hex(16)
    result = imap_find(mail, *verified(mail), absent)
    assert result.returncode == 1, result.info
    assert result.stdout.startswith(f"NOT FOUND probe {absent} in INBOX at 127.0.0.1:"), \
        result.info
    assert ids_in_mailbox(mail) == before and present in before


def test_only_the_asked_probe_is_deleted(mail):
    asked, other = secrets.token_hex(16), secrets.token_hex(16)
    decoy = asked + "ff"  # SEARCH HEADER matches substrings: this one is a hit, not a match
    deliver(mail, asked)
    deliver(mail, other)
    deliver(mail, decoy, [probe_header(decoy), *hop_headers(decoy)])
    before = ids_in_mailbox(mail)
    assert {asked, other, decoy} <= set(before)
    result = imap_find(mail, *verified(mail), asked)
    assert result.returncode == 0, result.info
    assert ": 1 message, deleted" in result.stdout.splitlines()[0], result.info
    assert decoy not in result.stdout, result.info
    after = ids_in_mailbox(mail)
    assert sorted(set(before) - {asked}) == after, result.info


def test_missing_mailbox_is_reported_with_dovecots_text(mail):
    result = imap_find(mail, *verified(mail), "--mailbox", "Nowhere",
                       secrets.token_hex(16))
    assert result.returncode == 2, result.info
    assert re.match(r"ERROR mailbox_unavailable at select: NO (\[NONEXISTENT\] )?"
                    r"Mailbox doesn't exist: Nowhere \(", result.stdout), result.info


@pytest.mark.parametrize("args, reason", [
    ([], r"self[- ]signed"),  # the system store does not know the sandbox's certificate
    (["--ca-file", "CA"], r"mismatch"),  # trusted, but it does not name 127.0.0.1
    (["--ca-file", "CA", "--tls-name", "other.mailpulse.test"], r"mismatch"),
])
@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_certificate_is_verified(mail, args, reason, tls):
    probe_id = secrets.token_hex(16)
    deliver(mail, probe_id)
    args = [str(mail[1].cert_file) if a == "CA" else a for a in args]
    result = imap_find(mail, *args, probe_id, tls=tls)
    assert result.returncode == 2, result.info
    assert result.stdout.startswith("ERROR certificate_invalid at tls_handshake: "), result.info
    assert re.search(reason, result.stdout, re.I), result.info
    assert probe_id in ids_in_mailbox(mail)  # never logged in, so nothing was touched


def test_password_file_others_can_read_is_refused(mail):
    postfix, _ = mail
    loose = password_file(postfix.workdir, "imap-password-loose", PASSWORD, mode=0o644)
    result = sandbox.run([str(sandbox.probe_binary()), "imap-find", "--host", "127.0.0.1",
                          "--port", str(mail[1].imaps_port), "--user", USER,
                          "--password-file", str(loose), secrets.token_hex(16)], check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "readable by others; chmod 600 it" in result.stderr


@pytest.mark.parametrize("tls, phase", [("starttls", "greeting"), ("implicit", "tls_handshake")])
def test_server_that_never_greets_times_out(mail, tls, phase):
    with smtp_fakes.Tarpit() as tarpit:
        secret = password_file(mail[0].workdir, "imap-password", PASSWORD)
        started = time.monotonic()
        result = sandbox.run([str(sandbox.probe_binary()), "imap-find", "--host", "127.0.0.1",
                              "--port", str(tarpit.port), "--tls", tls, "--insecure",
                              "--phase-timeout", "0.5", "--user", USER, "--password-file",
                              str(secret), secrets.token_hex(16)], check=False, timeout=30)
        took = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.startswith(f"ERROR timeout at {phase}: "), result.stdout
    assert 0.5 <= took < 10, took


def test_bad_password_is_auth_rejected_with_dovecots_text(mail):
    """Last: Dovecot delays the next logins from this address after a failure."""
    probe_id = secrets.token_hex(16)
    deliver(mail, probe_id)
    wrong = "not-the-password-9"
    result = imap_find(mail, *verified(mail), probe_id, password=wrong)
    assert result.returncode == 2, result.info
    assert result.stdout.startswith(
        "ERROR auth_rejected at login: NO [AUTHENTICATIONFAILED] Authentication failed."), \
        result.info
    assert wrong not in result.stdout + result.stderr
    assert probe_id in ids_in_mailbox(mail)
