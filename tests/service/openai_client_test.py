"""`attune serve` checked by the official OpenAI Python client.

Plain and streaming chat, the adapter version in system_fingerprint, feedback
on a response id, a swap seen between two requests, errors as the client's
exception types, and a clean SIGTERM shutdown. Exits non-zero on any failure.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request

import openai

try:  # the HTTP library the installed openai package is built on
    import httpx2 as httpx
except ImportError:
    import httpx

ATTUNE, FIXTURES = sys.argv[1], sys.argv[2]

CONFIG = f"""
[server]
port = 0
[model]
path = "{FIXTURES}/models/tiny_llama.gguf"
chat_template = "chatml"
default_max_tokens = 8
[training]
background = false
require_external_power = false
min_idle_minutes = 0
max_temperature_c = 1000
min_new_events = 4
max_steps = 30
[trainer]
rank = 4
alpha = 8
dropout = 0.0
learning_rate = 0.01
micro_batch_size = 4
grad_accum_steps = 1
max_seq_len = 64
anchor_examples = 2
anchor_max_tokens = 8
forgetting_prompts = ["hi"]
[gate]
max_forgetting_kl = 100
"""


def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, json.loads(r.read())


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what)


def run(base):
    client = openai.OpenAI(base_url=base + "/v1", api_key="not-needed-on-loopback")
    ids = [m.id for m in client.models.list()]
    check(ids[:2] == ["attune", "attune:base"], f"models list {ids}")

    msgs = [{"role": "user", "content": "my pet?"}]
    plain = client.chat.completions.create(model="attune", messages=msgs, temperature=0, max_tokens=8)
    check(plain.id.startswith("chatcmpl-"), "response id")
    check(plain.system_fingerprint == "attune:base", f"fingerprint before training: {plain.system_fingerprint}")
    check(plain.usage.completion_tokens > 0 and plain.usage.total_tokens ==
          plain.usage.prompt_tokens + plain.usage.completion_tokens, "usage")

    chunks = list(client.chat.completions.create(model="attune", messages=msgs, temperature=0, max_tokens=8,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == plain.choices[0].message.content, "stream says what the plain reply said")
    check(len({c.id for c in chunks}) == 1 and {c.system_fingerprint for c in chunks} == {"attune:base"},
          "one id and one version across the stream")
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens,
          "usage in the last chunk")

    status, fb = post(base, "/v1/feedback", {"response_id": plain.id, "correction": {"text": "cat"}})
    check(status == 200 and fb["id"] == "fb-" + plain.id, "feedback on the response id")
    for i in range(5):
        post(base, "/v1/feedback", {"id": f"d{i}", "user_id": "u", "demonstration": {"text": "cat"},
                                    "context": [{"role": "user", "content": "my pet?"}]})
    status, run_result = post(base, "/v1/train", {})
    check(status == 200 and run_result["promoted"], f"a window trained and promoted: {run_result.get('gate')}")

    after = client.chat.completions.create(model="attune", messages=msgs, temperature=0, max_tokens=8)
    check(after.system_fingerprint == "attune:v1", f"the swap is seen by the next request: {after.system_fingerprint}")
    check("cat" in after.choices[0].message.content, f"the new version learned: {after.choices[0].message.content!r}")
    base_again = client.chat.completions.create(model="attune:base", messages=msgs, temperature=0, max_tokens=8)
    check(base_again.choices[0].message.content == plain.choices[0].message.content, "attune:base still answers")

    try:
        client.chat.completions.create(model="gpt-4", messages=msgs)
        check(False, "unknown model is refused")
    except openai.NotFoundError as e:
        check(e.status_code == 404, "unknown model -> NotFoundError")
    try:
        client.chat.completions.create(model="attune", messages=msgs, temperature=5)
        check(False, "bad temperature is refused")
    except openai.BadRequestError as e:
        check(e.body.get("param") == "temperature", f"400 names the field: {e.body}")


def run_unix_socket(tmp):
    """The same client over `--socket PATH` (httpx's Unix socket transport)."""
    sock = f"{tmp}/attune.sock"
    proc = subprocess.Popen([ATTUNE, "serve", "--config", f"{tmp}/serve.toml", "--data-dir", f"{tmp}/data",
                             "--socket", sock, "--json"], stdout=subprocess.PIPE, text=True)
    try:
        line = json.loads(proc.stdout.readline())
        check(line.get("socket") == sock and line.get("url") == "unix:" + sock, f"listening on the socket: {line}")
        check(os.stat(sock).st_mode & 0o777 == 0o600, "the socket file is mode 0600")
        http = httpx.Client(transport=httpx.HTTPTransport(uds=sock))
        client = openai.OpenAI(base_url="http://localhost/v1", api_key="not-needed-on-a-socket", http_client=http)
        msgs = [{"role": "user", "content": "hello"}]
        r = client.chat.completions.create(model="attune", messages=msgs, temperature=0, max_tokens=4)
        check(r.id.startswith("chatcmpl-") and r.usage.completion_tokens >= 1, "plain chat over the Unix socket")
        chunks = list(client.chat.completions.create(model="attune:base", messages=msgs, temperature=0,
                                                     max_tokens=4, stream=True))
        check(len(chunks) >= 2 and {c.system_fingerprint for c in chunks} == {"attune:base"}, "streaming over the Unix socket")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    check(code == 0, f"SIGTERM exits 0 on the socket (got {code})")
    check(not os.path.exists(sock), "the socket file is removed at exit")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        with open(f"{tmp}/serve.toml", "w") as f:
            f.write(CONFIG)
        proc = subprocess.Popen([ATTUNE, "serve", "--config", f"{tmp}/serve.toml", "--data-dir", f"{tmp}/data",
                                 "--json"], stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            port = json.loads(line)["port"]
            run(f"http://127.0.0.1:{port}")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        check(code == 0, f"SIGTERM exits 0 (got {code})")
        run_unix_socket(tmp)
    print("openai client test passed")


if __name__ == "__main__":
    main()
