// MeteredStore: an ObjectStore wrapper that counts every request of the store below it, by
// operation (put, get, head, delete, list): requests, errors, bytes moved, latency, and requests
// in flight (put in flight = block uploads running). Metrics go to metrics::Registry::Default().
#pragma once

#include <memory>

#include "object/object_store.h"

namespace nexus::object {

std::unique_ptr<ObjectStore> NewMeteredStore(std::unique_ptr<ObjectStore> inner);

}  // namespace nexus::object
