#include "errors.h"

namespace attune::capi {

namespace {

// One message per thread, like errno: a handle may be used from several
// threads at once, so a per-handle message would race.
thread_local std::string t_last_error;

attune_error CodeOf(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return ATTUNE_OK;
    case StatusCode::kInvalidArgument:
      return ATTUNE_ERR_INVALID_ARGUMENT;
    case StatusCode::kNotFound:
      return ATTUNE_ERR_NOT_FOUND;
    case StatusCode::kFailedPrecondition:
      return ATTUNE_ERR_FAILED_PRECONDITION;
    case StatusCode::kDataLoss:
      return ATTUNE_ERR_DATA_LOSS;
    case StatusCode::kUnavailable:
      return ATTUNE_ERR_UNAVAILABLE;
    case StatusCode::kAborted:
      return ATTUNE_ERR_ABORTED;
    case StatusCode::kOutOfRange:
      return ATTUNE_ERR_OUT_OF_RANGE;
    case StatusCode::kIoError:
      return ATTUNE_ERR_IO;
    case StatusCode::kInternal:
      return ATTUNE_ERR_INTERNAL;
    case StatusCode::kAlreadyExists:
      return ATTUNE_ERR_ALREADY_EXISTS;
    case StatusCode::kUnsupported:
      return ATTUNE_ERR_UNSUPPORTED;
  }
  return ATTUNE_ERR_INTERNAL;
}

}  // namespace

attune_error Fail(attune_error code, std::string message) {
  t_last_error = std::move(message);
  return code;
}

attune_error FailWith(const Status& status, const std::string& where) {
  if (status.ok()) return Succeed();
  return Fail(CodeOf(status.code()), where + ": " + status.message());
}

attune_error Succeed() {
  t_last_error.clear();
  return ATTUNE_OK;
}

const char* LastError() { return t_last_error.c_str(); }

const char* ErrorName(int code) {
  switch (code) {
    case ATTUNE_OK:
      return "OK";
    case ATTUNE_ERR_INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case ATTUNE_ERR_NOT_FOUND:
      return "NOT_FOUND";
    case ATTUNE_ERR_FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case ATTUNE_ERR_DATA_LOSS:
      return "DATA_LOSS";
    case ATTUNE_ERR_UNAVAILABLE:
      return "UNAVAILABLE";
    case ATTUNE_ERR_ABORTED:
      return "ABORTED";
    case ATTUNE_ERR_OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case ATTUNE_ERR_IO:
      return "IO";
    case ATTUNE_ERR_INTERNAL:
      return "INTERNAL";
    case ATTUNE_ERR_ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case ATTUNE_ERR_UNSUPPORTED:
      return "UNSUPPORTED";
    case ATTUNE_ERR_CANCELLED:
      return "CANCELLED";
    case ATTUNE_ERR_CLOSED:
      return "CLOSED";
  }
  return "UNKNOWN";
}

}  // namespace attune::capi
