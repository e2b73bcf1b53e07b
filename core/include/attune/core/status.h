// Status: the result of an operation that returns no value.
//
// An OK status holds no allocation (a null pointer, as in LevelDB); an error
// holds a code and a message. Codes are chosen by what the caller should do:
//   kInvalidArgument     fix the input (bad event, bad CLI argument, bad file).
//   kNotFound            the named thing does not exist.
//   kFailedPrecondition  the input is well-formed but does not fit (adapter for
//                        another base model, context too long).
//   kDataLoss            a file or store is corrupt or truncated.
//   kUnavailable         retry later (store locked by another process).
//   kAborted             lost a race or was stopped (retry the step).
//   kOutOfRange          an index or size past a documented limit.
//   kIoError             the operating system refused (open, read, fsync).
//   kInternal            a bug: an invariant did not hold.
//
// Thread safety: a Status is a value; distinct objects may be used from
// distinct threads without synchronisation.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace attune {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kFailedPrecondition,
  kDataLoss,
  kUnavailable,
  kAborted,
  kOutOfRange,
  kIoError,
  kInternal,
  kAlreadyExists,
  kUnsupported,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message);
  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status Ok() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  // Empty for an OK status.
  const std::string& message() const;
  // "InvalidArgument: message", or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "context: <message>"; OK stays OK.
  Status WithContext(std::string_view context) const;

  // Explicitly drops an error. Searchable, so that every swallowed status is a
  // visible decision.
  void IgnoreError() const {}

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::unique_ptr<Rep> rep_;
};

Status InvalidArgumentError(std::string message);
Status NotFoundError(std::string message);
Status FailedPreconditionError(std::string message);
Status DataLossError(std::string message);
Status UnavailableError(std::string message);
Status AbortedError(std::string message);
Status OutOfRangeError(std::string message);
Status IoError(std::string message);
Status InternalError(std::string message);
Status AlreadyExistsError(std::string message);
Status UnsupportedError(std::string message);

}  // namespace attune

#define ATTUNE_CONCAT_INNER_(a, b) a##b
#define ATTUNE_CONCAT_(a, b) ATTUNE_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define RETURN_IF_ERROR(expr)                           \
  do {                                                  \
    ::attune::Status attune_status_ = (expr);           \
    if (!attune_status_.ok()) return attune_status_;    \
  } while (0)
