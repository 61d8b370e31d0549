// libmilter glue: the xxfi_* callbacks as noexcept extern "C" trampolines that hand each MTA
// connection's events to a SessionAccounting. Every callback answers "continue" whatever
// happens inside, so the milter can never reject, tempfail or delay mail on its own account.
#pragma once

#include <libmilter/mfapi.h>

#include "milter/core/client_classifier.h"
#include "milter/core/traffic_counters.h"

namespace mailpulse {

struct MilterContext {
  TrafficCounters* counters;
  const ClientClassifier* classifier;
};

// Installs the process-wide context the callbacks use (libmilter callbacks carry no user data
// beyond the per-connection private pointer). `context` must outlive smfi_main().
void SetMilterContext(const MilterContext* context);

// The filter description for smfi_register: name, flags and callbacks.
smfiDesc MakeFilterDescription();

}  // namespace mailpulse
