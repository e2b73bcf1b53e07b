//! A safe Rust wrapper over Attune's C ABI (`attune/attune.h`), with the
//! `extern "C"` block written by hand (no bindgen). JSON goes in and out as
//! strings; parse it with the JSON crate of your choice.

use std::ffi::{CStr, CString};
// std::os::raw rather than std::ffi for these: Debian 12 ships rustc 1.63.
use std::os::raw::{c_char, c_int, c_void};
use std::fmt;

/// The ABI version this binding was written against (`ATTUNE_ABI_VERSION`).
pub const ABI_VERSION: c_int = 1;

#[repr(C)]
pub struct RawAssistant {
    _private: [u8; 0],
}
#[repr(C)]
pub struct RawCancel {
    _private: [u8; 0],
}

pub type TextCallback = extern "C" fn(text: *const c_char, size: usize, user_data: *mut c_void) -> c_int;

extern "C" {
    pub fn attune_version() -> *const c_char;
    pub fn attune_abi_version() -> c_int;
    pub fn attune_last_error() -> *const c_char;
    pub fn attune_error_name(code: c_int) -> *const c_char;
    pub fn attune_string_free(s: *mut c_char);
    pub fn attune_open(options_json: *const c_char, out: *mut *mut RawAssistant) -> c_int;
    pub fn attune_close(assistant: *mut RawAssistant) -> c_int;
    pub fn attune_cancel_new(out: *mut *mut RawCancel) -> c_int;
    pub fn attune_cancel_set(cancel: *mut RawCancel);
    pub fn attune_cancel_free(cancel: *mut RawCancel);
    pub fn attune_chat(
        assistant: *mut RawAssistant,
        messages_json: *const c_char,
        on_text: Option<TextCallback>,
        user_data: *mut c_void,
        cancel: *mut RawCancel,
        reply_json: *mut *mut c_char,
    ) -> c_int;
    pub fn attune_record_feedback(
        assistant: *mut RawAssistant,
        event_json: *const c_char,
        response_id: *const c_char,
        event_id: *mut *mut c_char,
    ) -> c_int;
    pub fn attune_forget_user(assistant: *mut RawAssistant, user_id: *const c_char, report: *mut *mut c_char) -> c_int;
    pub fn attune_forget_event(assistant: *mut RawAssistant, event_id: *const c_char, report: *mut *mut c_char) -> c_int;
    pub fn attune_set_device_state(assistant: *mut RawAssistant, state_json: *const c_char) -> c_int;
    pub fn attune_get_status(assistant: *mut RawAssistant, status_json: *mut *mut c_char) -> c_int;
    pub fn attune_train_now(assistant: *mut RawAssistant, options_json: *const c_char, result: *mut *mut c_char) -> c_int;
    pub fn attune_rollback(assistant: *mut RawAssistant, version: *mut *mut c_char) -> c_int;
    pub fn attune_promote(assistant: *mut RawAssistant, version: *const c_char, force: c_int, out: *mut *mut c_char) -> c_int;
}

pub const OK: c_int = 0;
pub const ERR_INVALID_ARGUMENT: c_int = 1;
pub const ERR_NOT_FOUND: c_int = 2;
pub const ERR_CANCELLED: c_int = 12;
pub const ERR_CLOSED: c_int = 13;

/// An error code with the library's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: c_int,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = unsafe { CStr::from_ptr(attune_error_name(self.code)) };
        write!(f, "{}: {}", name.to_string_lossy(), self.message)
    }
}

impl std::error::Error for Error {}

fn check(code: c_int) -> Result<(), Error> {
    if code == OK {
        return Ok(());
    }
    // The message is per thread and valid until the next call on it: copy now.
    let message = unsafe { CStr::from_ptr(attune_last_error()) }.to_string_lossy().into_owned();
    Err(Error { code, message })
}

fn c_string(s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error { code: ERR_INVALID_ARGUMENT, message: "string contains a NUL byte".into() })
}

