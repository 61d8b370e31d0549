// libmilter glue: the xxfi_* callbacks as noexcept extern "C" trampolines that hand each MTA
// connection's events to a SessionAccounting (traffic) and a ProbeInspector (probe messages).
// Every callback answers "continue" whatever happens inside, so the milter can never reject,
// tempfail or delay mail on its own account; the exceptions are a verified probe message to a
// sink with milter.probe_discard set, which is discarded at end of message, and, with
// milter.throttle on, an outbound message from a key over its limit, tempfailed at MAIL.
#pragma once

#include <libmilter/mfapi.h>

#include <functional>
#include <string>

#include "milter/core/client_classifier.h"
#include "milter/core/probe_inspector.h"
#include "milter/core/traffic_counters.h"
#include "milter/spike_watch.h"
#include "shared/metrics.h"

namespace mailpulse {

// What the probe handling counts (registered by main).
struct ProbeCounters {
  CounterFamily* tokens_invalid = nullptr;  // {reason}
  Counter* sightings = nullptr;
  Counter* deliveries = nullptr;
  Counter* bounces = nullptr;
};

struct MilterContext {
  TrafficCounters* counters;
  const ClientClassifier* classifier;
  const ProbePolicy* probe = nullptr;  // null or no key: probe handling off
  ProbeCounters probe_counters;
  // Hands one event frame to the event socket (EventOutbox::Post); any thread, never blocks.
  std::function<void(std::string frame)> post_event;
  SpikeWatch* spikes = nullptr;  // null: no spike detection
};

// Installs the process-wide context the callbacks use (libmilter callbacks carry no user data
// beyond the per-connection private pointer). `context` must outlive smfi_main().
void SetMilterContext(const MilterContext* context);

// The filter description for smfi_register: name, flags and callbacks. `edits_headers` asks
// for the right to add and change headers (the hop stamp, stripping invalid tokens).
smfiDesc MakeFilterDescription(bool edits_headers);

}  // namespace mailpulse
