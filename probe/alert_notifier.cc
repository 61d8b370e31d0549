#include "probe/alert_notifier.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>

#include "probe/alerts/notice_payload.h"
#include "probe/check_runner.h"
#include "probe/check_verdict.h"
#include "probe/resolver.h"
#include "shared/clock.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"
#include "shared/net/tls.h"

extern char** environ;

namespace mailpulse {
namespace {

constexpr double kMaxBackoffSeconds = 300;
constexpr double kChildPollSeconds = 0.05;
constexpr std::size_t kChildOutputBytes = 400;

std::string LocalHostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

const char* HttpErrorText(evhttp_request_error e) {
  switch (e) {
    case EVREQ_HTTP_TIMEOUT:
      return "timed out";
    case EVREQ_HTTP_EOF:
      return "connection closed without an answer";
    case EVREQ_HTTP_INVALID_HEADER:
      return "malformed answer";
    case EVREQ_HTTP_BUFFER_ERROR:
      return "connection failed";
    case EVREQ_HTTP_REQUEST_CANCEL:
      return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
      return "answer too long";
  }
  return "failed";
}

}  // namespace

struct AlertNotifiers::Channel {
  NotifierSpec spec;
  std::shared_ptr<SSL_CTX> tls;
  bool https = false;
  std::string host;
  int port = 0;
  std::string path;   // with the query
  std::string label;  // "oncall (slack https://hooks.slack.com/…)": what logs may show
};

struct AlertNotifiers::Delivery {
  enum class Wait { kNone, kRetry, kHttpDone, kChild };

  AlertNotifiers* owner = nullptr;
  std::uint64_t id = 0;
  std::shared_ptr<const Channel> channel;
  std::string what;  // "smtp-down/mx1 firing"
  std::string body;
  std::vector<std::pair<std::string, std::string>> env;
  int attempt = 0;
  Wait wait = Wait::kNone;
  EventPtr timer;
  evhttp_connection* conn = nullptr;  // owned
  int http_status = 0;
  std::string http_error;
  pid_t child = -1;
  int child_output = -1;  // read end of the child's stderr
  double child_deadline = 0;
  std::unique_ptr<CheckRunner> mail;

  ~Delivery() { EndAttempt(); }

