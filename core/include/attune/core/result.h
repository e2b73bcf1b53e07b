// Result<T>: a value or an error Status (never both, never an OK status).
#pragma once

#include <cassert>
#include <optional>
#include <utility>

#include "attune/core/status.h"

namespace attune {

template <typename T>
class [[nodiscard]] Result {
 public:
  // REQUIRES: !status.ok()
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit
    assert(!status_.ok());
    if (status_.ok()) status_ = InternalError("Result built from an OK status");
  }
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  // REQUIRES: ok()
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace attune

// Evaluates `rexpr` (a Result<T>); on error returns its status, else moves the
// value into `lhs` (which may be a declaration: `auto x`). It expands to
// several statements: inside an `if`, use braces.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ATTUNE_ASSIGN_OR_RETURN_IMPL_(ATTUNE_CONCAT_(attune_result_, __LINE__), lhs, rexpr)
#define ATTUNE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                  \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()
