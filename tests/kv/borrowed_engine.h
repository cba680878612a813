// A second client of one engine: forwards to an engine the test owns elsewhere, so that two Meta
// instances (two sessions) share one store as two mounts share a real server.
#pragma once

#include <functional>
#include <string>

#include "meta/kv/engine.h"

namespace nexus::kv {

class BorrowedEngine : public Engine {
 public:
  explicit BorrowedEngine(Engine* inner) : inner_(inner) {}
  Status Update(const std::function<Status(Txn&)>& body) override { return inner_->Update(body); }
  Status View(const std::function<Status(Txn&)>& body) override { return inner_->View(body); }
  Status Sync() override { return inner_->Sync(); }
  std::string Name() const override { return inner_->Name(); }
  EngineStats Stats() const override { return inner_->Stats(); }
  bool SingleProcess() const override { return inner_->SingleProcess(); }
  bool OneWriterAtATime() const override { return inner_->OneWriterAtATime(); }

 private:
  Engine* inner_;
};

}  // namespace nexus::kv