  void EndAttempt() {
    if (conn != nullptr) evhttp_connection_free(conn);
    conn = nullptr;
    if (child_output >= 0) close(child_output);
    child_output = -1;
    child = -1;
  }
  void Arm(Wait w, double seconds) {
    wait = w;
    const timeval tv = ToTimeval(seconds);
    evtimer_add(timer.get(), &tv);
  }
};

AlertNotifiers::AlertNotifiers(event_base* base, Resolver* resolver, MetricsRegistry* registry,
                               std::string probe_name)
    : base_(base),
      resolver_(resolver),
      probe_name_(std::move(probe_name)),
      notifications_(registry->AddCounter(
          "mailpulse_alert_notifications_total",
          "Alert notices handed to a notifier, by how the delivery ended: sent, or failed "
          "after every retry.",
          {"notifier", "result"})),
      attempts_(registry->AddCounter("mailpulse_alert_notification_attempts_total",
                                     "Delivery attempts, by notifier and outcome (ok, error).",
                                     {"notifier", "result"})) {}

AlertNotifiers::~AlertNotifiers() = default;

Status AlertNotifiers::Configure(const std::vector<NotifierSpec>& notifiers) {
  std::map<std::string, std::shared_ptr<const Channel>> channels;
  for (const NotifierSpec& spec : notifiers) {
    auto c = std::make_shared<Channel>();
    c->spec = spec;
    const auto fail = [&](const std::string& why) {
      return Status::Error("notifier " + spec.name + ": " + why);
    };
    bool needs_tls = false;
    if (spec.kind == NotifierKind::kEmail) {
      needs_tls = spec.tls != "none";
      c->label = spec.name + " (email via " + spec.server_host + ":" +
                 std::to_string(spec.server_port) + ")";
    } else if (spec.kind == NotifierKind::kCommand) {
      c->label = spec.name + " (command " + spec.command[0] + ")";
    } else {
      std::unique_ptr<evhttp_uri, decltype(&evhttp_uri_free)> uri(
          evhttp_uri_parse(spec.url.c_str()), &evhttp_uri_free);
      if (!uri || evhttp_uri_get_host(uri.get()) == nullptr) return fail("malformed URL");
      const std::string scheme = evhttp_uri_get_scheme(uri.get());
      c->https = scheme == "https";
      needs_tls = c->https;
      c->host = evhttp_uri_get_host(uri.get());
      if (!c->host.empty() && c->host.front() == '[')
        c->host = c->host.substr(1, c->host.size() - 2);
      c->port = evhttp_uri_get_port(uri.get());
      if (c->port <= 0) c->port = c->https ? 443 : 80;
      const char* path = evhttp_uri_get_path(uri.get());
      c->path = path != nullptr && path[0] != '\0' ? path : "/";
      if (const char* q = evhttp_uri_get_query(uri.get())) c->path += std::string("?") + q;
      c->label = spec.name + " (" + NotifierKindName(spec.kind) + " " + RedactedUrl(spec.url) + ")";
    }
    if (needs_tls) {
      StatusOr<SslCtxPtr> ctx = NewClientTlsContext(spec.ca_file, spec.verify);
      if (!ctx.ok()) return fail(ctx.status().message());
      c->tls = std::shared_ptr<SSL_CTX>(ctx->release(), SSL_CTX_free);
    }
    channels[spec.name] = std::move(c);
    // Every series from 0, so that Prometheus' increase() sees the first failure too.
    for (const char* result : {"sent", "failed"}) notifications_.WithLabels({spec.name, result});
    for (const char* result : {"ok", "error"}) attempts_.WithLabels({spec.name, result});
  }
  channels_ = std::move(channels);
  return Status::Ok();
}

void AlertNotifiers::Deliver(const Notice& notice) {
  for (const std::string& name : notice.notifiers) {
    auto it = channels_.find(name);
    if (it == channels_.end()) {
      MP_LOG_ERROR("alert %s: no notifier named %s", notice.alert.id.c_str(), name.c_str());
      continue;
    }
    auto d = std::make_unique<Delivery>();
    d->owner = this;
    d->id = next_id_++;
    d->channel = it->second;
    d->what = notice.alert.id + " " + NoticeKindName(notice.kind);
    const NotifierSpec& spec = d->channel->spec;
    switch (spec.kind) {
      case NotifierKind::kCommand:
        d->body = NoticeJson(notice, probe_name_);
        d->env = NoticeEnvironment(notice, probe_name_);
        break;
      case NotifierKind::kEmail:
        d->body = NoticeEmail(notice, probe_name_,
                              spec.from.empty() ? "mailpulse@" + LocalHostName() : spec.from,
                              spec.to, UnixMicros() / 1000000);
        break;
      default:
        d->body = ChatPayload(spec.kind, notice, probe_name_);
    }
    d->timer.reset(evtimer_new(base_, &AlertNotifiers::OnTimer, d.get()));
    Delivery* raw = d.get();
    deliveries_[raw->id] = std::move(d);
    Attempt(raw);
  }
}

void AlertNotifiers::Attempt(Delivery* d) {
  ++d->attempt;
  d->wait = Delivery::Wait::kNone;
  switch (d->channel->spec.kind) {
    case NotifierKind::kCommand:
      StartCommand(d);
      return;
    case NotifierKind::kEmail:
      StartEmail(d);
      return;
    default:
      StartHttp(d);
  }
}

void AlertNotifiers::StartHttp(Delivery* d) {
  const Channel& c = *d->channel;
  bufferevent* bev = nullptr;
  if (c.https) {
    SSL* ssl = SSL_new(c.tls.get());
    if (ssl == nullptr) return AttemptDone(d->id, false, true, "SSL_new failed");
    if (Status s = PrepareClientSsl(ssl, c.host, c.spec.verify); !s.ok()) {
      SSL_free(ssl);
      return AttemptDone(d->id, false, false, s.message());
    }
    // The handshake itself fails on a certificate that does not verify: nothing, the URL's
    // token included, is sent to a server that is not the one named.
    SSL_set_verify(ssl, c.spec.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    bev = bufferevent_openssl_socket_new(base_, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == nullptr) return AttemptDone(d->id, false, true, "cannot make a TLS connection");
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  }
  d->conn = evhttp_connection_base_bufferevent_new(base_, resolver_->evdns(), bev, c.host.c_str(),
                                                   static_cast<ev_uint16_t>(c.port));
  if (d->conn == nullptr) return AttemptDone(d->id, false, true, "cannot make a connection");
  const timeval timeout = ToTimeval(c.spec.timeout_seconds);
  evhttp_connection_set_timeout_tv(d->conn, &timeout);
  evhttp_connection_set_retries(d->conn, 0);
  d->http_status = 0;
  d->http_error.clear();
  evhttp_request* req = evhttp_request_new(
      [](evhttp_request* r, void* arg) {
        auto* self = static_cast<Delivery*>(arg);
        self->http_status = r != nullptr ? evhttp_request_get_response_code(r) : 0;
        // Finish outside evhttp's callback: the connection is freed there.
        self->Arm(Delivery::Wait::kHttpDone, 0);
      },
      d);
  evhttp_request_set_error_cb(req, [](evhttp_request_error e, void* arg) {
    auto* self = static_cast<Delivery*>(arg);
    self->http_error = HttpErrorText(e);
    if (self->channel->https && self->conn != nullptr) {
      if (bufferevent* b = evhttp_connection_get_bufferevent(self->conn)) {
        if (const unsigned long ssl_error = bufferevent_get_openssl_error(b)) {
          self->http_error = "TLS: " + OpenSslErrorText(ssl_error);
        }
      }
    }
  });
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  const bool default_port = c.port == (c.https ? 443 : 80);
  const std::string host = (c.host.find(':') != std::string::npos ? "[" + c.host + "]" : c.host) +
                           (default_port ? "" : ":" + std::to_string(c.port));
  evhttp_add_header(headers, "Host", host.c_str());
  evhttp_add_header(headers, "Content-Type", "application/json");
  evhttp_add_header(headers, "User-Agent", "mailpulse-probe/" MAILPULSE_VERSION);
  evhttp_add_header(headers, "Connection", "close");
  evbuffer_add(evhttp_request_get_output_buffer(req), d->body.data(), d->body.size());
  if (evhttp_make_request(d->conn, req, EVHTTP_REQ_POST, c.path.c_str()) != 0) {
    AttemptDone(d->id, false, true, "cannot send the request");
  }
}

void AlertNotifiers::StartCommand(Delivery* d) {
  const NotifierSpec& spec = d->channel->spec;
  // Everything the child needs is made before fork: only async-signal-safe calls after it.
  std::vector<char*> argv;
  for (const std::string& a : spec.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "MAILPULSE_ALERT_", 16) != 0) env_strings.emplace_back(*e);
  }
  for (const auto& [k, v] : d->env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  int in[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) return AttemptDone(d->id, false, true, std::strerror(errno));
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return AttemptDone(d->id, false, true, std::strerror(errno));
  }
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], STDIN_FILENO);
    const int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(in[0]);
  close(err[1]);
  if (pid < 0) {
    close(in[1]);
    close(err[0]);
    return AttemptDone(d->id, false, true, std::string("fork: ") + std::strerror(errno));
  }
  // The notice is small (a few KiB): it fits the pipe; a child that does not read it loses it.
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  (void)!write(in[1], d->body.data(), d->body.size());
  close(in[1]);
  fcntl(err[0], F_SETFL, O_NONBLOCK);
  d->child = pid;
  d->child_output = err[0];
  d->child_deadline = MonotonicSeconds() + spec.timeout_seconds;
  d->Arm(Delivery::Wait::kChild, kChildPollSeconds);
}

