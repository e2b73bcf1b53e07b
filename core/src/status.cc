#include "attune/core/status.h"

namespace attune {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kFailedPrecondition: return "FailedPrecondition";
    case StatusCode::kDataLoss: return "DataLoss";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kAborted: return "Aborted";
    case StatusCode::kOutOfRange: return "OutOfRange";
    case StatusCode::kIoError: return "IoError";
    case StatusCode::kInternal: return "Internal";
    case StatusCode::kAlreadyExists: return "AlreadyExists";
    case StatusCode::kUnsupported: return "Unsupported";
  }
  return "Unknown";
}

Status::Status(StatusCode code, std::string message) {
  if (code != StatusCode::kOk) rep_ = std::make_unique<Rep>(Rep{code, std::move(message)});
}

Status::Status(const Status& other)
    : rep_(other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr) {}

Status& Status::operator=(const Status& other) {
  if (this != &other) rep_ = other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr;
  return *this;
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return rep_ ? rep_->message : kEmpty;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(rep_->code)) + ": " + rep_->message;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return Status();
  return Status(rep_->code, std::string(context) + ": " + rep_->message);
}

#define ATTUNE_DEFINE_ERROR_(fn, code) \
  Status fn(std::string message) { return Status(StatusCode::code, std::move(message)); }
ATTUNE_DEFINE_ERROR_(InvalidArgumentError, kInvalidArgument)
ATTUNE_DEFINE_ERROR_(NotFoundError, kNotFound)
ATTUNE_DEFINE_ERROR_(FailedPreconditionError, kFailedPrecondition)
ATTUNE_DEFINE_ERROR_(DataLossError, kDataLoss)
ATTUNE_DEFINE_ERROR_(UnavailableError, kUnavailable)
ATTUNE_DEFINE_ERROR_(AbortedError, kAborted)
ATTUNE_DEFINE_ERROR_(OutOfRangeError, kOutOfRange)
ATTUNE_DEFINE_ERROR_(IoError, kIoError)
ATTUNE_DEFINE_ERROR_(InternalError, kInternal)
ATTUNE_DEFINE_ERROR_(AlreadyExistsError, kAlreadyExists)
ATTUNE_DEFINE_ERROR_(UnsupportedError, kUnsupported)
#undef ATTUNE_DEFINE_ERROR_

}  // namespace attune
