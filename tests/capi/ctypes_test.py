"""The C ABI from Python through ctypes (standard library only), as a Python
app would bind it: open the tiny model, stream a reply, cancel one, record
feedback by response id, read status, bad input, calls after close.

Usage: python3 ctypes_test.py LIBATTUNE_SO FIXTURES_DIR
"""
import ctypes
import json
import os
import shutil
import sys
import tempfile
import unittest

LIB_PATH, FIXTURES = sys.argv[1], sys.argv[2]
del sys.argv[1:3]

OK, INVALID_ARGUMENT, NOT_FOUND, CANCELLED, CLOSED = 0, 1, 2, 12, 13
TEXT_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p)


def load(path):
    lib = ctypes.CDLL(path)
    # Every char** output is declared as c_void_p so that Python does not copy
    # and lose the pointer: we read it, then give it back to attune_string_free.
    out = ctypes.POINTER(ctypes.c_void_p)
    handle = ctypes.c_void_p
    sigs = {
        "attune_version": (ctypes.c_char_p, []),
        "attune_abi_version": (ctypes.c_int, []),
        "attune_last_error": (ctypes.c_char_p, []),
        "attune_error_name": (ctypes.c_char_p, [ctypes.c_int]),
        "attune_string_free": (None, [ctypes.c_void_p]),
        "attune_open": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(handle)]),
        "attune_close": (ctypes.c_int, [handle]),
        "attune_chat": (ctypes.c_int, [handle, ctypes.c_char_p, TEXT_CALLBACK, ctypes.c_void_p, ctypes.c_void_p, out]),
        "attune_record_feedback": (ctypes.c_int, [handle, ctypes.c_char_p, ctypes.c_char_p, out]),
        "attune_get_status": (ctypes.c_int, [handle, out]),
        "attune_set_device_state": (ctypes.c_int, [handle, ctypes.c_char_p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


LIB = load(LIB_PATH)


def take(ptr):
    """Copies a library-owned string and frees it."""
    if not ptr.value:
        return None
    text = ctypes.string_at(ptr.value).decode("utf-8")
    LIB.attune_string_free(ptr)
    return text


class Assistant:
    """What a Python binding would wrap: one handle, errors as exceptions."""

    def __init__(self, options):
        self.handle = ctypes.c_void_p()
        self.check(LIB.attune_open(json.dumps(options).encode(), ctypes.byref(self.handle)))

    @staticmethod
    def check(code):
        if code != OK:
            raise AttuneError(code, LIB.attune_last_error().decode())

    def chat(self, messages, on_text=None):
        pieces = []

        def stream(text, size, _):
            piece = text[:size].decode("utf-8")
            pieces.append(piece)
            return 1 if on_text and on_text(piece) else 0

        reply = ctypes.c_void_p()
        code = LIB.attune_chat(self.handle, json.dumps(messages).encode(), TEXT_CALLBACK(stream), None, None,
                               ctypes.byref(reply))
        text = take(reply)
        return code, (json.loads(text) if text else None), "".join(pieces)

    def record(self, event, response_id=None):
        out = ctypes.c_void_p()
        rid = response_id.encode() if response_id is not None else None
        self.check(LIB.attune_record_feedback(self.handle, json.dumps(event).encode(), rid, ctypes.byref(out)))
        return take(out)

    def status(self):
        out = ctypes.c_void_p()
        self.check(LIB.attune_get_status(self.handle, ctypes.byref(out)))
        return json.loads(take(out))

    def close(self):
        self.check(LIB.attune_close(self.handle))


class AttuneError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{LIB.attune_error_name(code).decode()}: {message}")
        self.code, self.message = code, message


HELLO = [{"role": "user", "content": "hello"}]


class CApiFromPython(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="attune_ctypes_")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def options(self):
        return {"data_dir": self.dir, "model_path": os.path.join(FIXTURES, "models", "tiny_llama.gguf"),
                "chat_template": "chatml", "background_training": False,
                "generation": {"max_tokens": 8, "stop_at_eos": False}}

    def test_version_matches_the_header_constant(self):
        self.assertEqual(LIB.attune_abi_version(), 1)
        self.assertRegex(LIB.attune_version().decode(), r"^\d+\.\d+\.\d+$")

    def test_streamed_text_is_the_reply_and_feedback_attaches_to_it(self):
        a = Assistant(self.options())
        code, reply, streamed = a.chat(HELLO)
        self.assertEqual(code, OK)
        self.assertEqual(streamed, reply["text"])
        self.assertEqual(reply["finish_reason"], "length")
        self.assertEqual(reply["adapter_label"], "base")
        event_id = a.record({"user_id": "py", "rating": {"thumb": "DOWN"}}, reply["response_id"])
        self.assertIn(reply["response_id"], event_id)
        self.assertEqual(a.status()["stored_events"], 1)
        with self.assertRaises(AttuneError) as e:
            a.record({"user_id": "py", "rating": {"thumb": "UP"}}, "r-unknown")
        self.assertEqual(e.exception.code, NOT_FOUND)
        a.close()

    def test_callback_cancel_returns_cancelled_and_the_partial_reply(self):
        a = Assistant(self.options())
        code, reply, streamed = a.chat(HELLO, on_text=lambda piece: True)
        self.assertEqual(code, CANCELLED)
        self.assertEqual(reply["finish_reason"], "cancelled")
        self.assertEqual(reply["text"], streamed)
        a.close()

    def test_bad_input_is_an_error_with_a_message(self):
        with self.assertRaises(AttuneError) as e:
            Assistant({"data_dir": self.dir, "generation": {"max_tokens": "many"}})
        self.assertEqual(e.exception.code, INVALID_ARGUMENT)
        self.assertIn("options.generation.max_tokens", e.exception.message)
        handle = ctypes.c_void_p()
        self.assertEqual(LIB.attune_open(b'{"data_dir": "\xff"}', ctypes.byref(handle)), INVALID_ARGUMENT)
        self.assertIn("UTF-8", LIB.attune_last_error().decode())
        a = Assistant(self.options())
        with self.assertRaises(AttuneError) as e:
            a.check(LIB.attune_set_device_state(a.handle, b'{"battery_percent": '))
        self.assertIn("malformed JSON", e.exception.message)
        a.close()

    def test_calls_after_close_are_closed_errors(self):
        a = Assistant(self.options())
        a.close()
        with self.assertRaises(AttuneError) as e:
            a.status()
        self.assertEqual(e.exception.code, CLOSED)
        with self.assertRaises(AttuneError) as e:
            a.close()
        self.assertEqual(e.exception.code, CLOSED)


if __name__ == "__main__":
    unittest.main()