void AlertNotifiers::StartEmail(Delivery* d) {
  const NotifierSpec& spec = d->channel->spec;
  CheckOptions o;
  o.host = spec.server_host;
  o.port = static_cast<std::uint16_t>(spec.server_port);
  o.verify_certificate = spec.verify;
  o.phase_timeout_seconds = spec.timeout_seconds;
  o.overall_timeout_seconds = 3 * spec.timeout_seconds;
  o.session.kind = CheckKind::kSend;
  o.session.tls = spec.tls == "implicit"   ? TlsMode::kImplicit
                  : spec.tls == "starttls" ? TlsMode::kStartTls
                                           : TlsMode::kNone;
  o.session.helo_name = LocalHostName();
  o.session.auth_user = spec.auth_user;
  o.session.auth_password = spec.auth_password;
  o.session.mail_from = spec.from.empty() ? "mailpulse@" + LocalHostName() : spec.from;
  o.session.rcpt_to = spec.to;
  o.session.message = d->body;
  const std::uint64_t id = d->id;
  d->mail = std::make_unique<CheckRunner>(
      base_, resolver_, d->channel->tls.get(), std::move(o), [this, id](CheckResult r) {
        const bool permanent = r.outcome.reply && r.outcome.reply->code / 100 == 5;
        AttemptDone(id, r.outcome.success, !permanent,
                    r.outcome.success ? "" : FailureReason(r.outcome));
      });
  d->mail->Start();
}

