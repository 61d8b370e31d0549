"""Tests of the sandbox itself, without a milter: the sandboxed Postfix relays to the sink and
enforces its policy with the exact replies other tests rely on, TLS and SASL work, local
submission works, the sink counts exactly, and stopping leaves no process behind."""
import pytest

import sandbox
from conftest import start_mail_system
from sandbox import REJECTED_CLIENT, SASL_PASSWORD, SASL_USER, TRUSTED_CLIENT


@pytest.fixture(scope="module")
def mail(request, module_workdir):
    return start_mail_system(request, module_workdir)


def deliveries(mail, send) -> list:
    """Runs send() and returns the messages that reached the sink because of it; waits until
    Postfix's queue is empty, so everything accepted has been delivered."""
    before = {m.path for m in mail.sink.messages()}
    send()
    mail.postfix.wait_for_queue_empty()
    return [m for m in mail.sink.messages() if m.path not in before]


def test_relays_a_message_to_the_sink(mail):
    result = None

    def send():
        nonlocal result
        result = sandbox.send_swaks(mail.postfix.port, "alice@sink.test", subject="relay one")

    arrived = deliveries(mail, send)
    assert result.returncode == 0, result.output
    assert result.last_reply.startswith("250 2.0.0 Ok: queued as ")
    assert len(arrived) == 1
    assert arrived[0].rcpt_to == ["alice@sink.test"]
    assert arrived[0].header("Subject") == ["relay one"]


def test_relay_to_another_domain_is_denied(mail):
    result = sandbox.send_swaks(mail.postfix.port, "someone@other.test")
    assert result.returncode == 24, result.output  # swaks: RCPT failed
    assert result.last_reply == "554 5.7.1 <someone@other.test>: Relay access denied"


def test_unknown_user_is_rejected(mail):
    result = sandbox.send_swaks(mail.postfix.port, "nobody@sink.test")
    assert result.last_reply == ("550 5.1.1 <nobody@sink.test>: Recipient address rejected: "
                                 "User unknown in relay recipient table")


def test_client_on_the_access_map_is_rejected(mail):
    result = sandbox.send_swaks(mail.postfix.port, local_interface=REJECTED_CLIENT)
    assert result.last_reply == (f"554 5.7.1 <unknown[{REJECTED_CLIENT}]>: Client host "
                                 "rejected: Access denied")


def test_trusted_client_may_relay_anywhere(mail):
    arrived = deliveries(mail, lambda: sandbox.send_swaks(
        mail.postfix.port, "someone@other.test", local_interface=TRUSTED_CLIENT))
    assert [m.rcpt_to for m in arrived] == [["someone@other.test"]]


def test_multi_recipient_message_with_one_unknown_arrives_once(mail):
    result = None

    def send():
        nonlocal result
        result = sandbox.smtp_session(mail.postfix.port,
                                      ["alice@sink.test", "nobody@sink.test", "bob@sink.test"])

    arrived = deliveries(mail, send)
    assert result.codes("RCPT") == [250, 550, 250]
    assert result.delivered
    assert len(arrived) == 1 and arrived[0].rcpt_to == ["alice@sink.test", "bob@sink.test"]


def test_starttls_session_delivers(mail):
    result = None

    def send():
        nonlocal result
        result = sandbox.smtp_session(mail.postfix.port, "carol@sink.test", starttls=True)

    arrived = deliveries(mail, send)
    assert result.codes("STARTTLS") == [220] and result.tls_version == "TLSv1.3"
    assert result.delivered, result.replies
    assert "with ESMTPS id" in arrived[0].header("Received")[0]


def test_submission_requires_starttls(mail):
    result = sandbox.smtp_session(mail.postfix.submission_port)
    assert result.last_reply == "530 5.7.0 Must issue a STARTTLS command first"


def test_submission_refuses_relay_without_auth(mail):
    result = sandbox.smtp_session(mail.postfix.submission_port, "someone@other.test",
                                  starttls=True)
    assert result.last_reply == ("554 5.7.1 <someone@other.test>: Recipient address rejected: "
                                 "Access denied")