/// Takes ownership of a library-allocated string.
fn take(p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    unsafe { attune_string_free(p) };
    Some(s)
}

pub fn version() -> String {
    unsafe { CStr::from_ptr(attune_version()) }.to_string_lossy().into_owned()
}

pub fn abi_version() -> c_int {
    unsafe { attune_abi_version() }
}

/// One open assistant. Every method may be called from any thread (the C
/// ABI is thread-safe per function), hence Send + Sync. Closed on drop.
pub struct Assistant {
    raw: *mut RawAssistant,
}

unsafe impl Send for Assistant {}
unsafe impl Sync for Assistant {}

/// A finished or cancelled reply: the reply JSON and whether it was cancelled.
pub struct Reply {
    pub json: String,
    pub cancelled: bool,
}

extern "C" fn trampoline<F: FnMut(&str) -> bool>(text: *const c_char, size: usize, user_data: *mut c_void) -> c_int {
    let f = unsafe { &mut *(user_data as *mut F) };
    let bytes = unsafe { std::slice::from_raw_parts(text as *const u8, size) };
    // Whole UTF-8 characters by contract; a panic must not unwind into C.
    let go_on = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&String::from_utf8_lossy(bytes))));
    match go_on {
        Ok(true) => 0,
        _ => 1,
    }
}

impl Assistant {
    pub fn open(options_json: &str) -> Result<Assistant, Error> {
        let options = c_string(options_json)?;
        let mut raw = std::ptr::null_mut();
        check(unsafe { attune_open(options.as_ptr(), &mut raw) })?;
        Ok(Assistant { raw })
    }

    /// The C handle, for calls this wrapper does not cover.
    pub fn as_raw(&self) -> *mut RawAssistant {
        self.raw
    }

    /// Streams the reply to `on_text`, which returns false to cancel.
    pub fn chat<F: FnMut(&str) -> bool>(&self, messages_json: &str, mut on_text: F) -> Result<Reply, Error> {
        let messages = c_string(messages_json)?;
        let mut out = std::ptr::null_mut();
        let code = unsafe {
            attune_chat(
                self.raw,
                messages.as_ptr(),
                Some(trampoline::<F>),
                &mut on_text as *mut F as *mut c_void,
                std::ptr::null_mut(),
                &mut out,
            )
        };
        let json = take(out);
        if code == ERR_CANCELLED {
            return Ok(Reply { json: json.unwrap_or_default(), cancelled: true });
        }
        check(code)?;
        Ok(Reply { json: json.unwrap_or_default(), cancelled: false })
    }

    pub fn record_feedback(&self, event_json: &str, response_id: Option<&str>) -> Result<String, Error> {
        let event = c_string(event_json)?;
        let rid = response_id.map(c_string).transpose()?;
        let mut out = std::ptr::null_mut();
        check(unsafe {
            attune_record_feedback(self.raw, event.as_ptr(), rid.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()), &mut out)
        })?;
        Ok(take(out).unwrap_or_default())
    }

    pub fn status_json(&self) -> Result<String, Error> {
        let mut out = std::ptr::null_mut();
        check(unsafe { attune_get_status(self.raw, &mut out) })?;
        Ok(take(out).unwrap_or_default())
    }

    pub fn set_device_state(&self, state_json: &str) -> Result<(), Error> {
        let state = c_string(state_json)?;
        check(unsafe { attune_set_device_state(self.raw, state.as_ptr()) })
    }

    pub fn forget_user(&self, user_id: &str) -> Result<String, Error> {
        let user = c_string(user_id)?;
        let mut out = std::ptr::null_mut();
        check(unsafe { attune_forget_user(self.raw, user.as_ptr(), &mut out) })?;
        Ok(take(out).unwrap_or_default())
    }
}

impl Drop for Assistant {
    fn drop(&mut self) {
        unsafe { attune_close(self.raw) };
    }
}
