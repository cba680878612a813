// Status and Result: errors as values, carrying an errno and a message for people.
//
// Every layer below the FUSE adapter returns Status or Result<T>. The code is an errno value
// (ENOENT, EIO, ...) so that POSIX-facing layers can reply with it directly; the message names
// the thing that failed and why ("put chunks/0/0/12_0_4194304: HTTP 503 after 10 tries").
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>

namespace nexus {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(int code, std::string msg) : code_(code), msg_(std::move(msg)) {}

  static Status OK() { return Status(); }
  static Status Errno(int code, std::string msg = {}) { return Status(code, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(ENOENT, std::move(msg)); }
  static Status Exists(std::string msg) { return Status(EEXIST, std::move(msg)); }
  static Status InvalidArgument(std::string msg) { return Status(EINVAL, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(EIO, std::move(msg)); }
  // Data read back does not match what was written (bad checksum, bad record).
  static Status Corruption(std::string msg) { return Status(EBADMSG, std::move(msg)); }
  // A transaction kept conflicting past its retry bound, or a resource is busy.
  static Status Busy(std::string msg) { return Status(EBUSY, std::move(msg)); }
  static Status NotSupported(std::string msg) { return Status(ENOTSUP, std::move(msg)); }
  static Status NoSpace(std::string msg) { return Status(ENOSPC, std::move(msg)); }
  static Status TimedOut(std::string msg) { return Status(ETIMEDOUT, std::move(msg)); }
  // Internal to kv engines: the transaction conflicted and may be run again.
  static Status Conflict(std::string msg = "transaction conflict") {
    return Status(kConflictCode, std::move(msg));
  }

  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  bool IsNotFound() const { return code_ == ENOENT; }
  bool IsConflict() const { return code_ == kConflictCode; }
  const std::string& message() const { return msg_; }
  // An errno suitable for a POSIX reply: the code, or EIO for internal codes.
  int ToErrno() const { return code_ > 0 && code_ < 4096 ? code_ : EIO; }
  // "ENOENT: lookup 'a' in inode 1" style text for logs and CLI errors.
  std::string ToString() const;

  // Prefixes the message with context, keeping the code: s.With("format").
  Status With(std::string_view context) const;

  static constexpr int kConflictCode = 100000;

 private:
  int code_ = 0;
  std::string msg_;
};

// Result<T>: a value or a non-OK Status.
template <typename T>
using Result = tl::expected<T, Status>;

inline tl::unexpected<Status> Err(Status s) { return tl::unexpected<Status>(std::move(s)); }
inline tl::unexpected<Status> Err(int code, std::string msg = {}) {
  return tl::unexpected<Status>(Status(code, std::move(msg)));
}

// Name of an errno value ("ENOENT"), or its number as text.
std::string_view ErrnoName(int code);

namespace internal {
inline Status ToStatus(const Status& s) { return s; }
template <typename T>
Status ToStatus(const Result<T>& r) {
  return r ? Status::OK() : r.error();
}
// What NX_TRY returns: converts to Status or to any Result<T>.
struct ErrorReturn {
  Status status;
  operator Status() const { return status; }
  template <typename T>
  operator Result<T>() const {
    return tl::unexpected<Status>(status);
  }
};
}  // namespace internal

}  // namespace nexus

// Returns early from a function returning Status or Result<T> when `expr` (a Status or a
// Result) failed.
#define NX_TRY(expr)                                                            \
  do {                                                                          \
    ::nexus::Status _nx_st = ::nexus::internal::ToStatus((expr));               \
    if (!_nx_st.ok()) return ::nexus::internal::ErrorReturn{std::move(_nx_st)}; \
  } while (0)

#define NX_CONCAT_INNER(a, b) a##b
#define NX_CONCAT(a, b) NX_CONCAT_INNER(a, b)
// `NX_ASSIGN_OR_RETURN(auto attr, meta->GetAttr(ino));` declares/assigns the value or returns
// the error.
#define NX_ASSIGN_OR_RETURN(lhs, expr) \
  NX_ASSIGN_OR_RETURN_IMPL(NX_CONCAT(_nx_r, __LINE__), lhs, expr)
#define NX_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)                           \
  auto tmp = (expr);                                                       \
  if (!tmp) return ::nexus::internal::ErrorReturn{std::move(tmp).error()}; \
  lhs = std::move(*tmp)
