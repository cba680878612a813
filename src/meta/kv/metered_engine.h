// MeteredEngine: a kv::Engine wrapper that measures the transactions of the engine below it in
// metrics::Registry::Default(): count, latency and body retries (conflicts) of Update and View,
// labelled by the operation the calling thread serves (metrics::CurrentOp(): the FUSE operation,
// or "other"), and failures.
#pragma once

#include <memory>

#include "meta/kv/engine.h"

namespace nexus::kv {

std::unique_ptr<Engine> NewMeteredEngine(std::unique_ptr<Engine> inner);

}  // namespace nexus::kv