void AlertNotifiers::OnTimer(evutil_socket_t, short, void* arg) noexcept {
  auto* d = static_cast<Delivery*>(arg);
  AlertNotifiers* self = d->owner;
  try {
    switch (d->wait) {
      case Delivery::Wait::kRetry:
        self->Attempt(d);
        return;
      case Delivery::Wait::kHttpDone: {
        const int code = d->http_status;
        const bool ok = code >= 200 && code < 300;
        const bool retry = code == 0 || code == 429 || code >= 500;
        std::string why = code != 0 ? "HTTP " + std::to_string(code)
                                    : (d->http_error.empty() ? "no answer" : d->http_error);
        self->AttemptDone(d->id, ok, retry, why);
        return;
      }
      case Delivery::Wait::kChild: {
        int status = 0;
        const pid_t r = waitpid(d->child, &status, WNOHANG);
        if (r == 0 && MonotonicSeconds() < d->child_deadline) {
          d->Arm(Delivery::Wait::kChild, kChildPollSeconds);
          return;
        }
        std::string why;
        if (r == 0) {  // deadline
          kill(d->child, SIGKILL);
          waitpid(d->child, &status, 0);
          why = "timed out; killed";
        } else if (r < 0) {
          why = std::string("waitpid: ") + std::strerror(errno);
        } else if (WIFEXITED(status)) {
          why = "exit status " + std::to_string(WEXITSTATUS(status));
        } else {
          why = "killed by signal " + std::to_string(WTERMSIG(status));
        }
        char out[kChildOutputBytes + 1] = {};
        const ssize_t n = read(d->child_output, out, kChildOutputBytes);
        if (n > 0) why += ": " + OneLine(std::string_view(out, static_cast<std::size_t>(n)));
        const bool ok = r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        self->AttemptDone(d->id, ok, true, why);
        return;
      }
      case Delivery::Wait::kNone:
        return;
    }
  } catch (...) {
    MP_LOG_ERROR("alert notifier: unexpected exception");
  }
}

void AlertNotifiers::AttemptDone(std::uint64_t id, bool ok, bool retry, const std::string& why) {
  auto it = deliveries_.find(id);
  if (it == deliveries_.end()) return;
  Delivery* d = it->second.get();
  const Channel& c = *d->channel;
  const std::string& name = c.spec.name;
  attempts_.WithLabels({name, ok ? "ok" : "error"}).Inc();
  if (ok) {
    MP_LOG_INFO("alert %s: told %s", d->what.c_str(), c.label.c_str());
    notifications_.WithLabels({name, "sent"}).Inc();
    deliveries_.erase(it);  // may destroy the CheckRunner calling us: allowed in its callback
    return;
  }
  const int attempts = c.spec.retries + 1;
  if (retry && d->attempt < attempts) {
    const double wait =
        std::min(kMaxBackoffSeconds, c.spec.retry_backoff_seconds * std::pow(2.0, d->attempt - 1));
    MP_LOG_WARNING("alert %s: %s: attempt %d of %d failed: %s; again in %gs", d->what.c_str(),
                   c.label.c_str(), d->attempt, attempts, why.c_str(), wait);
    d->EndAttempt();
    d->Arm(Delivery::Wait::kRetry, wait);
    return;
  }
  MP_LOG_ERROR("alert %s: %s: gave up after %d attempt%s: %s", d->what.c_str(), c.label.c_str(),
               d->attempt, d->attempt == 1 ? "" : "s", why.c_str());
  notifications_.WithLabels({name, "failed"}).Inc();
  deliveries_.erase(it);
}

}  // namespace mailpulse