def test_submission_with_dovecot_auth_relays(mail):
    result = None

    def send():
        nonlocal result
        result = sandbox.smtp_session(mail.postfix.submission_port, "someone@other.test",
                                      starttls=True, auth=(SASL_USER, SASL_PASSWORD))

    arrived = deliveries(mail, send)
    assert result.codes("AUTH") == [235] and result.delivered, result.replies
    assert "with ESMTPSA id" in arrived[0].header("Received")[0]
    mail.postfix.wait_for_log(rf"sasl_method=PLAIN, sasl_username={SASL_USER}")


def test_submissions_port_with_implicit_tls_and_auth_relays(mail):
    result = None

    def send():
        nonlocal result
        result = sandbox.smtp_session(mail.postfix.submissions_port, "someone@other.test",
                                      implicit_tls=True, auth=(SASL_USER, SASL_PASSWORD))

    assert len(deliveries(mail, send)) == 1
    assert result.tls_version and result.delivered, result.replies


def test_local_sendmail_submission_arrives(mail):
    arrived = deliveries(mail, lambda: mail.postfix.sendmail("dave@sink.test",
                                                             subject="from sendmail"))
    assert len(arrived) == 1 and arrived[0].header("Subject") == ["from sendmail"]
    assert "from userid 0" in arrived[0].header("Received")[0]


def test_quit_after_rcpt_delivers_nothing(mail):
    result = None

    def send():
        nonlocal result
        result = sandbox.smtp_session(mail.postfix.port, "alice@sink.test", quit_after="RCPT")

    assert deliveries(mail, send) == []
    assert result.codes("RCPT") == [250] and result.codes("QUIT") == [221]


def test_drop_in_the_middle_of_data_delivers_nothing(mail):
    mark = mail.postfix.log_mark()
    result = None

    def send():
        nonlocal result
        result = sandbox.smtp_session(mail.postfix.port, "alice@sink.test", quit_after="DATA")

    assert deliveries(mail, send) == []
    assert result.codes("DATA") == [354] and not result.codes("QUIT")
    mail.postfix.wait_for_log(r"lost connection after DATA", since=mark)


def test_sink_counts_a_burst_exactly(mail):
    before = mail.sink.count()
    sandbox.run(["smtp-source", "-m", "60", "-s", "6", "-f", "burst@mailpulse.test",
                 "-t", "bob@sink.test", f"127.0.0.1:{mail.postfix.port}"])
    mail.sink.wait_for_count(before + 60)
    mail.postfix.wait_for_queue_empty()
    assert mail.sink.count() == before + 60


def test_wrong_password_is_refused(mail):
    # Last in this module: Dovecot slows later logins from this address after a failure.
    result = sandbox.smtp_session(mail.postfix.submission_port, starttls=True,
                                  auth=(SASL_USER, "wrong"))
    assert result.last_reply.startswith("535 5.7.8 Error: authentication failed")


def test_stop_leaves_no_process_behind(workdir):
    system = sandbox.MailSystem(workdir)
    with system:
        pids = [system.postfix.master_pid, system.dovecot.master_pid, system.sink.proc.pid]
        children = [p for p in sandbox.all_pids() if sandbox.parent_pid(p) in pids]
        assert all(sandbox.pid_alive(p) for p in pids) and children
    assert not [p for p in pids + children if sandbox.pid_alive(p)]


def test_parse_metrics_reads_labels_and_escapes():
    text = ('# HELP x_total X.\n# TYPE x_total counter\n'
            'x_total{direction="inbound",stage="rcpt",status="5.7.1"} 3\n'
            'x_total{direction="out\\"bound"} 2\nup 1\n')
    metrics = sandbox.parse_metrics(text)
    assert metrics[("up", frozenset())] == 1
    assert metrics[("x_total", frozenset({("direction", 'out"bound')}))] == 2
    assert sandbox.metric_sum(metrics, "x_total") == 5
    assert sandbox.metric_sum(metrics, "x_total", stage="rcpt") == 3
